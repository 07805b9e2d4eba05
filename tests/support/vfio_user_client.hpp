// A minimal vfio-user client for the tests and benchmarks: connects to a
// server's socket and performs one request/reply round trip at a time,
// receiving the fd a reply may carry (SCM_RIGHTS, through nvgrace_sys as the
// server sends them).
#pragma once

#include <sys/socket.h>
#include <sys/un.h>

#include <array>
#include <cstring>
#include <string>
#include <vector>

#include "nvgrace/sys/fd.hpp"
#include "nvgrace/sys/scm.hpp"
#include "nvgrace/vfio/user/protocol.hpp"

namespace test {

inline nvgrace::sys::UniqueFd vfio_user_connect(const std::string& path) {
  nvgrace::sys::UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_un a{};
  a.sun_family = AF_UNIX;
  std::memcpy(a.sun_path, path.c_str(), std::min(path.size(), sizeof a.sun_path - 1));
  if (::connect(fd.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) fd.reset();
  return fd;
}

// Sends `msg` with `send_fds` (SCM_RIGHTS) and returns the whole reply
// (header included); an empty vector when the server closed the connection.
// `got_fd` receives a passed fd.
inline std::vector<std::uint8_t> vfio_user_call(int fd, const std::vector<std::uint8_t>& msg, int* got_fd = nullptr,
                                                const std::vector<int>& send_fds = {}) {
  if (!nvgrace::sys::send_with_fds(fd, msg, send_fds)) return {};
  std::vector<std::uint8_t> buf(sizeof(nvgrace::vfio::user::Header));
  std::array<nvgrace::sys::UniqueFd, 8> fds;
  auto r = nvgrace::sys::recv_with_fds(fd, buf, fds, true);
  if (!r || r->bytes != buf.size()) return {};
  if (got_fd) *got_fd = r->fds ? fds[0].release() : -1;
  nvgrace::vfio::user::Header hdr{};
  std::memcpy(&hdr, buf.data(), sizeof hdr);
  buf.resize(hdr.msg_size);
  const std::size_t rest = hdr.msg_size - sizeof hdr;
  if (rest && ::recv(fd, buf.data() + sizeof hdr, rest, MSG_WAITALL) != static_cast<ssize_t>(rest)) return {};
  return buf;
}

}  // namespace test
