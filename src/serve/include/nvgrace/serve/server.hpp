// A vfio-user server: one UNIX socket per device, one client at a time per
// socket, each client served by its own thread (Connection). The main loop
// only accepts, refuses second clients, reaps finished connections and stops
// on request or signal.
//
// When a client leaves - cleanly, mid-message, by a protocol violation, or
// killed - its session is torn down: every DMA mapping removed and every
// interrupt disabled (R30); a device served with reset_on_disconnect (a real
// device) is then reset before the next client is accepted. An emulated
// device keeps its state otherwise (vfio-user.rst, "Client Disconnection").
//
// Upgrade in place (R41): on SIGUSR2 (with handle_signals) the server pauses
// every connection at a message boundary, saves the devices and the
// connections into a hand-over (handover.hpp) and has the binary at its own
// path check that it can take it on; then it execs that binary, which
// adopt()s everything - listening and connected sockets, the memory, the
// device state, each session - and goes on. The client's socket never
// closes: what it sends meanwhile waits in the socket. A refusal at any
// step (a device that cannot be handed over, a client that does not reach a
// message boundary in time, a binary that cannot read the state or is not
// there) is logged, and this process keeps serving as before.
//
// Thread-safety: run() is the only loop; stop() may be called from any thread
// or a signal context (it writes an eventfd).
#pragma once

#include <sys/types.h>

#include <atomic>
#include <chrono>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <span>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "nvgrace/common/result.hpp"
#include "nvgrace/sys/fd.hpp"
#include "nvgrace/serve/connection.hpp"
#include "nvgrace/serve/store.hpp"
#include "nvgrace/sys/fd_table.hpp"
#include "nvgrace/vfio/function.hpp"

namespace nvgrace::serve {

struct ServedDevice {
  std::string socket_path;
  std::unique_ptr<vfio::Function> device;
  bool reset_on_disconnect = false;  // R30: a real device is reset between clients
};

// Who may connect: the socket file's mode and, when set, its group (so that,
// for example, libvirt's qemu user can connect through a shared group).
struct SocketAccess {
  unsigned mode = 0600;
  std::optional<gid_t> group;
};

// What a serving process tells its keeper (a SOCK_SEQPACKET pair): a
// connection's socket to hold (with it, as SCM_RIGHTS; the keeper answers
// one byte once it holds it) or to let go.
struct KeeperMessage {
  std::uint32_t op = 0;
  std::uint32_t slot = 0;
};
inline constexpr std::uint32_t kKeeperOpen = 1;
inline constexpr std::uint32_t kKeeperClose = 2;
inline constexpr std::uint32_t kKeeperReady = 3;  // the serving process took the state on
// Any other descriptor a record is about to name (a real device's DMA
// memory, R28): the keeper holds a copy at a number of its choosing in
// [kKeptFd, kConnectionFd) and answers that number (int32; -1: none free);
// a record names the keeper's number. Release: `slot` is that number.
inline constexpr std::uint32_t kKeeperHold = 4;
inline constexpr std::uint32_t kKeeperRelease = 5;
inline constexpr int kKeptFd = 512;
// A copy of `fd` at the lowest free number in [kKeptFd, kConnectionFd)
// (close-on-exec or not); EMFILE when the range is full.
[[nodiscard]] Result<int> copy_into_kept_range(int fd, bool close_on_exec);

// Where a keeper's connection sockets live: descriptor kConnectionFd + the
// socket's index, the same number in the keeper and in every serving process.
inline constexpr int kConnectionFd = 900;

// Who holds a serving process's descriptors so that its death loses none
// (R41): a keeper process (keeper.hpp) or systemd's file-descriptor store
// (fdstore.hpp). The server calls it from any thread, one call at a time.
class DescriptorKeeper {
 public:
  virtual ~DescriptorKeeper() = default;
  // A connection's socket, at kConnectionFd + slot in this process and in a
  // successor; held before anything about the connection is published.
  [[nodiscard]] virtual Result<void> hold_connection(std::size_t slot, int fd) = 0;
  virtual void drop_connection(std::size_t slot) = 0;
  // Any other descriptor a record is about to name: kept where a successor
  // finds it, at the number returned (in [kKeptFd, kConnectionFd)).
  [[nodiscard]] virtual Result<int> hold_copy(int fd) = 0;
  // The copy at `number`, named by no published record any more, let go.
  virtual void release_copy(int number) = 0;
  // Copies a predecessor made, named by the records this process took on.
  virtual void adopt_copies(std::span<const int> numbers) { (void)numbers; }
  // This process took the state on and serves.
  [[nodiscard]] virtual Result<void> ready() = 0;
  // Descriptors of its own that must stay open across an upgrade's exec.
  [[nodiscard]] virtual std::vector<int> descriptors() const = 0;
};

// What an upgrade execs: the binary at this path, with this command line
// (argv[0] first), as the process was started.
struct UpgradeTarget {
  std::string binary;
  std::vector<std::string> argv;
  // How long the successor may take to say whether it can take the state on.
  std::chrono::milliseconds check_timeout{3000};
  // How long a connection may take to reach a message boundary.
  std::chrono::milliseconds pause_timeout{2000};
};

class Server {
 public:
  // Binds every socket. A path that exists is replaced only when it is a
  // stale socket (a connect is refused); a socket that answers is in use
  // (EADDRINUSE), anything else is not ours (EEXIST). Nothing is left bound
  // when one of the sockets fails.
  [[nodiscard]] static Result<std::unique_ptr<Server>> create(std::vector<ServedDevice> devices,
                                                             SocketAccess access = {});
  // One socket's record in a hand-over: {"device": ..., "slot": ...}, and
  // the table its descriptor indexes refer to (several records may share one).
  struct SlotState {
    const nlohmann::json* record = nullptr;
    sys::FdTable* fds = nullptr;
  };
  // The successor's side of an upgrade or of a death (R41): the same
  // devices, built from the same command line, take on the records' state;
  // listeners and connections come from their descriptors. `serve_connections`
  // false: check only (no connection thread starts, no device claims its
  // state - Function::claim_state(); the caller leaves without tearing
  // anything down, as every descriptor is still the predecessor's).
  [[nodiscard]] static Result<std::unique_ptr<Server>> adopt(std::vector<ServedDevice> devices,
                                                            std::span<const SlotState> slots,
                                                            std::uint64_t messages, bool serve_connections);
  // The records of an upgrade's document ({"slots": [...]}), all over `fds`.
  [[nodiscard]] static Result<std::vector<SlotState>> slot_states(const nlohmann::json& doc, sys::FdTable& fds);
  [[nodiscard]] std::size_t size() const { return slots_.size(); }
  ~Server();

  // Where SIGUSR2 takes the server; without one, SIGUSR2 is refused (logged).
  void set_upgrade(UpgradeTarget target) { upgrade_ = std::move(target); }

  // Crash survival (keeper.hpp, fdstore.hpp): connections are journaled and
  // every socket's record kept current in `store`; an accepted connection's
  // socket moves to descriptor kConnectionFd + i and goes to `keeper` before
  // it is served. Without `keeper` (the keeper process itself), records only.
  // Call before run().
  void set_keeper(StateStore* store, DescriptorKeeper* keeper);
  // Tells the keeper this process took the state on and serves.
  [[nodiscard]] Result<void> keeper_ready() { return keeper_->ready(); }
  // Every socket's record, as things are now (the keeper, before the first
  // serving process starts).
  [[nodiscard]] Result<void> publish_all();

  // Serves until stop() or SIGINT/SIGTERM/SIGHUP (when `handle_signals`),
  // then ends every connection (tearing each down, R30), and removes the
  // socket files it created - only those: a path now holding another file
  // (same name, other inode) is left.
  Result<void> run(bool handle_signals);
  void stop();

  [[nodiscard]] std::uint64_t messages() const { return messages_.load(std::memory_order_relaxed); }
  [[nodiscard]] vfio::Function& device(std::size_t i) { return *devices_[i].device; }

 private:
  Server() = default;
  struct Slot;
  void finish(Slot& slot);
  [[nodiscard]] Result<nlohmann::json> slot_record(std::size_t index, sys::FdTable& fds, bool with_connection,
                                                   const Connection::Pending* pending) const;
  [[nodiscard]] Result<void> publish(std::size_t index, bool with_connection, const Connection::Pending* pending);
  // Keeper mode (kept_mutex_ held): the descriptor numbers of slot
  // `index`'s record, as the keeper holds them (copies made for those it
  // does not hold yet), and the keeper's copies no record will name once it
  // is published (`unnamed`: to let go of after that).
  [[nodiscard]] Result<void> keeper_numbers(std::size_t index, std::vector<int>& numbers, std::vector<int>& unnamed);
  void journal(std::size_t index);
  void start(std::size_t index);
  // One SIGUSR2: returns only when the upgrade was refused (the exec never
  // returns); every connection is serving again by then.
  void upgrade();
  void resume();
  std::vector<ServedDevice> devices_;
  std::vector<std::unique_ptr<Slot>> slots_;
  sys::UniqueFd stop_fd_;
  sys::UniqueFd reap_fd_;  // a connection thread ended
  std::atomic<std::uint64_t> messages_{0};
  std::optional<UpgradeTarget> upgrade_;
  StateStore* store_ = nullptr;
  DescriptorKeeper* keeper_ = nullptr;
  // Keeper mode: what the keeper holds of this process's descriptors -
  // inherited ones by number, with the file each was; copies it made, by
  // file - and the keeper numbers each slot's record names.
  struct FileId {
    dev_t dev = 0;
    ino_t ino = 0;
    auto operator<=>(const FileId&) const = default;
  };
  std::mutex kept_mutex_;
  std::map<int, FileId> inherited_;
  std::map<FileId, int> kept_;
  std::vector<std::set<int>> named_;
};



// Blocks SIGINT, SIGTERM, SIGHUP and SIGUSR2 in the calling thread, so that a signal
// arriving while the server is being built waits for run(handle_signals=true)
// to handle it - and the sockets are removed - instead of killing the
// process with its sockets left behind. Call it first thing.
void block_shutdown_signals();

// Socket path of device i when serving `count` devices on `base`: the base
// itself for one device, else "<base>.<i>".
[[nodiscard]] std::string socket_path(const std::string& base, unsigned i, unsigned count);

}  // namespace nvgrace::serve
