// A minimal vfio-user client for the tests and benchmarks: connects to a
// server's socket and performs one request/reply round trip at a time,
// receiving the fd a reply may carry (SCM_RIGHTS).
#pragma once

#include <sys/socket.h>
#include <sys/un.h>

#include <cstring>
#include <string>
#include <vector>

#include "nvgrace/vfio/fd.hpp"
#include "nvgrace/vfio/user/protocol.hpp"

namespace test {

inline nvgrace::vfio::UniqueFd vfio_user_connect(const std::string& path) {
  nvgrace::vfio::UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
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
  {
    iovec iov{const_cast<std::uint8_t*>(msg.data()), msg.size()};
    msghdr m{};
    m.msg_iov = &iov;
    m.msg_iovlen = 1;
    alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * 8)];
    if (!send_fds.empty()) {
      m.msg_control = control;
      m.msg_controllen = CMSG_SPACE(sizeof(int) * send_fds.size());
      cmsghdr* c = CMSG_FIRSTHDR(&m);
      c->cmsg_level = SOL_SOCKET;
      c->cmsg_type = SCM_RIGHTS;
      c->cmsg_len = CMSG_LEN(sizeof(int) * send_fds.size());
      std::memcpy(CMSG_DATA(c), send_fds.data(), sizeof(int) * send_fds.size());
    }
    if (::sendmsg(fd, &m, MSG_NOSIGNAL) != static_cast<ssize_t>(msg.size())) return {};
  }
  std::vector<std::uint8_t> buf(sizeof(nvgrace::vfio::user::Header));
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * 8)];
  iovec iov{buf.data(), buf.size()};
  msghdr h{};
  h.msg_iov = &iov;
  h.msg_iovlen = 1;
  h.msg_control = control;
  h.msg_controllen = sizeof control;
  if (::recvmsg(fd, &h, MSG_WAITALL) != static_cast<ssize_t>(buf.size())) return {};
  if (got_fd) {
    *got_fd = -1;
    if (cmsghdr* c = CMSG_FIRSTHDR(&h)) std::memcpy(got_fd, CMSG_DATA(c), sizeof(int));
  }
  nvgrace::vfio::user::Header hdr{};
  std::memcpy(&hdr, buf.data(), sizeof hdr);
  buf.resize(hdr.msg_size);
  const std::size_t rest = hdr.msg_size - sizeof hdr;
  if (rest && ::recv(fd, buf.data() + sizeof hdr, rest, MSG_WAITALL) != static_cast<ssize_t>(rest)) return {};
  return buf;
}

}  // namespace test
