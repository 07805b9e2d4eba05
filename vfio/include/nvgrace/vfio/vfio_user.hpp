// The vfio-user protocol (QEMU docs/interop/vfio-user.rst), server side, for
// one VariantDevice. Hand-written: Debian 12 packages no vfio-user library.
//
// handle() turns one complete message (header + payload + the fds that came
// with it) into the reply to send (bytes + fds), or into "close the
// connection". It never trusts the message: sizes, counts, region indexes and
// offsets are all checked, and a malformed message gets an error reply.
//
// Thread-safety: a Session belongs to one connection; the device's own
// concurrency rules apply (device.hpp).
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "nvgrace/vfio/device.hpp"
#include "nvgrace/vfio/fd.hpp"

namespace nvgrace::vfio::user {

// Commands (section "Commands").
enum Command : std::uint16_t {
  kVersion = 1,
  kDmaMap = 2,
  kDmaUnmap = 3,
  kDeviceGetInfo = 4,
  kDeviceGetRegionInfo = 5,
  kDeviceGetRegionIoFds = 6,
  kDeviceGetIrqInfo = 7,
  kDeviceSetIrqs = 8,
  kRegionRead = 9,
  kRegionWrite = 10,
  kDmaRead = 11,
  kDmaWrite = 12,
  kDeviceReset = 13,
  kRegionWriteMulti = 15,
  kDeviceFeature = 16,
};

struct Header {
  std::uint16_t msg_id;
  std::uint16_t command;
  std::uint32_t msg_size;  // header included
  std::uint32_t flags;
  std::uint32_t error;
};
static_assert(sizeof(Header) == 16);

inline constexpr std::uint32_t kTypeCommand = 0x0;
inline constexpr std::uint32_t kTypeReply = 0x1;
inline constexpr std::uint32_t kTypeMask = 0xF;
inline constexpr std::uint32_t kNoReply = 1u << 4;
inline constexpr std::uint32_t kError = 1u << 5;

// What the server announces in its VERSION reply.
inline constexpr std::uint32_t kMaxMsgFds = 8;
inline constexpr std::uint32_t kMaxDataXferSize = 1u << 20;
// The largest message accepted: a full data transfer plus its headers.
inline constexpr std::uint32_t kMaxMessageSize = kMaxDataXferSize + 4096;

struct Reply {
  std::vector<std::uint8_t> bytes;  // empty: no reply (posted write)
  std::vector<int> fds;             // borrowed: owned by the device or session
  bool close = false;               // protocol violation: drop the connection
  std::string log;                  // what happened, for the server's log
};

// Records of what the client set up; the device does no DMA and raises no
// interrupts yet, so they are kept for inspection only.
struct DmaRegion {
  std::uint64_t address = 0, size = 0, offset = 0;
  std::uint32_t flags = 0;
  bool had_fd = false;
};
struct IrqSetting {
  std::uint32_t index = 0, start = 0, count = 0, flags = 0;
  std::size_t fds = 0;
};

class Session {
 public:
  explicit Session(VariantDevice& device) : device_(device) {}

  // `message`: exactly header.msg_size bytes. `fds`: received with it; the
  // session takes ownership and closes the ones it does not keep.
  [[nodiscard]] Reply handle(std::span<const std::uint8_t> message, std::vector<UniqueFd> fds);

  [[nodiscard]] bool negotiated() const { return negotiated_; }
  [[nodiscard]] const std::vector<DmaRegion>& dma() const { return dma_; }
  [[nodiscard]] const std::vector<IrqSetting>& irqs() const { return irqs_; }

 private:
  Reply error(const Header& h, int err, std::string why) const;
  Reply ok(const Header& h, std::span<const std::uint8_t> payload, std::string log) const;

  VariantDevice& device_;
  bool negotiated_ = false;
  std::vector<DmaRegion> dma_;
  std::vector<IrqSetting> irqs_;
};

[[nodiscard]] std::string_view command_name(std::uint16_t command);

}  // namespace nvgrace::vfio::user
