// Runs the built `nvgrace` executable as a user would and captures its exit
// code, stdout and stderr separately.
#pragma once

#include <fcntl.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <string>
#include <vector>

struct CliResult {
  int exit_code = -1;
  std::string out;
  std::string err;
};

inline std::string drain(int fd) {
  std::string s;
  std::array<char, 4096> buf{};
  for (;;) {
    const ssize_t n = read(fd, buf.data(), buf.size());
    if (n <= 0) break;
    s.append(buf.data(), static_cast<std::size_t>(n));
  }
  close(fd);
  return s;
}

inline CliResult run_nvgrace(const std::vector<std::string>& args) {
  // stderr goes to a temporary file so a chatty stderr cannot block stdout.
  char err_path[] = "/tmp/nvgrace-cli-err-XXXXXX";
  const int err_fd = mkstemp(err_path);
  int out_pipe[2];
  if (err_fd < 0 || pipe(out_pipe) != 0) return {};
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, out_pipe[1], 1);
  posix_spawn_file_actions_adddup2(&fa, err_fd, 2);
  posix_spawn_file_actions_addclose(&fa, out_pipe[0]);
  std::vector<std::string> all{NVGRACE_BIN};
  all.insert(all.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (auto& a : all) argv.push_back(a.data());
  argv.push_back(nullptr);
  pid_t pid = -1;
  const int rc = posix_spawn(&pid, NVGRACE_BIN, &fa, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&fa);
  close(out_pipe[1]);
  CliResult r;
  r.out = drain(out_pipe[0]);
  if (rc == 0) {
    int status = 0;
    waitpid(pid, &status, 0);
    r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  }
  lseek(err_fd, 0, SEEK_SET);
  r.err = drain(err_fd);
  unlink(err_path);
  return r;
}
