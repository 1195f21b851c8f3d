#include "services/model_server/native/epc.h"

#include <openssl/evp.h>
#include <openssl/rand.h>

#include <chrono>
#include <iostream>
#include <memory>
#include <stdexcept>
#include <thread>

namespace s3ml::dataplane {
namespace {

constexpr size_t kPage = 4096;
constexpr auto kAnswerTimeout = std::chrono::seconds(5);

using Cipher = std::unique_ptr<EVP_CIPHER_CTX, decltype(&EVP_CIPHER_CTX_free)>;

// One AES-128-GCM pass over `in` (encrypting, or decrypting and checking `tag`).
bool Gcm(bool encrypt, const std::vector<unsigned char>& key, const unsigned char* nonce,
         const std::vector<unsigned char>& in, std::vector<unsigned char>* out, unsigned char* tag) {
  Cipher ctx(EVP_CIPHER_CTX_new(), EVP_CIPHER_CTX_free);
  int n = 0;
  out->resize(in.size());
  if (!ctx || EVP_CipherInit_ex(ctx.get(), EVP_aes_128_gcm(), nullptr, key.data(), nonce, encrypt) != 1 ||
      EVP_CipherUpdate(ctx.get(), out->data(), &n, in.data(), static_cast<int>(in.size())) != 1) {
    return false;
  }
  if (!encrypt && EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_GCM_SET_TAG, 16, tag) != 1) return false;
  if (EVP_CipherFinal_ex(ctx.get(), out->data() + n, &n) != 1) return false;
  return !encrypt || EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_GCM_GET_TAG, 16, tag) == 1;
}

}  // namespace

PageCost::PageCost(double extra_delay_us)
    : extra_delay_us_(extra_delay_us), key_(16), page_(kPage), tag_(16), nonce_(12) {
  if (RAND_bytes(key_.data(), 16) != 1 || RAND_bytes(page_.data(), kPage) != 1 ||
      RAND_bytes(nonce_.data(), 12) != 1 || !Gcm(true, key_, nonce_.data(), page_, &sealed_, tag_.data())) {
    throw std::runtime_error("sim EPC: cannot set up the page cipher");
  }
}

void PageCost::Pay(uint64_t paged_out, uint64_t paged_in) {
  std::vector<unsigned char> out;
  unsigned char nonce[12] = {}, tag[16];
  for (uint64_t i = 0; i < paged_out; ++i) {  // EWB: encrypt the page out, a fresh nonce each
    const uint64_t count = ++counter_;
    for (int b = 0; b < 8; ++b) nonce[11 - b] = static_cast<unsigned char>(count >> (8 * b));
    Gcm(true, key_, nonce, page_, &out, tag);
  }
  for (uint64_t i = 0; i < paged_in; ++i) Gcm(false, key_, nonce_.data(), sealed_, &out, tag_.data());  // ELDU
  const double delay_us = static_cast<double>(paged_out + paged_in) * extra_delay_us_;
  if (delay_us > 0) {  // one sleep per batch, as the Python plane does
    std::this_thread::sleep_for(std::chrono::duration<double, std::micro>(delay_us));
  }
}

EpcAccount::EpcAccount(const s3ml::model_server::v1::SimEpc& config, FrameWriter* events)
    : enabled_(config.account()), events_(events), cost_(config.extra_delay_us()) {}

void EpcAccount::Touch() {
  if (!enabled_) return;
  std::unique_lock<std::mutex> lock(mu_);
  if (stopping_) return;  // the supervisor is gone: the call is served unaccounted
  const uint64_t ticket = ++next_;
  waiting_.insert(ticket);
  s3ml::model_server::v1::Event touch;
  touch.mutable_epc_touch()->set_ticket(ticket);
  lock.unlock();
  const bool asked = events_->Write(touch);
  lock.lock();
  if (!asked) {  // killed before we saw its end of stdin: the same
    waiting_.erase(ticket);
    return;
  }
  answered_.wait_for(lock, kAnswerTimeout, [&] { return stopping_ || answers_.count(ticket) > 0; });
  waiting_.erase(ticket);
  const auto found = answers_.find(ticket);
  if (found == answers_.end()) return;  // no answer: the supervisor is gone or stuck
  const auto [paged_in, paged_out] = found->second;
  answers_.erase(found);
  lock.unlock();
  cost_.Pay(paged_out, paged_in);
}

void EpcAccount::Answer(const s3ml::model_server::v1::EpcPaging& paging) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!waiting_.count(paging.ticket())) return;  // late: its touch gave up waiting
    answers_[paging.ticket()] = {paging.paged_in(), paging.paged_out()};
  }
  answered_.notify_all();
}

void EpcAccount::Stop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  answered_.notify_all();
}

}  // namespace s3ml::dataplane
