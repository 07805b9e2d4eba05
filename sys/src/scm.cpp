#include "nvgrace/sys/scm.hpp"

#include <sys/socket.h>
#include <sys/un.h>

#include <cerrno>
#include <cstring>

namespace nvgrace::sys {

Result<void> send_with_fds(int sock, std::span<const std::uint8_t> bytes, std::span<const int> fds) {
  if (fds.size() > kMaxScmFds) return fail_errno(EINVAL, "{} descriptors in one message, at most {}", fds.size(), kMaxScmFds);
  iovec iov{const_cast<std::uint8_t*>(bytes.data()), bytes.size()};
  msghdr m{};
  m.msg_iov = &iov;
  m.msg_iovlen = 1;
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * kMaxScmFds)];
  if (!fds.empty()) {
    m.msg_control = control;
    m.msg_controllen = CMSG_SPACE(sizeof(int) * fds.size());
    cmsghdr* c = CMSG_FIRSTHDR(&m);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int) * fds.size());
    std::memcpy(CMSG_DATA(c), fds.data(), sizeof(int) * fds.size());
  }
  std::size_t sent = 0;
  do {
    const ssize_t n = ::sendmsg(sock, &m, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return fail_errno(errno, "sendmsg: {}", std::strerror(errno));
    if (n == 0) return fail_errno(EPIPE, "sendmsg sent nothing");
    sent += static_cast<std::size_t>(n);
    iov.iov_base = const_cast<std::uint8_t*>(bytes.data()) + sent;
    iov.iov_len = bytes.size() - sent;
    m.msg_control = nullptr;  // the descriptors went with the first bytes
    m.msg_controllen = 0;
  } while (sent < bytes.size());
  return {};
}

Result<Received> recv_with_fds(int sock, std::span<std::uint8_t> buf, std::span<UniqueFd> fds, bool wait_all,
                               bool interruptible, bool peek) {
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * kMaxScmFds)];
  iovec iov{buf.data(), buf.size()};
  msghdr m{};
  m.msg_iov = &iov;
  m.msg_iovlen = 1;
  m.msg_control = control;
  m.msg_controllen = sizeof control;
  ssize_t n;
  do n = ::recvmsg(sock, &m, MSG_CMSG_CLOEXEC | (wait_all ? MSG_WAITALL : 0) | (peek ? MSG_PEEK : 0));
  while (n < 0 && errno == EINTR && !interruptible);
  if (n < 0) return fail_errno(errno, "recvmsg: {}", std::strerror(errno));
  Received r;
  r.bytes = static_cast<std::size_t>(n);
  r.truncated = (m.msg_flags & MSG_CTRUNC) != 0;
  for (cmsghdr* c = CMSG_FIRSTHDR(&m); c; c = CMSG_NXTHDR(&m, c)) {
    if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
    const std::size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
    for (std::size_t i = 0; i < count; ++i) {
      int f;
      std::memcpy(&f, CMSG_DATA(c) + i * sizeof(int), sizeof f);
      UniqueFd owned(f);
      if (r.fds < fds.size()) fds[r.fds++] = std::move(owned);
      else ++r.dropped;  // closed here
    }
  }
  return r;
}

Result<UniqueFd> connect_unix(const std::string& path) {
  sockaddr_un a{};
  if (path.empty() || path.size() >= sizeof a.sun_path)
    return fail_errno(ENAMETOOLONG, "socket path '{}' is empty or longer than {} bytes", path, sizeof a.sun_path - 1);
  a.sun_family = AF_UNIX;
  std::memcpy(a.sun_path, path.c_str(), path.size());
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd) return fail_errno(errno, "socket: {}", std::strerror(errno));
  while (::connect(fd.get(), reinterpret_cast<const sockaddr*>(&a), sizeof a) != 0) {
    if (errno == EINTR) continue;
    return fail_errno(errno, "connecting to {}: {}", path, std::strerror(errno));
  }
  return fd;
}

}  // namespace nvgrace::sys
