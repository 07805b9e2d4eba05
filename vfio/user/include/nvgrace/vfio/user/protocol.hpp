// The vfio-user wire format (QEMU docs/interop/vfio-user.rst): the message
// header, command numbers, flags and the limits this server announces.
// Hand-written: Debian 12 packages no vfio-user library.
#pragma once

#include <cstdint>
#include <string_view>

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

// Section "Header": 16 bytes, host endianness; msg_size includes the header.
struct Header {
  std::uint16_t msg_id;
  std::uint16_t command;
  std::uint32_t msg_size;
  std::uint32_t flags;
  std::uint32_t error;
};
static_assert(sizeof(Header) == 16);

inline constexpr std::uint32_t kTypeCommand = 0x0;
inline constexpr std::uint32_t kTypeReply = 0x1;
inline constexpr std::uint32_t kTypeMask = 0xF;
inline constexpr std::uint32_t kNoReply = 1u << 4;
inline constexpr std::uint32_t kError = 1u << 5;

// The protocol version this server implements (section "VFIO_USER_VERSION").
inline constexpr std::uint16_t kMajor = 0;
inline constexpr std::uint16_t kMinor = 0;

// What the server announces in its VERSION reply, and accepts.
inline constexpr std::uint32_t kMaxMsgFds = 8;
inline constexpr std::uint32_t kMaxDataXferSize = 1u << 20;
// The largest message accepted: a full data transfer plus its headers.
inline constexpr std::uint32_t kMaxMessageSize = kMaxDataXferSize + 4096;
// What a client may receive when its VERSION says nothing (spec defaults).
inline constexpr std::uint32_t kDefaultClientMaxMsgFds = 1;
inline constexpr std::uint32_t kDefaultClientMaxDataXferSize = 1u << 20;

// Payload layouts (offsets after the header), from the specification.
struct RegionAccess {  // REGION_READ / REGION_WRITE, request and reply
  std::uint64_t offset;
  std::uint32_t region;
  std::uint32_t count;
};
static_assert(sizeof(RegionAccess) == 16);

struct DmaMapRequest {
  std::uint32_t argsz, flags;
  std::uint64_t offset, address, size;
};
static_assert(sizeof(DmaMapRequest) == 32);

struct DmaUnmapRequest {
  std::uint32_t argsz, flags;
  std::uint64_t address, size;
};
static_assert(sizeof(DmaUnmapRequest) == 24);

struct SetIrqsRequest {
  std::uint32_t argsz, flags, index, start, count;
};
static_assert(sizeof(SetIrqsRequest) == 20);

[[nodiscard]] std::string_view command_name(std::uint16_t command);

}  // namespace nvgrace::vfio::user
