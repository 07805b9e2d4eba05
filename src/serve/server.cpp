#include "serve/server.hpp"

#include <poll.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstring>

#include <fmt/format.h>

#include "log.hpp"
#include "nvgrace/vfio/vfio_user.hpp"

namespace nvgrace::serve {

namespace user = vfio::user;

std::string socket_path(const std::string& base, unsigned i, unsigned count) {
  return count == 1 ? base : fmt::format("{}.{}", base, i);
}

struct Server::Slot {
  std::string path;
  dev_t dev = 0;  // the socket file this server created, to remove only it
  ino_t ino = 0;
  vfio::UniqueFd listener;
  vfio::UniqueFd client;
  std::unique_ptr<user::Session> session;
  unsigned connections = 0;
};

namespace {

// Reads exactly `len` bytes (collecting any fds that come along). Returns
// false on EOF or error, with `why` set.
bool read_full(int fd, std::uint8_t* buf, std::size_t len, std::vector<vfio::UniqueFd>& fds, bool& truncated,
               std::string& why) {
  std::size_t got = 0;
  while (got < len) {
    iovec iov{buf + got, len - got};
    alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * (user::kMaxMsgFds + 8))];
    msghdr m{};
    m.msg_iov = &iov;
    m.msg_iovlen = 1;
    m.msg_control = control;
    m.msg_controllen = sizeof control;
    const ssize_t n = ::recvmsg(fd, &m, MSG_CMSG_CLOEXEC);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      why = n == 0 ? (got == 0 ? "client disconnected" : fmt::format("client disconnected {} bytes into a {}-byte read", got, len))
                   : fmt::format("recvmsg: {}", std::strerror(errno));
      return false;
    }
    if (m.msg_flags & MSG_CTRUNC) truncated = true;
    for (cmsghdr* c = CMSG_FIRSTHDR(&m); c; c = CMSG_NXTHDR(&m, c)) {
      if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
      const std::size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
      for (std::size_t i = 0; i < count; ++i) {
        int f;
        std::memcpy(&f, CMSG_DATA(c) + i * sizeof(int), sizeof f);
        fds.emplace_back(f);
      }
    }
    got += static_cast<std::size_t>(n);
  }
  return true;
}

bool send_reply(int fd, const user::Reply& r) {
  iovec iov{const_cast<std::uint8_t*>(r.bytes.data()), r.bytes.size()};
  msghdr m{};
  m.msg_iov = &iov;
  m.msg_iovlen = 1;
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * user::kMaxMsgFds)];
  if (!r.fds.empty()) {
    m.msg_control = control;
    m.msg_controllen = CMSG_SPACE(sizeof(int) * r.fds.size());
    cmsghdr* c = CMSG_FIRSTHDR(&m);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int) * r.fds.size());
    std::memcpy(CMSG_DATA(c), r.fds.data(), sizeof(int) * r.fds.size());
  }
  std::size_t sent = 0;
  while (sent < r.bytes.size()) {
    const ssize_t n = ::sendmsg(fd, &m, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    sent += static_cast<std::size_t>(n);
    iov.iov_base = const_cast<std::uint8_t*>(r.bytes.data()) + sent;
    iov.iov_len = r.bytes.size() - sent;
    m.msg_control = nullptr;  // the fds went with the first bytes
    m.msg_controllen = 0;
  }
  return true;
}

}  // namespace

namespace {

// Whether a socket file answers a connect: a live server owns it.
enum class SocketState { live, stale, other };
SocketState probe_socket(const sockaddr_un& addr, int& err) {
  vfio::UniqueFd probe(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (::connect(probe.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof addr) == 0) return SocketState::live;
  err = errno;
  return errno == ECONNREFUSED ? SocketState::stale : SocketState::other;
}

// Removes `path` only if it is still the socket file this server created.
void remove_own(const std::string& path, dev_t dev, ino_t ino) {
  struct stat st {};
  if (::lstat(path.c_str(), &st) == 0 && S_ISSOCK(st.st_mode) && st.st_dev == dev && st.st_ino == ino)
    ::unlink(path.c_str());
}

}  // namespace

Result<std::unique_ptr<Server>> Server::create(std::vector<ServedDevice> devices, SocketAccess access) {
  std::unique_ptr<Server> s(new Server());
  s->stop_fd_ = vfio::UniqueFd(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  if (!s->stop_fd_) return fail_errno(errno, "eventfd: {}", std::strerror(errno));
  for (auto& d : devices) {
    auto slot = std::make_unique<Slot>();
    slot->path = d.socket_path;
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    if (d.socket_path.empty() || d.socket_path.size() >= sizeof addr.sun_path)
      return fail_errno(ENAMETOOLONG, "--socket: '{}' must be 1..{} characters", d.socket_path, sizeof addr.sun_path - 1);
    std::memcpy(addr.sun_path, d.socket_path.c_str(), d.socket_path.size());
    struct stat st {};
    if (::lstat(d.socket_path.c_str(), &st) == 0) {
      if (!S_ISSOCK(st.st_mode))
        return fail_errno(EEXIST, "--socket: {} exists and is not a socket; not replacing it", d.socket_path);
      int err = 0;
      switch (probe_socket(addr, err)) {
        case SocketState::live:
          return fail_errno(EADDRINUSE, "--socket: {} is in use: a server answers on it; not replacing it",
                            d.socket_path);
        case SocketState::other:
          return fail_errno(err, "--socket: {} exists and cannot be probed ({}); not replacing it", d.socket_path,
                            std::strerror(err));
        case SocketState::stale:
          ::unlink(d.socket_path.c_str());  // nobody listens: left behind by a server that died
          break;
      }
    }
    slot->listener = vfio::UniqueFd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
    if (!slot->listener) return fail_errno(errno, "socket: {}", std::strerror(errno));
    // Bind with no permissions for anyone, then open up to the requested mode:
    // there is no moment at which the socket is more open than asked.
    const mode_t old_umask = ::umask(0777);
    const int bound = ::bind(slot->listener.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr);
    const int bind_err = errno;
    ::umask(old_umask);
    if (bound != 0) return fail_errno(bind_err, "--socket: binding {}: {}", d.socket_path, std::strerror(bind_err));
    if (::lstat(d.socket_path.c_str(), &st) != 0)
      return fail_errno(errno, "--socket: {} vanished after bind: {}", d.socket_path, std::strerror(errno));
    slot->dev = st.st_dev;
    slot->ino = st.st_ino;
    s->slots_.push_back(std::move(slot));  // from here on the destructor removes it
    if (access.group && ::chown(d.socket_path.c_str(), static_cast<uid_t>(-1), *access.group) != 0)
      return fail_errno(errno, "--socket-group: chown {}: {}", d.socket_path, std::strerror(errno));
    if (::chmod(d.socket_path.c_str(), access.mode) != 0)
      return fail_errno(errno, "--socket-mode: chmod {}: {}", d.socket_path, std::strerror(errno));
    if (::listen(s->slots_.back()->listener.get(), 4) != 0)
      return fail_errno(errno, "--socket: listen on {}: {}", d.socket_path, std::strerror(errno));
  }
  s->devices_ = std::move(devices);
  return s;
}

Server::~Server() {
  for (auto& slot : slots_) remove_own(slot->path, slot->dev, slot->ino);
}

void Server::stop() {
  const std::uint64_t one = 1;
  [[maybe_unused]] auto n = ::write(stop_fd_.get(), &one, sizeof one);
}

namespace {
sigset_t shutdown_signals() {
  sigset_t mask;
  sigemptyset(&mask);
  sigaddset(&mask, SIGINT);
  sigaddset(&mask, SIGTERM);
  sigaddset(&mask, SIGHUP);
  return mask;
}
}  // namespace

void block_shutdown_signals() {
  const sigset_t mask = shutdown_signals();
  ::sigprocmask(SIG_BLOCK, &mask, nullptr);
}

Result<void> Server::run(bool handle_signals) {
  auto log = module_logger("serve");
  vfio::UniqueFd sigfd;
  const sigset_t mask = shutdown_signals();
  if (handle_signals) {
    ::sigprocmask(SIG_BLOCK, &mask, nullptr);
    sigfd = vfio::UniqueFd(::signalfd(-1, &mask, SFD_CLOEXEC));
    if (!sigfd) return fail_errno(errno, "signalfd: {}", std::strerror(errno));
  }
  for (auto& slot : slots_) log->info("listening on {}", slot->path);
  for (;;) {
    std::vector<pollfd> pfds{{stop_fd_.get(), POLLIN, 0}, {sigfd ? sigfd.get() : -1, POLLIN, 0}};
    // Every listener is polled, busy or not, so that a second client is
    // refused at once rather than left waiting in the backlog.
    for (auto& slot : slots_) {
      pfds.push_back({slot->listener.get(), POLLIN, 0});
      pfds.push_back({slot->client ? slot->client.get() : -1, POLLIN, 0});
    }
    if (::poll(pfds.data(), pfds.size(), -1) < 0) {
      if (errno == EINTR) continue;
      return fail_errno(errno, "poll: {}", std::strerror(errno));
    }
    if (pfds[0].revents || pfds[1].revents) {
      if (pfds[1].revents) {
        // Consume the signal: unblocking it below while still pending would
        // let its default action kill the process before the cleanup.
        signalfd_siginfo info{};
        [[maybe_unused]] auto n = ::read(sigfd.get(), &info, sizeof info);
        log->info("signal {}: shutting down; removing {} socket(s)", info.ssi_signo, slots_.size());
      } else {
        log->info("stopping; removing {} socket(s)", slots_.size());
      }
      break;
    }
    for (std::size_t i = 0; i < slots_.size(); ++i) {
      auto& slot = *slots_[i];
      if (pfds[2 + 2 * i].revents) {
        vfio::UniqueFd c(::accept4(slot.listener.get(), nullptr, nullptr, SOCK_CLOEXEC));
        if (!c) {
          if (errno != EAGAIN && errno != EWOULDBLOCK) log->warn("{}: accept: {}", slot.path, std::strerror(errno));
        } else if (slot.client) {
          log->warn("{}: refused a second client: one client at a time, client {} is connected", slot.path,
                    slot.connections);
        } else {
          slot.client = std::move(c);
          slot.session = std::make_unique<user::Session>(*devices_[i].device);
          log->info("{}: client {} connected", slot.path, ++slot.connections);
        }
      }
      if (!slot.client || !pfds[3 + 2 * i].revents) continue;
      // One message: header, then the rest of msg_size.
      std::vector<std::uint8_t> msg(sizeof(user::Header));
      std::vector<vfio::UniqueFd> fds;
      bool truncated = false;
      std::string why;
      bool ok = read_full(slot.client.get(), msg.data(), msg.size(), fds, truncated, why);
      bool violation = false;
      if (ok) {
        user::Header h{};
        std::memcpy(&h, msg.data(), sizeof h);
        if (h.msg_size < sizeof h || h.msg_size > user::kMaxMessageSize) {
          why = fmt::format("protocol violation: message size {} outside {}..{}", h.msg_size, sizeof h,
                            user::kMaxMessageSize);
          ok = false;
          violation = true;
        } else {
          msg.resize(h.msg_size);
          ok = read_full(slot.client.get(), msg.data() + sizeof h, h.msg_size - sizeof h, fds, truncated, why);
        }
      }
      if (!ok) {
        log->log(violation ? spdlog::level::warn : spdlog::level::info,
                 "{}: {}; closing the connection, ready for the next client", slot.path, why);
        slot.client.reset();
        slot.session.reset();
        continue;
      }
      ++messages_;
      user::Reply reply;
      if (truncated) {
        // More fds than we accept: the kernel dropped the rest. Refuse.
        user::Header h{};
        std::memcpy(&h, msg.data(), sizeof h);
        reply.close = true;
        reply.log = fmt::format("{}: too many fds; the message is refused", user::command_name(h.command));
      } else {
        reply = slot.session->handle(msg, std::move(fds));
      }
      log->debug("{}: {}", slot.path, reply.log);
      if (reply.close) {
        log->warn("{}: protocol violation: {}; closing the connection", slot.path, reply.log);
        slot.client.reset();
        slot.session.reset();
        continue;
      }
      if (!reply.bytes.empty() && !send_reply(slot.client.get(), reply)) {
        log->info("{}: client went away while receiving a reply", slot.path);
        slot.client.reset();
        slot.session.reset();
      }
    }
  }
  for (auto& slot : slots_) {
    slot->client.reset();
    slot->listener.reset();
    remove_own(slot->path, slot->dev, slot->ino);
  }
  if (handle_signals) ::sigprocmask(SIG_UNBLOCK, &mask, nullptr);
  return {};
}

}  // namespace nvgrace::serve
