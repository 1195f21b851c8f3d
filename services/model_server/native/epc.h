// The simulated platform's EPC, seen from the data plane. The node's shared sim
// EPC pool is the supervisor's (services/scaler/epc, one implementation for every
// sim enclave); before each inference the data plane asks it what touching the
// working set paged, then pays that paging here, on the inference's own thread
// while it holds the interpreter, as an SGX enclave faults inside its invoke.
// Off on hardware, and when the replica is not accounted in a pool.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <map>
#include <set>
#include <mutex>
#include <utility>
#include <vector>

#include "s3ml/model_server/v1/dataplane.pb.h"
#include "services/model_server/native/framing.h"

namespace s3ml::dataplane {

// The software cost of moving EPC pages: AES-128-GCM of a 4 KiB page per page,
// encrypting evictions and decrypting-and-verifying reloads, as EWB/ELDU do,
// plus a calibrated delay per page for the exits and faults software cannot
// reproduce (services/scaler/epc/paging.py: the same work, the same default).
class PageCost {
 public:
  explicit PageCost(double extra_delay_us);
  void Pay(uint64_t paged_out, uint64_t paged_in);

 private:
  const double extra_delay_us_;
  std::vector<unsigned char> key_, page_, sealed_, tag_, nonce_;
  std::atomic<uint64_t> counter_{0};  // eviction nonces: threads pay at once
};

class EpcAccount {
 public:
  EpcAccount(const s3ml::model_server::v1::SimEpc& config, FrameWriter* events);
  // Before an inference: one touch of the working set, and its paging paid. Waits
  // for the supervisor's answer (at most a few seconds: then it pays nothing).
  void Touch();
  void Answer(const s3ml::model_server::v1::EpcPaging& paging);  // from the control stream
  void Stop();  // the supervisor is gone: nobody waits any more

 private:
  const bool enabled_;
  FrameWriter* const events_;
  PageCost cost_;
  std::mutex mu_;
  std::condition_variable answered_;
  uint64_t next_ = 0;
  bool stopping_ = false;
  std::set<uint64_t> waiting_;                                  // tickets whose touch waits
  std::map<uint64_t, std::pair<uint64_t, uint64_t>> answers_;  // ticket -> (paged_in, paged_out)
};

}  // namespace s3ml::dataplane
