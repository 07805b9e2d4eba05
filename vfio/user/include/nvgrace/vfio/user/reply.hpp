// The reply to one vfio-user message, built in place in a buffer that the
// connection owns and reuses: once it has the capacity of the largest reply
// (allocated up front), building a reply allocates nothing. Payload bytes
// are written directly where they are sent from (a REGION_READ's data is read
// from the device into it).
//
// Thread-safety: none; one per connection. Ownership: the fds attached are
// borrowed (owned by the device or the session) and must stay open until the
// reply is sent.
#pragma once

#include <array>
#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <span>

#include "nvgrace/vfio/user/protocol.hpp"

namespace nvgrace::vfio::user {

class ReplyBuffer {
 public:
  explicit ReplyBuffer(std::size_t capacity = kMaxMessageSize)
      : buf_(new std::uint8_t[capacity]), capacity_(capacity) {}

  // Begins the reply to `request`: the header, with an empty payload.
  void begin(const Header& request) {
    const Header h{request.msg_id, request.command, sizeof(Header), kTypeReply, 0};
    std::memcpy(buf_.get(), &h, sizeof h);
    size_ = sizeof h;
    nfds_ = 0;
  }
  // A header-only error reply with `err` (never 0: a client reads an Error
  // flag with errno 0 as success).
  void fail(const Header& request, int err) {
    begin(request);
    Header h{request.msg_id, request.command, sizeof(Header), kTypeReply | kError,
             static_cast<std::uint32_t>(err != 0 ? err : EIO)};
    std::memcpy(buf_.get(), &h, sizeof h);
  }
  // `n` more payload bytes, uninitialised; nullptr past the capacity.
  [[nodiscard]] std::uint8_t* extend(std::size_t n) {
    if (n > capacity_ - size_) return nullptr;
    std::uint8_t* p = buf_.get() + size_;
    size_ += n;
    return p;
  }
  template <class T>
  void append(const T& v) {
    if (auto* p = extend(sizeof v)) std::memcpy(p, &v, sizeof v);
  }
  void append_bytes(std::span<const std::uint8_t> bytes) {
    if (auto* p = extend(bytes.size())) std::memcpy(p, bytes.data(), bytes.size());
  }
  // Shrinks the payload to `n` bytes.
  void truncate_payload(std::size_t n) {
    if (sizeof(Header) + n < size_) size_ = sizeof(Header) + n;
  }
  void attach_fd(int fd) {
    if (nfds_ < fds_.size()) fds_[nfds_++] = fd;
  }
  // Writes the final size into the header; call before sending.
  void finish() {
    const auto n = static_cast<std::uint32_t>(size_);
    std::memcpy(buf_.get() + offsetof(Header, msg_size), &n, sizeof n);
  }

  [[nodiscard]] std::span<const std::uint8_t> bytes() const { return {buf_.get(), size_}; }
  [[nodiscard]] std::span<const std::uint8_t> payload() const {
    return {buf_.get() + sizeof(Header), size_ - sizeof(Header)};
  }
  [[nodiscard]] std::uint8_t* payload_data() { return buf_.get() + sizeof(Header); }
  [[nodiscard]] std::span<const int> fds() const { return {fds_.data(), nfds_}; }
  [[nodiscard]] Header header() const {
    Header h{};
    std::memcpy(&h, buf_.get(), sizeof h);
    return h;
  }
  [[nodiscard]] std::size_t capacity() const { return capacity_; }

 private:
  std::unique_ptr<std::uint8_t[]> buf_;
  std::size_t capacity_ = 0;
  std::size_t size_ = 0;
  std::array<int, kMaxMsgFds> fds_{};
  std::size_t nfds_ = 0;
};

}  // namespace nvgrace::vfio::user
