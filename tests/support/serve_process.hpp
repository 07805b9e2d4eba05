// `nvgrace serve` in the background for the tests, as a service manager
// runs it: stdout and stderr to a log file, waited for, signalled, reaped.
// The binary defaults to the one built here; a test of upgrades runs a copy.
#pragma once

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <catch2/catch.hpp>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

namespace test {

inline std::string temp_path(const std::string& name) {
  return (std::filesystem::temp_directory_path() / ("nvgrace-serve-" + std::to_string(getpid()) + "-" + name))
      .string();
}

inline std::string slurp(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// `nvgrace serve ARGS` in the background, stdout and stderr to a file.
class ServeProcess {
 public:
  explicit ServeProcess(std::vector<std::string> args, std::string binary = NVGRACE_BIN)
      : log_(temp_path("log-" + std::to_string(++count_))) {
    std::vector<std::string> all{binary, "serve"};
    all.insert(all.end(), args.begin(), args.end());
    std::vector<char*> argv;
    for (auto& a : all) argv.push_back(a.data());
    argv.push_back(nullptr);
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 1, log_.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
    posix_spawn_file_actions_adddup2(&fa, 1, 2);
    REQUIRE(posix_spawn(&pid_, binary.c_str(), &fa, nullptr, argv.data(), environ) == 0);
    posix_spawn_file_actions_destroy(&fa);
  }
  ~ServeProcess() {
    if (pid_ > 0) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
    }
    ::unlink(log_.c_str());
  }
  // Waits until the server listens on `path` (or died). A socket file alone
  // proves nothing: it may be a stale one the server is about to replace.
  bool wait_socket(const std::string& path) {
    for (int i = 0; i < 200; ++i) {
      struct stat st {};
      if (::lstat(path.c_str(), &st) == 0 && S_ISSOCK(st.st_mode) && log().find("listening on " + path) != std::string::npos)
        return true;
      if (exited()) return false;
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    return false;
  }
  bool exited() {
    if (pid_ <= 0) return true;
    int status = 0;
    if (::waitpid(pid_, &status, WNOHANG) == pid_) {
      rc_ = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
      pid_ = -1;
      return true;
    }
    return false;
  }
  // Signals the server (unless it has exited already: never kill(-1, ...))
  // and waits for it; its exit code, or 128 + the signal that ended it.
  int stop(int sig) {
    if (pid_ > 0) ::kill(pid_, sig);
    for (int i = 0; i < 250 && !exited(); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(20));
    return rc_;
  }
  [[nodiscard]] std::string log() const { return slurp(log_); }
  [[nodiscard]] pid_t pid() const { return pid_; }

 private:
  static inline int count_ = 0;
  std::string log_;
  pid_t pid_ = -1;
  int rc_ = -1;
};

}  // namespace test
