#include "services/model_server/native/registry.h"

#include <algorithm>
#include <cctype>
#include <tuple>

#include "services/model_server/native/errors.h"

namespace s3ml::dataplane {
namespace {

// Numeric versions order by value and above named ones, as the Python plane orders them.
std::tuple<int, unsigned long long, std::string> VersionKey(const std::string& v) {
  const bool digits = !v.empty() && v.size() < 19 &&
                      std::all_of(v.begin(), v.end(), [](unsigned char c) { return std::isdigit(c); });
  return digits ? std::make_tuple(1, std::stoull(v), std::string()) : std::make_tuple(0, 0ULL, v);
}

bool Older(const std::string& a, const std::string& b) { return VersionKey(a) < VersionKey(b); }

std::string Clip(const std::string& s, size_t n) { return s.substr(0, n); }

}  // namespace

Registry::Registry(google::protobuf::RepeatedPtrField<s3ml::model_server::v1::Model>* models, int pool,
                   int threads) {
  for (auto& m : *models) {
    auto loaded = std::make_unique<LoadedModel>();
    loaded->name = m.name();
    loaded->version = m.version();
    loaded->platform = m.platform();
    for (const auto& s : m.inputs()) loaded->inputs.push_back(Spec::From(s));
    for (const auto& s : m.outputs()) loaded->outputs.push_back(Spec::From(s));
    loaded->tflite.swap(*m.mutable_tflite());
    loaded->pool = std::make_unique<InterpreterPool>(loaded->tflite, pool, threads);
    models_[loaded->name][loaded->version] = std::move(loaded);
  }
}

const LoadedModel& Registry::Get(const std::string& name, const std::string& version) const {
  const auto versions = models_.find(name);
  if (versions == models_.end()) {
    std::string served;
    for (const auto& [n, _] : models_) served += (served.empty() ? "" : ", ") + n;
    throw NotFound("model '" + Clip(name, 64) + "' is not served here (served: " +
                   (served.empty() ? "none" : served) + ")");
  }
  if (version.empty()) {
    auto newest = versions->second.begin();
    for (auto it = versions->second.begin(); it != versions->second.end(); ++it) {
      if (Older(newest->first, it->first)) newest = it;
    }
    return *newest->second;
  }
  const auto found = versions->second.find(version);
  if (found == versions->second.end()) {
    throw NotFound("model '" + Clip(name, 64) + "' has no version '" + Clip(version, 32) + "'");
  }
  return *found->second;
}

std::vector<std::string> Registry::Versions(const std::string& name) const {
  std::vector<std::string> out;
  const auto versions = models_.find(name);
  if (versions == models_.end()) return out;
  for (const auto& [v, _] : versions->second) out.push_back(v);
  std::sort(out.begin(), out.end(), Older);
  return out;
}

int Registry::Interpreters() const {
  int n = 0;
  for (const auto& [_, versions] : models_) {
    for (const auto& [__, m] : versions) n += m->pool->size();
  }
  return n;
}

}  // namespace s3ml::dataplane
