// A stand-in for systemd's side of `nvgrace serve --fdstore` (R41), for the
// tests: the notify socket, a file-descriptor store kept as systemd 252
// keeps one (FDSTORE=1 under FDNAME; FDSTOREREMOVE=1; a descriptor of an
// open file already in the store is dropped as a duplicate - systemd
// compares them with kcmp), and Restart=: the service started again with
// the store passed as LISTEN_FDS/LISTEN_FDNAMES/LISTEN_PID from fd 3
// (sd_listen_fds(3)). Used by the serve tests and, in the host-device e2e
// guest, by e2e_host_client's `systemd` mode.
// Thread-safety: none; one owner.
#pragma once

#include <fcntl.h>
#include <linux/kcmp.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cstring>
#include <string>
#include <utility>
#include <vector>

#include "nvgrace/sys/fd.hpp"
#include "nvgrace/sys/scm.hpp"

namespace test {

class StandInSystemd {
 public:
  // `argv`: the service's command line (argv[0] the binary); its output
  // goes to `log` (appended).
  StandInSystemd(std::vector<std::string> argv, std::string notify, std::string log)
      : argv_(std::move(argv)), notify_(std::move(notify)), log_(std::move(log)) {
    ::unlink(notify_.c_str());
    sock_ = nvgrace::sys::UniqueFd(::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
    sockaddr_un a{};
    a.sun_family = AF_UNIX;
    std::strncpy(a.sun_path, notify_.c_str(), sizeof a.sun_path - 1);
    if (!sock_ || ::bind(sock_.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) != 0)
      error_ = "cannot bind the notify socket " + notify_ + ": " + std::strerror(errno);
  }
  ~StandInSystemd() {
    if (pid_ > 0) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
    }
    ::unlink(notify_.c_str());
  }
  StandInSystemd(const StandInSystemd&) = delete;
  StandInSystemd& operator=(const StandInSystemd&) = delete;

  [[nodiscard]] const std::string& error() const { return error_; }
  [[nodiscard]] pid_t pid() const { return pid_; }

  // Starts the service, passing it the store when the store is not empty.
  bool start() {
    drain();
    std::vector<std::string> names;
    std::vector<int> fds;
    for (const auto& [name, fd] : store_) {
      names.push_back(name);
      fds.push_back(fd.get());
    }
    const int log_fd = ::open(log_.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
    if (log_fd < 0) {
      error_ = "cannot open " + log_;
      return false;
    }
    pid_ = ::fork();
    if (pid_ == 0) {
      // Above every number in play first, then down to 3, 4, ...
      std::vector<int> high;
      for (int fd : fds) high.push_back(::fcntl(fd, F_DUPFD, 3 + static_cast<int>(fds.size()) + 64));
      ::dup2(log_fd, 1);
      ::dup2(log_fd, 2);
      for (std::size_t i = 0; i < high.size(); ++i) ::dup2(high[i], 3 + static_cast<int>(i));
      for (int fd : high) ::close(fd);
      std::string joined;
      for (const auto& n : names) joined += (joined.empty() ? "" : ":") + n;
      ::setenv("NOTIFY_SOCKET", notify_.c_str(), 1);
      if (!fds.empty()) {
        ::setenv("LISTEN_PID", std::to_string(::getpid()).c_str(), 1);
        ::setenv("LISTEN_FDS", std::to_string(fds.size()).c_str(), 1);
        ::setenv("LISTEN_FDNAMES", joined.c_str(), 1);
      }
      std::vector<char*> argv;
      for (auto& a : argv_) argv.push_back(a.data());
      argv.push_back(nullptr);
      ::execv(argv_[0].c_str(), argv.data());
      ::_exit(127);
    }
    ::close(log_fd);
    if (pid_ < 0) error_ = std::string("fork: ") + std::strerror(errno);
    return pid_ > 0;
  }

  // The service's exit status once it ended (waitpid's), or -1 while it runs.
  int reap() {
    if (pid_ <= 0) return -1;
    int status = 0;
    if (::waitpid(pid_, &status, WNOHANG) != pid_) return -1;
    pid_ = -1;
    return status;
  }

  // SIGKILL, then what Restart= does.
  bool kill_and_restart() {
    if (pid_ <= 0) return false;  // never kill(-1, ...)
    ::kill(pid_, SIGKILL);
    ::waitpid(pid_, nullptr, 0);
    pid_ = -1;
    return start();
  }

  // SIGTERM and the exit code (128 + signal when killed).
  int stop() {
    if (pid_ <= 0) return -1;
    ::kill(pid_, SIGTERM);
    int status = 0;
    ::waitpid(pid_, &status, 0);
    pid_ = -1;
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  }

  // Every notification so far into the store.
  void drain() {
    for (;;) {
      std::array<std::uint8_t, 4096> buf{};
      std::array<nvgrace::sys::UniqueFd, 4> fds;
      auto r = nvgrace::sys::recv_with_fds(sock_.get(), buf, fds, false);
      if (!r || r->bytes == 0) return;
      const std::string text(reinterpret_cast<const char*>(buf.data()), r->bytes);
      messages_.push_back(text);
      const auto name = field(text, "FDNAME");
      if (field(text, "FDSTOREREMOVE") == "1") {
        std::erase_if(store_, [&](const auto& e) { return e.first == name; });
      } else if (field(text, "FDSTORE") == "1" && r->fds == 1) {
        if (field(text, "FDPOLL") != "0") bad_.push_back("FDSTORE without FDPOLL=0: " + text);
        const bool duplicate = std::any_of(store_.begin(), store_.end(), [&](const auto& e) {
          return ::syscall(SYS_kcmp, ::getpid(), ::getpid(), KCMP_FILE, e.second.get(), fds[0].get()) == 0;
        });
        if (!duplicate) store_.emplace_back(name, std::move(fds[0]));
      }
    }
  }
  [[nodiscard]] std::size_t count(const std::string& message) {
    drain();
    return static_cast<std::size_t>(std::count(messages_.begin(), messages_.end(), message));
  }
  [[nodiscard]] std::vector<std::string> names() {
    drain();
    std::vector<std::string> out;
    for (const auto& e : store_) out.push_back(e.first);
    return out;
  }
  // Notifications systemd would not take as sent.
  [[nodiscard]] const std::vector<std::string>& bad() const { return bad_; }

 private:
  static std::string field(const std::string& text, const std::string& key) {
    for (std::size_t at = 0; at < text.size();) {
      const auto end = text.find('\n', at);
      const auto line = text.substr(at, end == std::string::npos ? std::string::npos : end - at);
      if (line.starts_with(key + "=")) return line.substr(key.size() + 1);
      if (end == std::string::npos) break;
      at = end + 1;
    }
    return {};
  }

  std::vector<std::string> argv_;
  std::string notify_, log_, error_;
  nvgrace::sys::UniqueFd sock_;
  pid_t pid_ = -1;
  std::vector<std::pair<std::string, nvgrace::sys::UniqueFd>> store_;
  std::vector<std::string> messages_;
  std::vector<std::string> bad_;
};

}  // namespace test
