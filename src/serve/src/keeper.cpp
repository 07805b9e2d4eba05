#include "nvgrace/serve/keeper.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <set>
#include <thread>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "nvgrace/log/log.hpp"
#include "nvgrace/serve/handover.hpp"
#include "nvgrace/sys/scm.hpp"


namespace nvgrace::serve {

namespace {

// The descriptors the records name: what a serving process must inherit.
std::set<int> named_descriptors(const StateStore& store) {
  std::set<int> out;
  for (std::size_t i = 0; i < store.slots(); ++i) {
    if (auto fds = handover_descriptors(store.record(i))) out.insert(fds->begin(), fds->end());
  }
  return out;
}

// Forks and executes the serving process with `inherit` open (everything
// else stays close-on-exec).
pid_t spawn(const KeeperOptions& o, const std::set<int>& inherit, int store_fd, int control) {
  auto argv_s = o.child.argv;
  const std::string_view drop[] = {kKeeperEnv};
  const std::string add[] = {fmt::format("{}={},{}", kKeeperEnv, store_fd, control)};
  auto env_s = successor_environment(drop, add);
  auto argv = exec_strings(argv_s);
  auto env = exec_strings(env_s);
  const pid_t pid = ::fork();
  if (pid != 0) return pid;
  // The child: only what the records name, the store and its control end
  // cross the exec.
  for (int fd : inherit) ::fcntl(fd, F_SETFD, 0);
  ::fcntl(store_fd, F_SETFD, 0);
  ::fcntl(control, F_SETFD, 0);
  ::execve(o.child.binary.c_str(), argv.data(), env.data());
  ::_exit(127);
}

std::string how_it_ended(int status) {
  if (WIFSIGNALED(status)) return fmt::format("killed by signal {} ({})", WTERMSIG(status), ::strsignal(WTERMSIG(status)));
  return fmt::format("exit {}", WEXITSTATUS(status));
}

}  // namespace

Result<void> KeeperChannel::tell(std::uint32_t op, std::uint32_t slot, int fd, std::span<std::uint8_t> answer) {
  std::lock_guard lock(mutex_);
  const KeeperMessage m{op, slot};
  const std::span<const std::uint8_t> bytes(reinterpret_cast<const std::uint8_t*>(&m), sizeof m);
  if (auto ok = sys::send_with_fds(control_.get(), bytes,
                                   fd >= 0 ? std::span<const int>(&fd, 1) : std::span<const int>());
      !ok)
    return fail(ok.error().context("keeper"));
  if (answer.empty()) return {};
  ssize_t n;
  do n = ::recv(control_.get(), answer.data(), answer.size(), 0);
  while (n < 0 && errno == EINTR);
  if (n != static_cast<ssize_t>(answer.size())) return fail_errno(EPIPE, "the keeper did not answer");
  return {};
}

Result<void> KeeperChannel::hold_connection(std::size_t slot, int fd) {
  std::uint8_t ack = 0;
  return tell(kKeeperOpen, static_cast<std::uint32_t>(slot), fd, std::span(&ack, 1));
}

void KeeperChannel::drop_connection(std::size_t slot) {
  (void)tell(kKeeperClose, static_cast<std::uint32_t>(slot), -1, {});
}

Result<int> KeeperChannel::hold_copy(int fd) {
  std::int32_t at = -1;
  if (auto ok = tell(kKeeperHold, 0, fd, std::span(reinterpret_cast<std::uint8_t*>(&at), sizeof at)); !ok)
    return fail(ok.error());
  if (at < 0)
    return fail_errno(EMFILE, "the keeper holds {} descriptors, all it has room for ({}..{})", kConnectionFd - kKeptFd,
                      kKeptFd, kConnectionFd - 1);
  return at;
}

void KeeperChannel::release_copy(int number) { (void)tell(kKeeperRelease, static_cast<std::uint32_t>(number), -1, {}); }

Result<void> KeeperChannel::ready() { return tell(kKeeperReady, 0, -1, {}); }

int run_keeper(Server& bound, StateStore& store, const KeeperOptions& o) {
  auto log = module_logger("keeper");
  sigset_t mask;
  sigemptyset(&mask);
  for (int sig : {SIGTERM, SIGINT, SIGHUP, SIGUSR2, SIGCHLD}) sigaddset(&mask, sig);
  ::sigprocmask(SIG_BLOCK, &mask, nullptr);
  sys::UniqueFd sigfd(::signalfd(-1, &mask, SFD_CLOEXEC));
  if (!sigfd) {
    log->error("signalfd: {}", std::strerror(errno));
    return 1;
  }
  sys::UniqueFd control;
  pid_t child = -1;
  unsigned failed_starts = 0;  // serving processes in a row that died before they were serving
  bool ready = false;          // the current one took the state on
  bool stopping = false;
  bool control_open = false;
  std::set<int> kept;          // copies held for records (kKeeperHold)
  auto start_child = [&]() -> bool {
    int sp[2];
    if (::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sp) != 0) {
      log->error("socketpair: {}", std::strerror(errno));
      return false;
    }
    control = sys::UniqueFd(sp[0]);
    control_open = true;
    sys::UniqueFd theirs(sp[1]);
    const auto inherit = named_descriptors(store);
    // A connection the keeper holds that no record names was accepted just
    // before a death, before anything about it was published: let it go,
    // so its client sees the socket close instead of waiting.
    for (std::size_t i = 0; i < bound.size(); ++i) {
      const int at = kConnectionFd + static_cast<int>(i);
      if (::fcntl(at, F_GETFD) >= 0 && !inherit.contains(at)) {
        log->warn("socket {}: a connection accepted just before the serving process died is closed", i);
        ::close(at);
      }
    }
    // So is a copy given to the keeper that no record came to name.
    for (auto it = kept.begin(); it != kept.end();) {
      if (inherit.contains(*it)) {
        ++it;
        continue;
      }
      ::close(*it);
      it = kept.erase(it);
    }
    ready = false;
    child = spawn(o, inherit, store.fd(), theirs.get());
    if (child < 0) {
      log->error("fork: {}", std::strerror(errno));
      return false;
    }
    return true;
  };
  if (!start_child()) return 1;
  log->info("keeping the descriptors and the state of {} socket(s); serving process {}", bound.size(), child);
  for (;;) {
    pollfd p[2] = {{sigfd.get(), POLLIN, 0}, {control_open ? control.get() : -1, POLLIN, 0}};
    if (::poll(p, 2, -1) < 0) {
      if (errno == EINTR) continue;
      log->error("poll: {}", std::strerror(errno));
      return 1;
    }
    if (p[1].revents & POLLIN) {
      KeeperMessage m{};
      std::array<sys::UniqueFd, 2> fds;
      auto r = sys::recv_with_fds(control.get(), std::span(reinterpret_cast<std::uint8_t*>(&m), sizeof m), fds);
      if (r && r->bytes == sizeof m && m.op == kKeeperReady) {
        ready = true;
        failed_starts = 0;
      } else if (r && r->bytes == sizeof m && m.op == kKeeperHold && r->fds == 1) {
        // A copy at the lowest free number of the range; the answer is it.
        const auto copy = copy_into_kept_range(fds[0].get(), true);
        const std::int32_t at = copy ? *copy : -1;
        if (copy) kept.insert(at);
        else log->warn("the serving process asked to hold a descriptor: {}", copy.error().message);
        [[maybe_unused]] auto n = ::send(control.get(), &at, sizeof at, MSG_NOSIGNAL);
      } else if (r && r->bytes == sizeof m && m.op == kKeeperRelease) {
        if (kept.erase(static_cast<int>(m.slot)) != 0) ::close(static_cast<int>(m.slot));
      } else if (r && r->bytes == sizeof m && m.slot < bound.size()) {
        const int at = kConnectionFd + static_cast<int>(m.slot);
        if (m.op == kKeeperOpen && r->fds == 1) {
          ::dup3(fds[0].get(), at, O_CLOEXEC);
          const std::uint8_t ack = 1;
          [[maybe_unused]] auto n = ::send(control.get(), &ack, 1, MSG_NOSIGNAL);
        } else if (m.op == kKeeperClose) {
          ::close(at);
        }
      } else if (!r || r->bytes == 0) {
        control_open = false;  // the serving process's end closed: its death follows (SIGCHLD)
      }
    }
    if (!(p[0].revents & POLLIN)) continue;
    signalfd_siginfo info{};
    if (::read(sigfd.get(), &info, sizeof info) != sizeof info) continue;
    if (info.ssi_signo != SIGCHLD) {
      if (info.ssi_signo != SIGUSR2) stopping = true;
      if (child > 0) ::kill(child, static_cast<int>(info.ssi_signo));
      continue;
    }
    int status = 0;
    const pid_t w = ::waitpid(child, &status, WNOHANG);
    if (w != child) continue;
    if (stopping || (WIFEXITED(status) && WEXITSTATUS(status) == 0)) {
      log->info("serving process {} stopped ({}); the keeper leaves", child, how_it_ended(status));
      return WIFEXITED(status) ? WEXITSTATUS(status) : 1;
    }
    // A process that dies before it is serving (a binary that cannot take
    // the state on, a crash at start) is retried a few times, then the
    // keeper gives up rather than loop; one that was serving is replaced
    // however often it dies.
    if (!ready && ++failed_starts >= o.max_failed_starts) {
      log->error("serving process {} {} before it was serving, {} times in a row; giving up", child,
                 how_it_ended(status), failed_starts);
      return 1;
    }
    if (!ready) std::this_thread::sleep_for(std::chrono::milliseconds(200) * failed_starts);
    log->warn("serving process {} {}; starting another from the state it published", child, how_it_ended(status));
    if (!start_child()) return 1;
    log->info("serving process {} started", child);
  }
}

}  // namespace nvgrace::serve
