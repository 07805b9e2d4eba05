#include "nvgrace/vfio/vfio_user.hpp"

#include <linux/vfio.h>

#include <algorithm>
#include <cstring>

#include <fmt/format.h>

#include "nvgrace/vfio/region_info.hpp"
#include "wire.hpp"

namespace nvgrace::vfio::user {
namespace {

using wire::append;
using wire::load;

// Payload layouts (offsets after the header), from the specification.
struct RwHead {
  std::uint64_t offset;
  std::uint32_t region;
  std::uint32_t count;
};
struct DmaMapPayload {
  std::uint32_t argsz, flags;
  std::uint64_t offset, address, size;
};
struct DmaUnmapPayload {
  std::uint32_t argsz, flags;
  std::uint64_t address, size;
};
struct ArgszIndex {
  std::uint32_t argsz, flags, index, extra;
};
struct IrqSetPayload {
  std::uint32_t argsz, flags, index, start, count;
};

}  // namespace

std::string_view command_name(std::uint16_t c) {
  switch (c) {
    case kVersion: return "VERSION";
    case kDmaMap: return "DMA_MAP";
    case kDmaUnmap: return "DMA_UNMAP";
    case kDeviceGetInfo: return "DEVICE_GET_INFO";
    case kDeviceGetRegionInfo: return "DEVICE_GET_REGION_INFO";
    case kDeviceGetRegionIoFds: return "DEVICE_GET_REGION_IO_FDS";
    case kDeviceGetIrqInfo: return "DEVICE_GET_IRQ_INFO";
    case kDeviceSetIrqs: return "DEVICE_SET_IRQS";
    case kRegionRead: return "REGION_READ";
    case kRegionWrite: return "REGION_WRITE";
    case kDmaRead: return "DMA_READ";
    case kDmaWrite: return "DMA_WRITE";
    case kDeviceReset: return "DEVICE_RESET";
    case kRegionWriteMulti: return "REGION_WRITE_MULTI";
    case kDeviceFeature: return "DEVICE_FEATURE";
    default: return "unknown";
  }
}

Reply Session::error(const Header& h, int err, std::string why) const {
  Reply r;
  r.log = fmt::format("{} (id {}): error {}: {}", command_name(h.command), h.msg_id, err, why);
  if (h.flags & kNoReply) return r;
  Header rh{h.msg_id, h.command, sizeof(Header), kTypeReply | kError, static_cast<std::uint32_t>(err)};
  append(r.bytes, rh);
  return r;
}

Reply Session::ok(const Header& h, std::span<const std::uint8_t> payload, std::string log) const {
  Reply r;
  r.log = std::move(log);
  if (h.flags & kNoReply) return r;
  Header rh{h.msg_id, h.command, static_cast<std::uint32_t>(sizeof(Header) + payload.size()), kTypeReply, 0};
  append(r.bytes, rh);
  r.bytes.insert(r.bytes.end(), payload.begin(), payload.end());
  return r;
}

Reply Session::handle(std::span<const std::uint8_t> msg, std::vector<UniqueFd> fds) {
  if (msg.size() < sizeof(Header)) return Reply{{}, {}, true, fmt::format("short message of {} bytes", msg.size())};
  const auto h = load<Header>(msg, 0);
  if (h.msg_size != msg.size())
    return Reply{{}, {}, true, fmt::format("message size field {} does not match the {} bytes received", h.msg_size, msg.size())};
  if ((h.flags & kTypeMask) != kTypeCommand) return error(h, EINVAL, "the server takes commands, not replies");
  if (fds.size() > kMaxMsgFds) return error(h, EINVAL, fmt::format("{} fds, at most {}", fds.size(), kMaxMsgFds));
  const auto p = msg.subspan(sizeof(Header));
  if (!negotiated_ && h.command != kVersion) return error(h, EINVAL, "VERSION must come first");

  switch (h.command) {
    case kVersion: {
      if (p.size() < 4) return error(h, EINVAL, "VERSION payload shorter than 4 bytes");
      const auto major = load<std::uint16_t>(p, 0);
      const auto minor = load<std::uint16_t>(p, 2);
      if (major != 0) return error(h, ENOTSUP, fmt::format("protocol major {} proposed, this server speaks 0", major));
      negotiated_ = true;
      const std::string caps = fmt::format(R"({{"capabilities":{{"max_msg_fds":{},"max_data_xfer_size":{}}}}})",
                                           kMaxMsgFds, kMaxDataXferSize);
      std::vector<std::uint8_t> payload;
      append(payload, std::uint16_t{0});
      append(payload, std::uint16_t{0});  // minor 0: at most what was proposed
      payload.insert(payload.end(), caps.begin(), caps.end());
      payload.push_back(0);
      return ok(h, payload, fmt::format("VERSION: client proposed {}.{}, agreed 0.0", major, minor));
    }
    case kDmaMap: {
      if (p.size() < sizeof(DmaMapPayload)) return error(h, EINVAL, "DMA_MAP payload too short");
      const auto m = load<DmaMapPayload>(p, 0);
      for (const auto& d : dma_)
        if (m.address < d.address + d.size && d.address < m.address + m.size)
          return error(h, EEXIST, fmt::format("DMA region {:#x}+{:#x} overlaps a mapped one", m.address, m.size));
      dma_.push_back({m.address, m.size, m.offset, m.flags, !fds.empty()});
      return ok(h, {}, fmt::format("DMA_MAP {:#x}+{:#x}{} recorded (the device does no DMA)", m.address, m.size,
                                   fds.empty() ? "" : " with an fd"));
    }
    case kDmaUnmap: {
      if (p.size() < sizeof(DmaUnmapPayload)) return error(h, EINVAL, "DMA_UNMAP payload too short");
      const auto u = load<DmaUnmapPayload>(p, 0);
      const auto it = std::find_if(dma_.begin(), dma_.end(),
                                   [&](const DmaRegion& d) { return d.address == u.address && d.size == u.size; });
      if (it == dma_.end()) return error(h, EINVAL, fmt::format("no DMA region {:#x}+{:#x}", u.address, u.size));
      dma_.erase(it);
      return ok(h, p.first(sizeof(DmaUnmapPayload)), fmt::format("DMA_UNMAP {:#x}+{:#x}", u.address, u.size));
    }
    case kDeviceGetInfo: {
      const auto info = device_.info();
      vfio_device_info out{};
      out.argsz = sizeof out;
      out.flags = info.flags;
      out.num_regions = info.num_regions;
      out.num_irqs = info.num_irqs;
      return ok(h, std::span(reinterpret_cast<const std::uint8_t*>(&out), 16), "DEVICE_GET_INFO");
    }
    case kDeviceGetRegionInfo: {
      if (p.size() < sizeof(ArgszIndex)) return error(h, EINVAL, "GET_REGION_INFO payload too short");
      const auto q = load<ArgszIndex>(p, 0);
      auto region = device_.region(q.index);
      if (!region) return error(h, EINVAL, region.error().message);
      // The region's mmap offset is the fd offset of the memory behind it.
      std::optional<std::uint64_t> fd_offset;
      int fd = -1;
      if (region->flags & VFIO_REGION_INFO_FLAG_MMAP) {
        auto area = device_.mmap(q.index, 0, region->sparse.at(0).size);
        if (!area) return error(h, area.error().err ? area.error().err : EIO, area.error().message);
        fd = area->fd;
        fd_offset = area->fd_offset;
      }
      auto bytes = encode_region_info(*region, q.argsz, fd_offset, ShortReply::caps_flag_clear);
      // The fd goes with the full reply only.
      const bool complete = bytes.size() >= region_info_size(*region);
      Reply r = ok(h, bytes, fmt::format("GET_REGION_INFO {} (size {:#x}{})", q.index, region->size,
                                         !complete ? ", argsz too small for the capabilities" : fd >= 0 ? ", mmap fd sent" : ""));
      if (fd >= 0 && complete && !r.bytes.empty()) r.fds.push_back(fd);
      return r;
    }
    case kDeviceGetIrqInfo: {
      if (p.size() < sizeof(ArgszIndex)) return error(h, EINVAL, "GET_IRQ_INFO payload too short");
      const auto q = load<ArgszIndex>(p, 0);
      auto irq = device_.irq(q.index);
      if (!irq) return error(h, EINVAL, irq.error().message);
      vfio_irq_info out{};
      out.argsz = sizeof out;
      out.flags = irq->flags;
      out.index = irq->index;
      out.count = irq->count;
      return ok(h, std::span(reinterpret_cast<const std::uint8_t*>(&out), sizeof out),
                fmt::format("GET_IRQ_INFO {}", q.index));
    }
    case kDeviceSetIrqs: {
      if (p.size() < sizeof(IrqSetPayload)) return error(h, EINVAL, "SET_IRQS payload too short");
      const auto s = load<IrqSetPayload>(p, 0);
      auto irq = device_.irq(s.index);
      if (!irq) return error(h, EINVAL, irq.error().message);
      if (s.count > irq->count || s.start > irq->count - s.count)
        return error(h, EINVAL, fmt::format("IRQs {}+{} of index {} (count {})", s.start, s.count, s.index, irq->count));
      irqs_.push_back({s.index, s.start, s.count, s.flags, fds.size()});
      return ok(h, {}, fmt::format("SET_IRQS index {} start {} count {} flags {:#x}, {} fd(s) recorded", s.index, s.start,
                                   s.count, s.flags, fds.size()));
    }
    case kRegionRead:
    case kRegionWrite: {
      if (p.size() < sizeof(RwHead)) return error(h, EINVAL, "region access payload too short");
      const auto rw = load<RwHead>(p, 0);
      if (rw.count > kMaxDataXferSize) return error(h, EINVAL, fmt::format("count {} exceeds {}", rw.count, kMaxDataXferSize));
      std::vector<std::uint8_t> out;
      if (h.command == kRegionWrite) {
        if (p.size() - sizeof(RwHead) != rw.count)
          return error(h, EINVAL, fmt::format("REGION_WRITE carries {} bytes, count says {}", p.size() - sizeof(RwHead), rw.count));
        auto n = device_.write(rw.region, rw.offset, p.subspan(sizeof(RwHead), rw.count));
        if (!n) return error(h, n.error().err ? n.error().err : EIO, n.error().message);
        RwHead reply{rw.offset, rw.region, static_cast<std::uint32_t>(*n)};
        append(out, reply);
        return ok(h, out, fmt::format("REGION_WRITE {}:{:#x} {} bytes", rw.region, rw.offset, *n));
      }
      std::vector<std::uint8_t> data(rw.count);
      auto n = device_.read(rw.region, rw.offset, data);
      if (!n) return error(h, n.error().err ? n.error().err : EIO, n.error().message);
      RwHead reply{rw.offset, rw.region, static_cast<std::uint32_t>(*n)};
      append(out, reply);
      out.insert(out.end(), data.begin(), data.begin() + static_cast<std::ptrdiff_t>(*n));
      return ok(h, out, fmt::format("REGION_READ {}:{:#x} {} bytes", rw.region, rw.offset, *n));
    }
    case kDeviceReset:
      device_.reset();
      return ok(h, {}, "DEVICE_RESET");
    default:
      return error(h, ENOSYS, fmt::format("command {} ({}) not supported", h.command, command_name(h.command)));
  }
}

}  // namespace nvgrace::vfio::user
