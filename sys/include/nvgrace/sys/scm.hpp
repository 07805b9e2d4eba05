// Bytes and file descriptors over a UNIX stream socket (SCM_RIGHTS), as the
// vfio-user protocol and nvgrace's own descriptor hand-over carry them. Linux
// delivers the descriptors of a sendmsg with its first byte and ends a
// recvmsg right after the data that brought descriptors, so a receiver can
// tell which bytes they came with.
// Thread-safety: the calls are; one sender and one receiver per socket.
#pragma once

#include <cstdint>
#include <span>
#include <string>

#include "nvgrace/common/result.hpp"
#include "nvgrace/sys/fd.hpp"

namespace nvgrace::sys {

// The most descriptors one message carries here (the receive buffer's room).
inline constexpr std::size_t kMaxScmFds = 64;

// Sends all of `bytes`, `fds` (borrowed) with the first byte. Retries on
// EINTR and after a partial send; never raises SIGPIPE. An error: the peer
// went away (EPIPE, ECONNRESET) or another errno.
[[nodiscard]] Result<void> send_with_fds(int sock, std::span<const std::uint8_t> bytes, std::span<const int> fds);

struct Received {
  std::size_t bytes = 0;   // 0: the peer closed its end (orderly shutdown)
  std::size_t fds = 0;     // descriptors stored into the caller's span
  std::size_t dropped = 0; // descriptors that came but did not fit (closed here)
  bool truncated = false;  // MSG_CTRUNC: more than kMaxScmFds came; some are lost
};

// One recvmsg into `buf` (at most its size; `wait_all` for MSG_WAITALL),
// with the descriptors that came into `fds` (close-on-exec, owned by the
// caller from here on). EINTR is retried, unless `interruptible`: then a
// signal ends the wait with an EINTR error (a server pausing its
// connection threads at a message boundary, R41). `peek` (MSG_PEEK): the
// bytes stay in the socket, and the descriptors that came with them arrive
// as copies (they come again with the read that takes the bytes).
[[nodiscard]] Result<Received> recv_with_fds(int sock, std::span<std::uint8_t> buf, std::span<UniqueFd> fds,
                                             bool wait_all = false, bool interruptible = false, bool peek = false);

// A UNIX stream socket connected to `path` (close-on-exec). Errors name the
// path: ENOENT (no socket there), ECONNREFUSED (nobody listening), EACCES.
[[nodiscard]] Result<UniqueFd> connect_unix(const std::string& path);

}  // namespace nvgrace::sys
