#include "nvgrace/serve/server.hpp"

#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <sys/eventfd.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <thread>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "nvgrace/log/log.hpp"
#include "nvgrace/serve/connection.hpp"
#include "nvgrace/serve/handover.hpp"
#include "nvgrace/sys/scm.hpp"
#include "nvgrace/vfio/state.hpp"


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
  bool paused = false;             // ...because a hand-over paused it (R41): the connection goes on
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
  sigaddset(&mask, SIGUSR2);  // upgrade in place (R41)
  return mask;
}

// Wakes a connection thread out of its wait for the next message (R41):
// the handler does nothing, and without SA_RESTART the wait fails EINTR.
int pause_signal() { return SIGRTMIN; }
void on_pause_signal(int) {}

// The environment for the successor: ours, with the hand-over's variables set.
std::vector<std::string> successor_env(int state_fd, bool check) {
  const std::string_view drop[] = {kHandoverFdEnv, kHandoverCheckEnv};
  std::vector<std::string> add{fmt::format("{}={}", kHandoverFdEnv, state_fd)};
  if (check) add.push_back(fmt::format("{}=1", kHandoverCheckEnv));
  return successor_environment(drop, add);
}

void set_cloexec(std::span<const int> fds, bool on) {
  for (int fd : fds) {
    const int flags = ::fcntl(fd, F_GETFD);
    if (flags >= 0) ::fcntl(fd, F_SETFD, on ? (flags | FD_CLOEXEC) : (flags & ~FD_CLOEXEC));
  }
}

// Runs the successor in check mode: it reads the hand-over and takes the
// state on as it would after exec, then leaves without touching anything.
// Returns its verdict, one line when it refused.
Result<void> check_successor(const UpgradeTarget& t, int state_fd) {
  // Said here rather than left to posix_spawn, which under an emulator
  // (QEMU user mode) reports a failed exec only as the child's exit 127.
  if (::access(t.binary.c_str(), X_OK) != 0)
    return fail_errno(errno, "cannot start {}: {}", t.binary, std::strerror(errno));
  int out[2];
  if (::pipe2(out, O_CLOEXEC) != 0) return fail_errno(errno, "pipe: {}", std::strerror(errno));
  sys::UniqueFd rd(out[0]), wr(out[1]);
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, wr.get(), 1);
  posix_spawn_file_actions_adddup2(&fa, wr.get(), 2);
  auto argv_s = t.argv;
  auto env_s = successor_env(state_fd, true);
  auto argv = exec_strings(argv_s);
  auto env = exec_strings(env_s);
  pid_t pid = -1;
  const int err = ::posix_spawn(&pid, t.binary.c_str(), &fa, nullptr, argv.data(), env.data());
  posix_spawn_file_actions_destroy(&fa);
  wr.reset();
  if (err != 0) return fail_errno(err, "cannot start {}: {}", t.binary, std::strerror(err));
  std::string said;
  const auto deadline = std::chrono::steady_clock::now() + t.check_timeout;
  bool timed_out = false;
  for (;;) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) {
      timed_out = true;
      break;
    }
    pollfd p{rd.get(), POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(left.count())) < 0 && errno != EINTR) break;
    char buf[512];
    const ssize_t n = ::read(rd.get(), buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    if (said.size() < 4096) said.append(buf, static_cast<std::size_t>(n));
  }
  if (timed_out) ::kill(pid, SIGKILL);
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  // Its last line says why.
  while (!said.empty() && (said.back() == '\n' || said.back() == '\r')) said.pop_back();
  if (const auto nl = said.rfind('\n'); nl != std::string::npos) said.erase(0, nl + 1);
  if (timed_out) return fail_errno(ETIMEDOUT, "{} did not answer within {} ms", t.binary, t.check_timeout.count());
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
    return fail_errno(EPROTO, "{} refused ({}): {}", t.binary,
                      WIFEXITED(status) ? fmt::format("exit {}", WEXITSTATUS(status))
                                        : fmt::format("signal {}", WTERMSIG(status)),
                      said.empty() ? "it said nothing" : said);
  return {};
}
}  // namespace

void block_shutdown_signals() {
  const sigset_t mask = shutdown_signals();
  ::sigprocmask(SIG_BLOCK, &mask, nullptr);
}

void Server::finish(Slot& slot) {
  if (slot.worker.joinable()) slot.worker.join();
  slot.connection.reset();
  slot.paused = false;
  slot.ended.store(false);
}

// The thread that serves slot `index`'s connection until it ends (then tears
// it down, R30) or pauses for a hand-over (then leaves it as it is, R41).
void Server::start(std::size_t index) {
  auto log = module_logger("serve");
  Slot& slot = *slots_[index];
  const unsigned number = slot.connections;
  vfio::Function* reset = devices_[index].reset_on_disconnect ? devices_[index].device.get() : nullptr;
  slot.paused = false;
  slot.ended.store(false);
  slot.worker = std::thread([this, &slot, log, number, reset, index] {
    Connection& conn = *slot.connection;
    const auto end = conn.serve();
    if (!end.paused) {
      // R30: nothing of the departed client stays reachable by the device.
      const auto t = conn.teardown();
      for (const auto& e : t.errors) log->warn("{}: tearing down client {}: {}", slot.path, number, e);
      // ...and a real device starts the next client from reset (R14, R20).
      std::string reset_note;
      if (reset) {
        auto ok = reset->reset();
        reset_note = ok ? ", device reset" : fmt::format(", device reset failed: {}", ok.error().message);
      }
      if (store_) {
        // The successor must not find this connection, and the keeper lets
        // its socket go: the client sees it close.
        if (auto ok = publish(index, false, nullptr); !ok) log->warn("{}: publishing: {}", slot.path, ok.error().message);
        if (keeper_) keeper_->drop_connection(index);
      }
      log->log(end.why.starts_with("protocol violation") ? spdlog::level::warn : spdlog::level::info,
               "{}: client {}: {}; closing the connection ({} DMA mapping(s) removed, {} IRQ index(es) "
               "disabled{}), ready for the next client",
               slot.path, number, end.why, t.dma_unmapped, t.irq_indexes_disabled, reset_note);
    }
    slot.paused = end.paused;
    slot.ended.store(true);
    const std::uint64_t one = 1;
    [[maybe_unused]] auto w = ::write(reap_fd_.get(), &one, sizeof one);
  });
}

Result<void> Server::run(bool handle_signals) {
  auto log = module_logger("serve");
  sys::UniqueFd sigfd;
  const sigset_t mask = shutdown_signals();
  struct sigaction pause_action {};
  pause_action.sa_handler = on_pause_signal;  // no SA_RESTART: the wait for a message ends with EINTR
  sigemptyset(&pause_action.sa_mask);
  ::sigaction(pause_signal(), &pause_action, nullptr);
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
  // Connections a predecessor handed over (R41) go on from here.
  for (std::size_t i = 0; i < slots_.size(); ++i)
    if (slots_[i]->connection && !slots_[i]->worker.joinable()) start(i);
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
        if (info.ssi_signo == SIGUSR2) {
          upgrade();  // returns only when refused: this process goes on serving
          continue;
        }
        log->info("signal {}: shutting down; removing {} socket(s)", info.ssi_signo, slots_.size());
      } else {
        log->info("stopping; removing {} socket(s)", slots_.size());
      }
      break;
    }
    if (pfds[2].revents) {
      std::uint64_t n = 0;
      [[maybe_unused]] auto r = ::read(reap_fd_.get(), &n, sizeof n);
      for (std::size_t i = 0; i < slots_.size(); ++i) {
        auto& slot = *slots_[i];
        if (!slot.ended.load()) continue;
        if (slot.paused) {
          // Paused by an upgrade that was called off after it had asked
          // (resume() raced with this thread's pause): serve on.
          slot.worker.join();
          slot.connection->clear_pause();
          start(i);
        } else {
          finish(slot);
        }
      }
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
      if (store_) {
        // The keeper holds the socket, at the same number, before anything
        // about it is published (R41).
        const int at = kConnectionFd + static_cast<int>(i);
        if (::dup3(c.get(), at, O_CLOEXEC) < 0 || !keeper_->hold_connection(i, at)) {
          log->warn("{}: client {}: the keeper cannot hold its socket; refused", slot.path, number);
          ::close(at);
          continue;
        }
        c = sys::UniqueFd(at);
      }
      slot.connection = std::make_unique<Connection>(fmt::format("{} client {}", slot.path, number), std::move(c),
                                                     *devices_[i].device, log, messages_);
      log->info("{}: client {} connected", slot.path, number);
      if (store_) {
        // A new client's message ids start over: nothing of it is answered yet.
        store_->replied(i).store(0, std::memory_order_release);
        journal(i);
        if (auto ok = publish(i, true, nullptr); !ok) log->warn("{}: publishing: {}", slot.path, ok.error().message);
      }
      start(i);
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

void Server::resume() {
  for (std::size_t i = 0; i < slots_.size(); ++i) {
    auto& slot = *slots_[i];
    if (!slot.connection) continue;
    slot.connection->clear_pause();
    if (slot.ended.load() && slot.paused) {
      if (slot.worker.joinable()) slot.worker.join();
      start(i);
    }
  }
}

// R41, the predecessor's side.
void Server::upgrade() {
  auto log = module_logger("serve");
  if (!upgrade_) {
    log->warn("SIGUSR2: this server has nowhere to upgrade to; still serving");
    return;
  }
  const auto& target = *upgrade_;
  const auto t0 = std::chrono::steady_clock::now();
  auto ms_since = [&] {
    return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0).count();
  };
  // 1. Every connection to a message boundary: the message being answered
  //    is finished; the next waits in the socket.
  std::size_t live = 0;
  for (auto& slot : slots_)
    if (slot->connection && !slot->ended.load()) {
      slot->connection->request_pause();
      ++live;
    }
  log->info("SIGUSR2: upgrading to {}: pausing {} connection(s) between messages", target.binary, live);
  const auto deadline = t0 + target.pause_timeout;
  for (;;) {
    bool all = true;
    for (auto& slot : slots_)
      if (slot->connection && !slot->ended.load()) {
        all = false;
        ::pthread_kill(slot->worker.native_handle(), pause_signal());
      }
    if (all) break;
    if (std::chrono::steady_clock::now() > deadline) {
      log->warn("upgrade called off: a connection did not reach a message boundary within {} ms; still serving",
                target.pause_timeout.count());
      resume();
      return;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  for (auto& slot : slots_) {
    if (!slot->connection) continue;
    if (slot->worker.joinable()) slot->worker.join();
    if (!slot->paused) finish(*slot);  // its client left meanwhile: torn down already
  }
  // 2. Everything into the hand-over.
  sys::FdTable fds;
  nlohmann::json slots = nlohmann::json::array();
  for (std::size_t i = 0; i < slots_.size(); ++i) {
    auto record = slot_record(i, fds, true, nullptr);
    if (!record) {
      log->warn("upgrade refused: {}: {}; still serving", slots_[i]->path, record.error().message);
      resume();
      return;
    }
    slots.push_back(std::move(*record));
  }
  auto state = write_handover({{"slots", std::move(slots)},
                               {"messages", messages_.load()},
                               {"from_pid", ::getpid()},
                               {"paused_at_ns", std::chrono::duration_cast<std::chrono::nanoseconds>(
                                                    t0.time_since_epoch()).count()}},
                              fds.borrowed());
  if (!state) {
    log->warn("upgrade refused: {}; still serving", state.error().message);
    resume();
    return;
  }
  // 3. The successor must say it can take it on before this process goes.
  // With a keeper, the successor stays its child: the store and the
  // control socket cross the exec too (their numbers are in the environment).
  std::vector<int> crossing(fds.borrowed().begin(), fds.borrowed().end());
  crossing.push_back(state->get());
  if (store_) crossing.push_back(store_->fd());
  if (keeper_)
    for (int fd : keeper_->descriptors()) crossing.push_back(fd);
  set_cloexec(crossing, false);
  const int state_fd = state->get();
  auto undo = [&](const std::string& why) {
    set_cloexec(crossing, true);
    log->warn("upgrade refused: {}; still serving with this binary", why);
    resume();
  };
  if (auto ok = check_successor(target, state_fd); !ok) return undo(ok.error().message);
  // 4. Exec. The connected sockets stay open throughout.
  log->info("handing {} socket(s) and {} connection(s) over to {} after {} ms", slots_.size(), live,
            target.binary, ms_since());
  log->flush();
  auto argv_s = target.argv;
  auto env_s = successor_env(state_fd, false);
  auto argv = exec_strings(argv_s);
  auto env = exec_strings(env_s);
  ::execve(target.binary.c_str(), argv.data(), env.data());
  undo(fmt::format("exec {}: {}", target.binary, std::strerror(errno)));
}

Result<std::vector<Server::SlotState>> Server::slot_states(const nlohmann::json& doc, sys::FdTable& fds) {
  auto slots = vfio::state::array(doc, "slots");
  if (!slots) return fail(slots.error());
  std::vector<SlotState> out;
  for (const auto& r : **slots) out.push_back({&r, &fds});
  return out;
}

// One socket's record: the device and the socket with its connection.
Result<nlohmann::json> Server::slot_record(std::size_t index, sys::FdTable& fds, bool with_connection,
                                           const Connection::Pending* pending) const {
  auto device = devices_[index].device->save_state(fds);
  if (!device) return fail(device.error());
  const auto& slot = *slots_[index];
  const bool conn = with_connection && slot.connection;
  return nlohmann::json{{"device", std::move(*device)},
                        {"slot",
                         {{"path", slot.path},
                          {"dev", static_cast<std::uint64_t>(slot.dev)},
                          {"ino", static_cast<std::uint64_t>(slot.ino)},
                          {"listener", fds.add(slot.listener.get())},
                          {"connections", slot.connections},
                          {"connection", conn ? slot.connection->save(fds, pending) : nlohmann::json()}}}};
}

Result<void> Server::publish(std::size_t index, bool with_connection, const Connection::Pending* pending) {
  sys::FdTable fds;
  auto record = slot_record(index, fds, with_connection, pending);
  if (!record) return fail(record.error());
  (*record)["messages"] = messages_.load();
  std::vector<int> numbers(fds.borrowed().begin(), fds.borrowed().end());
  if (!keeper_) return store_->publish(index, encode_handover(std::move(*record), numbers));
  // The keeper lets go of a copy only once no published record names it.
  std::lock_guard lock(kept_mutex_);
  std::vector<int> unnamed;
  if (auto ok = keeper_numbers(index, numbers, unnamed); !ok) return ok;
  if (auto ok = store_->publish(index, encode_handover(std::move(*record), numbers)); !ok) return ok;
  for (int n : unnamed) keeper_->release_copy(n);
  return {};
}

Result<int> copy_into_kept_range(int fd, bool close_on_exec) {
  const int at = ::fcntl(fd, close_on_exec ? F_DUPFD_CLOEXEC : F_DUPFD, kKeptFd);
  if (at < 0) return fail_errno(errno, "copying descriptor {}: {}", fd, std::strerror(errno));
  if (at >= kConnectionFd) {
    ::close(at);
    return fail_errno(EMFILE, "{} descriptors are kept for records already, all there is room for ({}..{})",
                      kConnectionFd - kKeptFd, kKeptFd, kConnectionFd - 1);
  }
  return at;
}

namespace {
std::optional<std::pair<dev_t, ino_t>> file_of(int fd) {
  struct stat st {};
  if (::fstat(fd, &st) != 0) return std::nullopt;
  return std::pair(st.st_dev, st.st_ino);
}
}  // namespace

// A record names descriptors by number, and a successor inherits them from
// the keeper: every number must be one the keeper holds, as the same file.
// Inherited descriptors and connections (kConnectionFd + i) are; anything
// else the keeper is given a copy of first.
Result<void> Server::keeper_numbers(std::size_t index, std::vector<int>& numbers, std::vector<int>& unnamed) {
  if (named_.size() != slots_.size()) named_.resize(slots_.size());
  for (int& n : numbers) {
    if (n >= kConnectionFd && n < kConnectionFd + static_cast<int>(slots_.size())) continue;
    const auto f = file_of(n);
    if (!f) return fail_errno(errno, "descriptor {} of socket {}'s record: {}", n, index, std::strerror(errno));
    const FileId id{f->first, f->second};
    if (const auto it = inherited_.find(n); it != inherited_.end() && it->second == id) continue;
    // The same file as a copy this process inherited (from the keeper, or
    // its own from before an upgrade's exec): that copy, never a second one -
    // systemd's store drops a second descriptor of an open file it holds.
    if (const auto it = std::find_if(inherited_.begin(), inherited_.end(),
                                     [&](const auto& e) {
                                       return e.second == id && e.first >= kKeptFd && e.first < kConnectionFd;
                                     });
        it != inherited_.end()) {
      n = it->first;
      continue;
    }
    if (const auto it = kept_.find(id); it != kept_.end()) {
      n = it->second;
      continue;
    }
    auto at = keeper_->hold_copy(n);
    if (!at) return fail(at.error());
    kept_[id] = *at;
    n = *at;
  }
  // Copies no record names any more go (a mapping removed).
  std::set<int> now(numbers.begin(), numbers.end());
  for (int old : named_[index]) {
    if (now.contains(old) || old < kKeptFd || old >= kConnectionFd) continue;
    const bool elsewhere = std::any_of(named_.begin(), named_.end(), [&](const auto& s) {
      return &s != &named_[index] && s.contains(old);
    });
    if (elsewhere) continue;
    std::erase_if(kept_, [&](const auto& e) { return e.second == old; });
    std::erase_if(inherited_, [&](const auto& e) { return e.first == old; });
    unnamed.push_back(old);
  }
  named_[index] = std::move(now);
  return {};
}

Result<void> Server::publish_all() {
  if (!store_) return fail_errno(EINVAL, "no state store");
  for (std::size_t i = 0; i < slots_.size(); ++i)
    if (auto ok = publish(i, true, nullptr); !ok) return fail(ok.error().context(slots_[i]->path));
  return {};
}

void Server::set_keeper(StateStore* store, DescriptorKeeper* keeper) {
  store_ = store;
  keeper_ = keeper;
  if (keeper_) {
    // What this process inherited from the keeper: the descriptors its
    // records name (kept_numbers() relies on their being the same files).
    std::lock_guard lock(kept_mutex_);
    named_.assign(slots_.size(), {});
    for (std::size_t i = 0; i < slots_.size(); ++i)
      if (auto fds = handover_descriptors(store_->record(i))) {
        for (int fd : *fds)
          if (const auto f = file_of(fd)) inherited_[fd] = FileId{f->first, f->second};
        named_[i].insert(fds->begin(), fds->end());
      }
    std::vector<int> copies;
    for (const auto& n : named_)
      for (int fd : n)
        if (fd >= kKeptFd && fd < kConnectionFd) copies.push_back(fd);
    keeper_->adopt_copies(copies);
  }
  for (std::size_t i = 0; i < slots_.size(); ++i)
    if (slots_[i]->connection) journal(i);
}

// The connection of slot `index` answers from the front of its socket and
// publishes the slot before a state-changing reply goes out (R41).
void Server::journal(std::size_t index) {
  slots_[index]->connection->set_journal(
      {store_->replied(index), [this, index](const Connection::Pending* p) { return publish(index, true, p); }});
}

// R41, the successor's side.
Result<std::unique_ptr<Server>> Server::adopt(std::vector<ServedDevice> devices, std::span<const SlotState> records,
                                              std::uint64_t messages, bool serve_connections) {
  namespace st = vfio::state;
  std::unique_ptr<Server> s(new Server());
  // A hand-over that cannot be taken on is left exactly as it came: what was
  // restored so far is never torn down (no socket removed, no session torn
  // down, no descriptor closed), as all of it is still the predecessor's -
  // the server object is let go unreleased, and the process leaves.
  struct KeepOnFailure {
    std::unique_ptr<Server>& s;
    bool done = false;
    ~KeepOnFailure() {
      if (!done) (void)s.release();
    }
  } keep{s};
  s->stop_fd_ = sys::UniqueFd(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  s->reap_fd_ = sys::UniqueFd(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  if (!s->stop_fd_ || !s->reap_fd_) return fail_errno(errno, "eventfd: {}", std::strerror(errno));
  if (records.size() != devices.size())
    return fail_errno(EINVAL, "the hand-over has {} socket(s); this command line serves {}", records.size(),
                      devices.size());
  s->messages_.store(messages);
  auto log = module_logger("serve");
  for (std::size_t i = 0; i < devices.size(); ++i) {
    const auto& record = *records[i].record;
    auto& fds = *records[i].fds;
    auto device = st::object(record, "device");
    auto saved = st::object(record, "slot");
    if (!device || !saved) return fail(!device ? device.error() : saved.error());
    if (auto ok = devices[i].device->restore_state(**device, fds); !ok)
      return fail(ok.error().context(devices[i].socket_path));
    const auto& j = **saved;
    auto path = st::text(j, "path");
    auto dev = st::u64(j, "dev"), ino = st::u64(j, "ino"), listener = st::u64(j, "listener"),
         connections = st::u64(j, "connections");
    if (!path || !dev || !ino || !listener || !connections)
      return fail(!path ? path.error() : !dev ? dev.error() : !ino ? ino.error() : !listener ? listener.error()
                  : connections.error());
    if (*path != devices[i].socket_path)
      return fail_errno(EINVAL, "the hand-over's socket {} is {}; this command line has {}", i, *path,
                        devices[i].socket_path);
    auto slot = std::make_unique<Slot>();
    slot->path = std::string(*path);
    slot->dev = static_cast<dev_t>(*dev);
    slot->ino = static_cast<ino_t>(*ino);
    auto fd = fds.take(*listener);
    if (!fd) return fail(fd.error());
    slot->listener = std::move(*fd);
    slot->connections = static_cast<unsigned>(*connections);
    const auto c = j.find("connection");
    if (c != j.end() && !c->is_null()) {
      auto conn = Connection::restore(fmt::format("{} client {}", slot->path, slot->connections), *c, fds,
                                      *devices[i].device, log, s->messages_);
      if (!conn) return fail(conn.error().context(slot->path));
      slot->connection = std::move(*conn);
    }
    s->slots_.push_back(std::move(slot));
  }
  s->devices_ = std::move(devices);
  for (const auto& r : records)
    if (const auto left = r.fds->untaken(); left != 0)
      return fail_errno(EINVAL, "the hand-over brought {} descriptor(s) nothing here takes", left);
  // A check never claims anything (run() starts the adopted connections).
  if (serve_connections)
    for (auto& d : s->devices_)
      if (auto ok = d.device->claim_state(); !ok) return fail(ok.error().context(d.socket_path));
  keep.done = true;
  return s;
}

}  // namespace nvgrace::serve
