#include "nvgrace/serve/server.hpp"

#include <poll.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstring>
#include <thread>

#include <fmt/format.h>

#include "nvgrace/log/log.hpp"
#include "nvgrace/serve/connection.hpp"

namespace nvgrace::serve {

namespace user = vfio::user;

std::string socket_path(const std::string& base, unsigned i, unsigned count) {
  return count == 1 ? base : fmt::format("{}.{}", base, i);
}

struct Server::Slot {
  std::string path;
  dev_t dev = 0;  // the socket file this server created, to remove only it
  ino_t ino = 0;
  sys::UniqueFd listener;
  std::unique_ptr<Connection> connection;  // the client being served, if any
  std::thread worker;
  std::atomic<bool> ended{false};  // the worker is done; join it
  unsigned connections = 0;
};


namespace {

// Whether a socket file answers a connect: a live server owns it.
enum class SocketState { live, stale, other };
SocketState probe_socket(const sockaddr_un& addr, int& err) {
  sys::UniqueFd probe(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
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
  s->stop_fd_ = sys::UniqueFd(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  s->reap_fd_ = sys::UniqueFd(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  if (!s->stop_fd_ || !s->reap_fd_) return fail_errno(errno, "eventfd: {}", std::strerror(errno));
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
    slot->listener = sys::UniqueFd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
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
  for (auto& slot : slots_) {
    if (slot->connection) slot->connection->stop();
    if (slot->worker.joinable()) slot->worker.join();
    remove_own(slot->path, slot->dev, slot->ino);
  }
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

void Server::finish(Slot& slot) {
  if (slot.worker.joinable()) slot.worker.join();
  slot.connection.reset();
  slot.ended.store(false);
}

Result<void> Server::run(bool handle_signals) {
  auto log = module_logger("serve");
  sys::UniqueFd sigfd;
  const sigset_t mask = shutdown_signals();
  if (handle_signals) {
    ::sigprocmask(SIG_BLOCK, &mask, nullptr);
    sigfd = sys::UniqueFd(::signalfd(-1, &mask, SFD_CLOEXEC));
    if (!sigfd) return fail_errno(errno, "signalfd: {}", std::strerror(errno));
  }
  // Built once: stop, signals, reaped connections, then one per listener.
  std::vector<pollfd> pfds{{stop_fd_.get(), POLLIN, 0}, {sigfd ? sigfd.get() : -1, POLLIN, 0},
                           {reap_fd_.get(), POLLIN, 0}};
  for (auto& slot : slots_) pfds.push_back({slot->listener.get(), POLLIN, 0});
  for (auto& slot : slots_) log->info("listening on {}", slot->path);
  for (;;) {
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
    if (pfds[2].revents) {
      std::uint64_t n = 0;
      [[maybe_unused]] auto r = ::read(reap_fd_.get(), &n, sizeof n);
      for (auto& slot : slots_)
        if (slot->ended.load()) finish(*slot);
    }
    for (std::size_t i = 0; i < slots_.size(); ++i) {
      auto& slot = *slots_[i];
      if (!pfds[3 + i].revents) continue;
      sys::UniqueFd c(::accept4(slot.listener.get(), nullptr, nullptr, SOCK_CLOEXEC));
      if (!c) {
        if (errno != EAGAIN && errno != EWOULDBLOCK) log->warn("{}: accept: {}", slot.path, std::strerror(errno));
        continue;
      }
      // A client that has just left may not have been reaped yet: finish its
      // teardown now rather than refuse the one that replaces it.
      if (slot.ended.load() || (slot.connection && slot.connection->peer_closed())) finish(slot);
      if (slot.connection) {
        log->warn("{}: refused a second client: one client at a time, client {} is connected", slot.path,
                  slot.connections);
        continue;
      }
      const unsigned number = ++slot.connections;
      slot.connection = std::make_unique<Connection>(fmt::format("{} client {}", slot.path, number), std::move(c),
                                                     *devices_[i].device, log, messages_);
      log->info("{}: client {} connected", slot.path, number);
      vfio::Function* reset = devices_[i].reset_on_disconnect ? devices_[i].device.get() : nullptr;
      slot.worker = std::thread([this, &slot, log, number, reset] {
        Connection& conn = *slot.connection;
        const std::string why = conn.serve();
        // R30: nothing of the departed client stays reachable by the device.
        const auto t = conn.teardown();
        for (const auto& e : t.errors) log->warn("{}: tearing down client {}: {}", slot.path, number, e);
        // ...and a real device starts the next client from reset (R14, R20).
        std::string reset_note;
        if (reset) {
          auto ok = reset->reset();
          reset_note = ok ? ", device reset" : fmt::format(", device reset failed: {}", ok.error().message);
        }
        log->log(why.starts_with("protocol violation") ? spdlog::level::warn : spdlog::level::info,
                 "{}: client {}: {}; closing the connection ({} DMA mapping(s) removed, {} IRQ index(es) "
                 "disabled{}), ready for the next client",
                 slot.path, number, why, t.dma_unmapped, t.irq_indexes_disabled, reset_note);
        slot.ended.store(true);
        const std::uint64_t one = 1;
        [[maybe_unused]] auto w = ::write(reap_fd_.get(), &one, sizeof one);
      });
    }
  }
  for (auto& slot : slots_) {
    if (slot->connection) slot->connection->stop();
    finish(*slot);
    slot->listener.reset();
    remove_own(slot->path, slot->dev, slot->ino);
  }
  if (handle_signals) ::sigprocmask(SIG_UNBLOCK, &mask, nullptr);
  return {};
}

}  // namespace nvgrace::serve
