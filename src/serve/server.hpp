// A vfio-user server for emulated GPUs: one UNIX socket per device, one
// client at a time per socket. After a client leaves, cleanly or in the
// middle of a message, the socket takes the next one; the device keeps its
// state (vfio-user.rst, "Client Disconnection"). Malformed messages get an
// error reply, or the connection is closed with a log line; the server itself
// never stops for a client's mistake.
//
// Thread-safety: run() is the only loop; stop() may be called from any thread
// or a signal context (it writes an eventfd).
#pragma once

#include <sys/types.h>

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "nvgrace/common/result.hpp"
#include "nvgrace/vfio/device.hpp"
#include "nvgrace/vfio/fd.hpp"

namespace nvgrace::serve {

struct ServedDevice {
  std::string socket_path;
  std::unique_ptr<vfio::VariantDevice> device;
};

// Who may connect: the socket file's mode and, when set, its group (so that,
// for example, libvirt's qemu user can connect through a shared group).
struct SocketAccess {
  unsigned mode = 0600;
  std::optional<gid_t> group;
};

class Server {
 public:
  // Binds every socket. A path that exists is replaced only when it is a
  // stale socket (a connect is refused); a socket that answers is in use
  // (EADDRINUSE), anything else is not ours (EEXIST). Nothing is left bound
  // when one of the sockets fails.
  [[nodiscard]] static Result<std::unique_ptr<Server>> create(std::vector<ServedDevice> devices,
                                                             SocketAccess access = {});
  ~Server();

  // Serves until stop() or SIGINT/SIGTERM/SIGHUP (when `handle_signals`),
  // then closes everything and removes the socket files it created - only
  // those: a path now holding another file (same name, other inode) is left.
  Result<void> run(bool handle_signals);
  void stop();

  [[nodiscard]] std::uint64_t messages() const { return messages_; }
  [[nodiscard]] vfio::VariantDevice& device(std::size_t i) { return *devices_[i].device; }

 private:
  Server() = default;
  struct Slot;
  std::vector<ServedDevice> devices_;
  std::vector<std::unique_ptr<Slot>> slots_;
  vfio::UniqueFd stop_fd_;
  std::uint64_t messages_ = 0;
};

// Blocks SIGINT, SIGTERM and SIGHUP in the calling thread, so that a signal
// arriving while the server is being built waits for run(handle_signals=true)
// to handle it - and the sockets are removed - instead of killing the
// process with its sockets left behind. Call it first thing.
void block_shutdown_signals();

// Socket path of device i when serving `count` devices on `base`: the base
// itself for one device, else "<base>.<i>".
[[nodiscard]] std::string socket_path(const std::string& base, unsigned i, unsigned count);

}  // namespace nvgrace::serve
