#include "services/model_server/native/tensors.h"

#include <cstring>
#include <limits>
#include <map>
#include <set>
#include <stdexcept>
#include <type_traits>

#include "services/model_server/native/errors.h"

namespace s3ml::dataplane {
namespace {

const std::map<std::string, size_t>& ItemSizes() {
  static const auto* sizes = new std::map<std::string, size_t>{
      {"BOOL", 1}, {"UINT8", 1}, {"INT8", 1},  {"INT16", 2}, {"INT32", 4},
      {"INT64", 8}, {"FP16", 2}, {"FP32", 4}, {"FP64", 8}};
  return *sizes;
}

template <typename T>
std::string List(const T& values) {
  std::string out = "[";
  for (size_t i = 0; i < values.size(); ++i) {
    out += (i ? ", " : "") + std::to_string(values[i]);
  }
  return out + "]";
}

std::string Expected(const Spec& spec) {
  std::string out = "[";
  for (size_t i = 0; i < spec.shape.size(); ++i) {
    out += (i ? ", " : "") + (spec.shape[i] < 0 ? std::string("N") : std::to_string(spec.shape[i]));
  }
  return out + "]";
}

std::string Quoted(const std::vector<std::string>& names) {
  std::string out;
  for (size_t i = 0; i < names.size(); ++i) out += (i ? ", '" : "'") + names[i] + "'";
  return out;
}

std::vector<int64_t> CheckShape(const Spec& spec, const google::protobuf::RepeatedField<int64_t>& shape,
                                int64_t max_batch) {
  std::vector<int64_t> got(shape.begin(), shape.end());
  bool ok = got.size() == spec.shape.size();
  for (size_t i = 0; ok && i < got.size(); ++i) ok = spec.shape[i] < 0 || got[i] == spec.shape[i];
  if (!ok) {
    throw InvalidInput("input '" + spec.name + "': shape " + List(got) + ", expected " + Expected(spec));
  }
  if (got[0] < 1 || got[0] > max_batch) {
    throw InvalidInput("input '" + spec.name + "': batch size " + std::to_string(got[0]) +
                       " outside 1.." + std::to_string(max_batch));
  }
  return got;
}

// Typed contents -> little-endian bytes of `Out`, refusing values the type cannot hold.
template <typename Out, typename Values>
std::string Convert(const Spec& spec, const Values& values) {
  std::string bytes(values.size() * sizeof(Out), '\0');
  auto* out = reinterpret_cast<Out*>(bytes.data());
  for (int i = 0; i < values.size(); ++i) {
    const auto v = values.Get(i);
    if constexpr (std::is_integral_v<Out> && !std::is_same_v<Out, bool>) {
      using Wide = std::conditional_t<std::is_signed_v<decltype(v)>, int64_t, uint64_t>;
      const Wide w = static_cast<Wide>(v);
      const bool fits = std::is_signed_v<Wide>
                            ? (w >= static_cast<Wide>(std::numeric_limits<Out>::min()) &&
                               w <= static_cast<Wide>(std::numeric_limits<Out>::max()))
                            : w <= static_cast<uint64_t>(std::numeric_limits<Out>::max());
      if (!fits) {
        throw InvalidInput("input '" + spec.name + "': value out of range for " + spec.datatype);
      }
    }
    out[i] = static_cast<Out>(v);
  }
  return bytes;
}

template <typename Values>
void CheckCount(const Spec& spec, const Values& values, int64_t count) {
  if (static_cast<int64_t>(values.size()) != count) {
    throw InvalidInput("input '" + spec.name + "': " + std::to_string(values.size()) +
                       " values in contents, expected " + std::to_string(count));
  }
}

std::string Typed(const Spec& spec, const inference::InferTensorContents& c, int64_t count) {
  const std::string& t = spec.datatype;
  if (t == "BOOL") return CheckCount(spec, c.bool_contents(), count), Convert<bool>(spec, c.bool_contents());
  if (t == "UINT8") return CheckCount(spec, c.uint_contents(), count), Convert<uint8_t>(spec, c.uint_contents());
  if (t == "INT8") return CheckCount(spec, c.int_contents(), count), Convert<int8_t>(spec, c.int_contents());
  if (t == "INT16") return CheckCount(spec, c.int_contents(), count), Convert<int16_t>(spec, c.int_contents());
  if (t == "INT32") return CheckCount(spec, c.int_contents(), count), Convert<int32_t>(spec, c.int_contents());
  if (t == "INT64") return CheckCount(spec, c.int64_contents(), count), Convert<int64_t>(spec, c.int64_contents());
  if (t == "FP32") return CheckCount(spec, c.fp32_contents(), count), Convert<float>(spec, c.fp32_contents());
  if (t == "FP64") return CheckCount(spec, c.fp64_contents(), count), Convert<double>(spec, c.fp64_contents());
  // FP16 has no typed field in KServe v2: only raw contents can carry it.
  throw InvalidInput("input '" + spec.name + "': 0 values in contents, expected " + std::to_string(count));
}

// One base-128 varint at *pos; false when truncated or over 10 bytes.
bool Varint(std::string_view m, size_t* pos, uint64_t* value) {
  *value = 0;
  for (int shift = 0; shift < 64 && *pos < m.size(); shift += 7) {
    const auto byte = static_cast<uint8_t>(m[(*pos)++]);
    *value |= static_cast<uint64_t>(byte & 0x7f) << shift;
    if (!(byte & 0x80)) return true;
  }
  return false;
}

constexpr uint64_t kRawInputContents = 7;  // ModelInferRequest.raw_input_contents

}  // namespace

Spec Spec::From(const s3ml::model_server::v1::TensorSpec& proto) {
  const auto size = ItemSizes().find(proto.datatype());
  if (size == ItemSizes().end()) throw std::invalid_argument("unsupported datatype " + proto.datatype());
  if (proto.shape_size() == 0) throw std::invalid_argument("tensor " + proto.name() + " has no shape");
  return Spec{proto.name(), proto.datatype(), {proto.shape().begin(), proto.shape().end()}, size->second};
}

size_t Spec::ItemBytes() const {
  size_t n = itemsize;
  for (size_t i = 1; i < shape.size(); ++i) n *= static_cast<size_t>(shape[i]);
  return n;
}

// Walks the top-level fields only: raw_input_contents (most of a request's bytes)
// are viewed where they are; every other field is copied out and parsed by protobuf.
bool ParseInferRequest(std::string_view message, InferRequest* out) {
  std::string rest;
  size_t pos = 0;
  while (pos < message.size()) {
    const size_t start = pos;
    uint64_t tag = 0, value = 0;
    if (!Varint(message, &pos, &tag) || (tag >> 3) == 0) return false;
    switch (tag & 7) {
      case 0:
        if (!Varint(message, &pos, &value)) return false;
        break;
      case 1:
      case 5: {
        const size_t width = (tag & 7) == 1 ? 8 : 4;
        if (message.size() - pos < width) return false;
        pos += width;
        break;
      }
      case 2:
        if (!Varint(message, &pos, &value) || value > message.size() - pos) return false;
        if ((tag >> 3) == kRawInputContents) {
          out->raw.push_back(message.substr(pos, value));
          pos += value;
          continue;
        }
        pos += value;
        break;
      default:
        return false;  // groups: no proto3 message has them
    }
    rest.append(message.substr(start, pos - start));
  }
  return out->fields.ParseFromString(rest);
}

Inputs DecodeInputs(const inference::ModelInferRequest& request, const std::vector<std::string_view>& raw,
                    const std::vector<Spec>& specs, int64_t max_batch) {
  std::map<std::string, int> by_name;
  for (int i = 0; i < request.inputs_size(); ++i) by_name[request.inputs(i).name()] = i;
  std::set<std::string> known;
  std::vector<std::string> names;
  for (const auto& s : specs) known.insert(s.name), names.push_back(s.name);
  for (const auto& [name, index] : by_name) {  // std::map: the first unknown in sorted order
    if (!known.count(name)) {
      throw InvalidInput("unknown input '" + name + "'; the model takes " + Quoted(names));
    }
  }
  if (!raw.empty() && raw.size() != static_cast<size_t>(request.inputs_size())) {
    throw InvalidInput("raw_input_contents has " + std::to_string(raw.size()) + " entries for " +
                       std::to_string(request.inputs_size()) + " inputs");
  }
  Inputs out;
  for (const auto& spec : specs) {
    const auto found = by_name.find(spec.name);
    if (found == by_name.end()) {
      throw InvalidInput("missing input '" + spec.name + "' (" + spec.datatype + ")");
    }
    const auto& tensor = request.inputs(found->second);
    if (tensor.datatype() != spec.datatype) {
      throw InvalidInput("input '" + spec.name + "': datatype " +
                         (tensor.datatype().empty() ? "(empty)" : tensor.datatype()) + ", expected " +
                         spec.datatype);
    }
    const auto shape = CheckShape(spec, tensor.shape(), max_batch);
    int64_t count = 1;
    for (auto d : shape) count *= d;
    if (out.batch && shape[0] != out.batch) {
      throw InvalidInput("input '" + spec.name + "': batch size " + std::to_string(shape[0]) +
                         ", other inputs have " + std::to_string(out.batch));
    }
    out.batch = shape[0];
    if (!raw.empty()) {
      if (tensor.has_contents()) {
        throw InvalidInput("input '" + spec.name + "': both raw and typed contents given");
      }
      const std::string_view bytes = raw[static_cast<size_t>(found->second)];
      const size_t expected = static_cast<size_t>(count) * spec.itemsize;
      if (bytes.size() != expected) {
        throw InvalidInput("input '" + spec.name + "': " + std::to_string(bytes.size()) +
                           " bytes, expected " + std::to_string(expected) + " for shape " + List(shape));
      }
      out.tensors.emplace_back(bytes);
    } else {
      out.converted.push_back(Typed(spec, tensor.contents(), count));
      out.tensors.emplace_back();  // filled below: `converted` may still reallocate
    }
  }
  for (size_t i = 0, c = 0; i < out.tensors.size(); ++i) {
    if (out.tensors[i].data() == nullptr) out.tensors[i] = out.converted[c++];
  }
  return out;
}

std::vector<size_t> RequestedOutputs(const inference::ModelInferRequest& request,
                                     const std::vector<Spec>& specs) {
  std::vector<size_t> indices;
  std::vector<std::string> names;
  for (const auto& s : specs) names.push_back(s.name);
  if (request.outputs().empty()) {
    for (size_t i = 0; i < specs.size(); ++i) indices.push_back(i);
    return indices;
  }
  for (const auto& wanted : request.outputs()) {
    size_t i = 0;
    while (i < names.size() && names[i] != wanted.name()) ++i;
    if (i == names.size()) {
      throw InvalidInput("unknown output '" + wanted.name() + "'; the model produces " + Quoted(names));
    }
    indices.push_back(i);
  }
  return indices;
}

}  // namespace s3ml::dataplane
