// Crash survival under systemd (nvgrace-model.md R41): `nvgrace serve
// --fdstore`. The serving process is the unit's main process, and systemd's
// file-descriptor store keeps what a keeper process would (keeper.hpp): the
// state store, the listening sockets, the GPU memory and register files, and
// each connection's socket. When the process dies other than by a clean stop
// (SIGKILL, a crash), systemd starts it again (Restart=) and passes them
// back; the new process puts each at the number the records name and takes
// the records on, as a keeper's serving process does, and the client's
// socket never closed.
//
// The protocol is sd_notify(3)'s, written here by hand (a datagram to
// $NOTIFY_SOCKET with the descriptor as SCM_RIGHTS; libsystemd is not one of
// the project's dependencies): "FDSTORE=1", "FDNAME=nvgrace-<number>" (the
// state store: "nvgrace-state"), "FDPOLL=0" (systemd must not drop one on a
// hang-up: the server says when a connection ends, "FDSTOREREMOVE=1"). The
// restart passes them as LISTEN_FDS/LISTEN_FDNAMES/LISTEN_PID (sd_listen_fds(3)).
// The unit needs FileDescriptorStoreMax= and NotifyAccess=main.
//
// A real device's DMA memory (hold_copy) is kept as a copy of this
// process's own at a number in [kKeptFd, kConnectionFd), not closed on
// exec, stored under that number; a restarted process gets the copy back
// there, and the records' restore is given duplicates of it
// (decode_handover's `duplicate`), so the copy stays the store's.
//
// Thread-safety: FdStore's calls are serialized inside; the restore is a
// process's first step, single-threaded.
#pragma once

#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "nvgrace/common/result.hpp"
#include "nvgrace/serve/server.hpp"
#include "nvgrace/sys/fd.hpp"

namespace nvgrace::serve {

inline constexpr std::string_view kFdStoreStateName = "nvgrace-state";
// The state store's descriptor number, for a successor upgraded in place.
inline constexpr const char* kFdStoreStateEnv = "NVGRACE_FDSTORE_STATE";
// "nvgrace-<number>": the descriptor a record names as `number`.
[[nodiscard]] std::string fdstore_name(int number);

class FdStore final : public DescriptorKeeper {
 public:
  // Over $NOTIFY_SOCKET (a path, or "@name" for an abstract socket); an error
  // says what is missing.
  [[nodiscard]] static Result<std::unique_ptr<FdStore>> connect();

  // FDSTORE=1 with `fd` under `name`; FDSTOREREMOVE=1 of `name`.
  [[nodiscard]] Result<void> store(int fd, std::string_view name);
  [[nodiscard]] Result<void> remove(std::string_view name);

  Result<void> hold_connection(std::size_t slot, int fd) override;
  void drop_connection(std::size_t slot) override;
  Result<int> hold_copy(int fd) override;
  void release_copy(int number) override;
  void adopt_copies(std::span<const int> numbers) override;
  // READY=1 (harmless where the unit is not Type=notify).
  Result<void> ready() override;
  std::vector<int> descriptors() const override { return {}; }

 private:
  FdStore() = default;
  Result<void> send(std::string_view text, int fd);
  sys::UniqueFd socket_;
  std::string address_;  // sockaddr_un's path, a leading NUL for an abstract one
  std::mutex mutex_;
  std::set<int> copies_;  // hold_copy()'s, owned here
};

// What systemd passed this process (LISTEN_PID is this process): every
// descriptor named "nvgrace-<number>" put at that number (close-on-exec),
// and the state store's descriptor. nullopt when nothing of nvgrace's came
// (a first start). The LISTEN_* variables are cleared. Errors name the
// descriptor that cannot be put back (its number in use by another file).
struct FdStoreRestore {
  sys::UniqueFd state;
  std::vector<int> placed;
  std::vector<int> copies;  // of those, hold_copy()'s (open across exec)
};
[[nodiscard]] Result<std::optional<FdStoreRestore>> restore_from_fdstore();

}  // namespace nvgrace::serve
