// Crash survival (nvgrace-model.md R41): `nvgrace serve --keeper`. The
// process that binds the sockets and builds the devices stays on as the
// keeper. It holds every descriptor - listening sockets, GPU memory,
// registers, the state store (store.hpp), and each connection's socket,
// which the serving process hands it before serving it - and runs the
// serving process as its child: the binary at its path, with its command
// line, executed with those descriptors at the same numbers. That process
// keeps its records in the store current (journaled connections,
// connection.hpp). When it dies other than by a clean stop - SIGKILL, a
// crash - the keeper starts another, which takes the records on: the
// client's socket never closes and nothing published is lost.
//
// Signals: SIGTERM, SIGINT and SIGHUP go to the serving process, which stops
// cleanly, and then the keeper leaves; SIGUSR2 goes to it too (an upgrade
// in place, server.hpp; its successor stays the keeper's child).
//
// Thread-safety: run_keeper() is a process's whole life; single-threaded.
#pragma once

#include <mutex>
#include <span>
#include <string>
#include <vector>

#include "nvgrace/serve/server.hpp"
#include "nvgrace/serve/store.hpp"

namespace nvgrace::serve {

// The serving process's environment variable: "STORE_FD,CONTROL_FD".
inline constexpr const char* kKeeperEnv = "NVGRACE_KEEPER";

struct KeeperOptions {
  UpgradeTarget child;              // what the serving process runs
  // Serving processes in a row that die before they are serving (say so
  // with kKeeperReady) before the keeper gives up; one that was serving is
  // replaced however often it dies.
  unsigned max_failed_starts = 5;
};

// The serving process's side: its keeper, over the control socket the
// keeper gave it (KeeperMessage).
class KeeperChannel final : public DescriptorKeeper {
 public:
  explicit KeeperChannel(sys::UniqueFd control) : control_(std::move(control)) {}
  Result<void> hold_connection(std::size_t slot, int fd) override;
  void drop_connection(std::size_t slot) override;
  Result<int> hold_copy(int fd) override;
  void release_copy(int number) override;
  Result<void> ready() override;
  std::vector<int> descriptors() const override { return {control_.get()}; }

 private:
  // One message, maybe with a descriptor; `answer`: bytes to wait for.
  Result<void> tell(std::uint32_t op, std::uint32_t slot, int fd, std::span<std::uint8_t> answer);
  sys::UniqueFd control_;
  std::mutex mutex_;
};

// Runs the keeper over the bound server (its records already published in
// `store`) until the serving process stops cleanly (0) or dies too often (1).
[[nodiscard]] int run_keeper(Server& bound, StateStore& store, const KeeperOptions& options);

}  // namespace nvgrace::serve
