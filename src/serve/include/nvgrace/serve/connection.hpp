// One vfio-user client on one socket, served in its own thread: messages are
// read with one recvmsg into a buffer the connection owns (so a request costs
// one recvmsg and its reply one sendmsg), handed to the session, and the reply
// built in place in another owned buffer is sent. Nothing is allocated per
// message.
//
// SCM_RIGHTS fds: Linux ends a recvmsg right after the data that carried fds,
// and a vfio-user client sends each message with one sendmsg whose first bytes
// carry its fds, so the fds of a read belong to the last message that starts
// inside that read.
//
// Thread-safety: serve() runs in one thread; stop() may be called from any
// other thread (it shuts the socket down, which ends serve()).
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <memory>
#include <string>

#include <spdlog/spdlog.h>

#include "nvgrace/sys/fd.hpp"
#include "nvgrace/vfio/user/reply.hpp"
#include "nvgrace/vfio/user/session.hpp"

namespace nvgrace::serve {

class Connection {
 public:
  Connection(std::string name, sys::UniqueFd fd, vfio::Function& device, std::shared_ptr<spdlog::logger> log,
             std::atomic<std::uint64_t>& messages);

  // Serves until the client leaves, breaks the protocol, or stop(); returns
  // why it ended, one line. The session's mappings and interrupts are still
  // in place: call teardown() next (R30).
  [[nodiscard]] std::string serve();
  [[nodiscard]] vfio::user::Teardown teardown() { return session_.teardown(); }
  void stop();
  // Whether the client has closed its end (any thread; reads nothing).
  [[nodiscard]] bool peer_closed() const;

 private:
  struct FdBatch {
    std::uint64_t start = 0, end = 0;  // stream positions of the read that brought them
    std::array<sys::UniqueFd, vfio::user::kMaxMsgFds> fds;
    std::size_t count = 0;
  };
  [[nodiscard]] bool send_reply();
  // Moves the fds that belong to the message at [start, end) into fds_.
  [[nodiscard]] bool claim_fds(std::uint64_t start, std::uint64_t end);

  std::string name_;
  sys::UniqueFd fd_;
  std::shared_ptr<spdlog::logger> log_;
  std::atomic<std::uint64_t>& messages_;
  vfio::user::Session session_;
  vfio::user::ReplyBuffer out_;
  std::unique_ptr<std::uint8_t[]> in_;
  std::size_t begin_ = 0, end_ = 0;  // unparsed bytes in in_
  std::uint64_t base_ = 0;           // stream position of in_[0]
  std::array<FdBatch, 2> batches_;   // fds received and not yet claimed
  std::array<sys::UniqueFd, vfio::user::kMaxMsgFds> fds_;  // the current message's
  std::size_t nfds_ = 0;
};

}  // namespace nvgrace::serve
