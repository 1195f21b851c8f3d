// The models this replica serves, by name and version; the newest version is the default.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "s3ml/model_server/v1/dataplane.pb.h"
#include "services/model_server/native/runtime.h"
#include "services/model_server/native/tensors.h"

namespace s3ml::dataplane {

struct LoadedModel {
  std::string name;
  std::string version;
  std::string platform;
  std::vector<Spec> inputs;
  std::vector<Spec> outputs;
  std::string tflite;  // before `pool`: the interpreters point into it
  std::unique_ptr<InterpreterPool> pool;
};

class Registry {
 public:
  // Takes the decrypted flatbuffers out of `models` (they are not copied).
  Registry(google::protobuf::RepeatedPtrField<s3ml::model_server::v1::Model>* models, int pool, int threads);

  const LoadedModel& Get(const std::string& name, const std::string& version) const;  // throws NOT_FOUND
  std::vector<std::string> Versions(const std::string& name) const;  // oldest first
  bool Empty() const { return models_.empty(); }
  int Interpreters() const;

 private:
  std::map<std::string, std::map<std::string, std::unique_ptr<LoadedModel>>> models_;
};

}  // namespace s3ml::dataplane
