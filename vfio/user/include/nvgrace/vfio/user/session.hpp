// The vfio-user protocol (QEMU docs/interop/vfio-user.rst), server side: one
// client's session with one device (any vfio::Function: the variant over an
// emulated or a real function, or a function as it is).
//
// handle() turns one complete message (header + payload + the fds that came
// with it) into a reply written in place into a ReplyBuffer, nothing (a
// posted write), or "close the connection" (a protocol violation). It never
// trusts the message: sizes, counts, region and IRQ indexes, offsets, flags
// and argsz are checked, and a malformed message gets an error reply with a
// non-zero errno. Nothing is allocated per message in steady state; the text
// of what happened is built only when detail is asked for, or for errors that
// close the connection.
//
// The session keeps the client's DMA mappings (R28) and the interrupts it
// set (R29); teardown() removes all of them - what a server does when the
// client leaves, before the device is reset (R30).
//
// Thread-safety: a Session belongs to one connection (one thread); the
// device's own rules apply. Never opens a socket: sockets are src/serve's.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "nvgrace/sys/fd.hpp"
#include "nvgrace/vfio/user/protocol.hpp"
#include "nvgrace/vfio/user/reply.hpp"
#include "nvgrace/vfio/function.hpp"

namespace nvgrace::vfio::user {

enum class Outcome {
  reply,  // send the ReplyBuffer
  none,   // the client asked for no reply (No_reply)
  close,  // protocol violation: drop the connection (log() says why)
};

// A DMA mapping the client made, as the session records it.
struct DmaRegion {
  std::uint64_t address = 0, size = 0, offset = 0;
  std::uint32_t flags = 0;
  bool had_fd = false;
};

// The interrupts of one IRQ index the client has set up (R29).
struct IrqSetting {
  std::uint32_t index = 0;
  std::uint32_t triggers = 0;  // eventfds currently assigned to trigger
  std::uint32_t calls = 0;     // SET_IRQS messages applied to this index
};

// What teardown() removed.
struct Teardown {
  std::size_t dma_unmapped = 0;
  std::size_t irq_indexes_disabled = 0;
  std::vector<std::string> errors;  // device refusals on the way (logged by the server)
};

class Session {
 public:
  explicit Session(Function& device) : device_(device) {}
  ~Session() { (void)teardown(); }
  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;

  // `message`: exactly header.msg_size bytes. `fds`: received with it; the
  // session moves out the ones it keeps, the caller closes the rest.
  [[nodiscard]] Outcome handle(std::span<const std::uint8_t> message, std::span<sys::UniqueFd> fds, ReplyBuffer& out);

  // R30: every DMA mapping removed, every interrupt disabled. Idempotent.
  Teardown teardown();

  // R41: what the client negotiated, its DMA table and its interrupt
  // settings, for a successor server process; restore() takes them on in a
  // session over the same function (whose own state travels separately).
  [[nodiscard]] nlohmann::json save() const;
  [[nodiscard]] Result<void> restore(const nlohmann::json& state);

  // At most this many DMA mappings (announced as max_dma_maps), below the
  // function's own limit: a server that republishes the table with every
  // change keeps it small (R41, the keeper).
  void cap_dma_maps(std::uint32_t n) { dma_cap_ = n; }

  // Build the text of every message, not only of connection-closing ones.
  void set_detail(bool on) { detail_ = on; }
  // What the last handle() did (when detail is on, or it returned close).
  [[nodiscard]] const std::string& log() const { return log_; }

  [[nodiscard]] bool negotiated() const { return negotiated_; }
  [[nodiscard]] const std::vector<DmaRegion>& dma() const { return dma_; }
  [[nodiscard]] const std::vector<IrqSetting>& irqs() const { return irqs_; }
  // The client's VERSION capabilities (spec defaults until it sends them).
  [[nodiscard]] std::uint32_t client_max_msg_fds() const { return client_max_fds_; }
  [[nodiscard]] std::uint32_t client_max_data_xfer_size() const { return client_max_xfer_; }

 private:
  template <class... Args>
  void note(fmt::format_string<Args...> f, Args&&... args);
  template <class... Args>
  Outcome refuse(const Header& h, ReplyBuffer& out, int err, fmt::format_string<Args...> f, Args&&... args);
  template <class... Args>
  Outcome violation(fmt::format_string<Args...> f, Args&&... args);
  Outcome done(const Header& h, ReplyBuffer& out);

  Outcome version(const Header& h, std::span<const std::uint8_t> p, ReplyBuffer& out);
  Outcome dma_map(const Header& h, std::span<const std::uint8_t> p, std::span<sys::UniqueFd> fds, ReplyBuffer& out);
  Outcome dma_unmap(const Header& h, std::span<const std::uint8_t> p, ReplyBuffer& out);
  Outcome device_info(const Header& h, std::span<const std::uint8_t> p, ReplyBuffer& out);
  Outcome region_info(const Header& h, std::span<const std::uint8_t> p, ReplyBuffer& out);
  Outcome irq_info(const Header& h, std::span<const std::uint8_t> p, ReplyBuffer& out);
  Outcome set_irqs(const Header& h, std::span<const std::uint8_t> p, std::span<sys::UniqueFd> fds, ReplyBuffer& out);
  Outcome region_access(const Header& h, std::span<const std::uint8_t> p, ReplyBuffer& out);
  Outcome device_reset(const Header& h, ReplyBuffer& out);

  Function& device_;
  bool negotiated_ = false;
  bool detail_ = false;
  std::string log_;
  std::uint32_t client_max_fds_ = kDefaultClientMaxMsgFds;
  std::uint32_t client_max_xfer_ = kDefaultClientMaxDataXferSize;
  std::vector<DmaRegion> dma_;
  std::uint32_t dma_cap_ = UINT32_MAX;
  std::vector<IrqSetting> irqs_;
};

}  // namespace nvgrace::vfio::user
