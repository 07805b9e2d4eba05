#include "nvgrace/vfio/user/session.hpp"

#include <linux/vfio.h>

#include <algorithm>
#include <bit>
#include <cstring>
#include <iterator>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "nvgrace/common/checked.hpp"
#include "nvgrace/vfio/wire.hpp"
#include "nvgrace/vfio/state.hpp"

namespace nvgrace::vfio::user {
namespace {

using wire::load;

// Offsets of struct vfio_region_info fields patched in a truncated reply.
constexpr std::size_t kRegionInfoFlags = offsetof(vfio_region_info, flags);
constexpr std::size_t kRegionInfoCapOffset = offsetof(vfio_region_info, cap_offset);
// struct vfio_device_info as vfio-user sends it: argsz, flags, num_regions,
// num_irqs ("16 bytes today"); the kernel's struct has grown cap_offset since.
constexpr std::uint32_t kDeviceInfoSize = 16;
static_assert(offsetof(vfio_device_info, num_irqs) + 4 == kDeviceInfoSize);

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

template <class... Args>
void Session::note(fmt::format_string<Args...> f, Args&&... args) {
  if (detail_) fmt::format_to(std::back_inserter(log_), f, std::forward<Args>(args)...);
}

template <class... Args>
Outcome Session::refuse(const Header& h, ReplyBuffer& out, int err, fmt::format_string<Args...> f, Args&&... args) {
  if (detail_) {
    fmt::format_to(std::back_inserter(log_), "{} (id {}): error {}: ", command_name(h.command), h.msg_id, err);
    fmt::format_to(std::back_inserter(log_), f, std::forward<Args>(args)...);
  }
  if (h.flags & kNoReply) return Outcome::none;
  out.fail(h, err);
  return Outcome::reply;
}

template <class... Args>
Outcome Session::violation(fmt::format_string<Args...> f, Args&&... args) {
  log_.clear();
  fmt::format_to(std::back_inserter(log_), f, std::forward<Args>(args)...);
  return Outcome::close;
}

Outcome Session::done(const Header& h, ReplyBuffer& out) {
  if (h.flags & kNoReply) return Outcome::none;
  out.finish();
  return Outcome::reply;
}

Outcome Session::handle(std::span<const std::uint8_t> msg, std::span<sys::UniqueFd> fds, ReplyBuffer& out) {
  log_.clear();
  if (msg.size() < sizeof(Header)) return violation("short message of {} bytes", msg.size());
  const auto h = load<Header>(msg, 0);
  if (h.msg_size != msg.size())
    return violation("message size field {} does not match the {} bytes received", h.msg_size, msg.size());
  if ((h.flags & kTypeMask) != kTypeCommand) return refuse(h, out, EINVAL, "the server takes commands, not replies");
  if (fds.size() > kMaxMsgFds) return refuse(h, out, EINVAL, "{} fds, at most {}", fds.size(), kMaxMsgFds);
  const auto p = msg.subspan(sizeof(Header));
  if (!negotiated_ && h.command != kVersion) return refuse(h, out, EINVAL, "VERSION must come first");
  switch (h.command) {
    case kVersion: return version(h, p, out);
    case kDmaMap: return dma_map(h, p, fds, out);
    case kDmaUnmap: return dma_unmap(h, p, out);
    case kDeviceGetInfo: return device_info(h, p, out);
    case kDeviceGetRegionInfo: return region_info(h, p, out);
    case kDeviceGetIrqInfo: return irq_info(h, p, out);
    case kDeviceSetIrqs: return set_irqs(h, p, fds, out);
    case kRegionRead:
    case kRegionWrite: return region_access(h, p, out);
    case kDeviceReset: return device_reset(h, out);
    case kDmaRead:
    case kDmaWrite:
      return refuse(h, out, EINVAL, "{} goes from the server to the client", command_name(h.command));
    default:
      return refuse(h, out, ENOSYS, "command {} ({}) not supported", h.command, command_name(h.command));
  }
}

// Section "VFIO_USER_VERSION": major must match; the reply's minor is the
// highest this server implements that does not exceed the client's; the
// capabilities JSON (NUL-terminated) is parsed and what it says about the
// client is honoured for everything the server sends.
Outcome Session::version(const Header& h, std::span<const std::uint8_t> p, ReplyBuffer& out) {
  if (negotiated_) return refuse(h, out, EINVAL, "VERSION was already negotiated");
  if (p.size() < 4) return refuse(h, out, EINVAL, "VERSION payload of {} bytes, at least 4", p.size());
  const auto major = load<std::uint16_t>(p, 0);
  const auto minor = load<std::uint16_t>(p, 2);
  if (major != kMajor)
    return refuse(h, out, ENOTSUP, "protocol major {} proposed, this server speaks {}", major, kMajor);
  std::uint32_t max_fds = kDefaultClientMaxMsgFds;
  std::uint32_t max_xfer = kDefaultClientMaxDataXferSize;
  const auto json = p.subspan(4);
  if (!json.empty()) {
    if (json.back() != 0) return refuse(h, out, EINVAL, "the capabilities JSON is not NUL-terminated");
    const auto text = json.first(json.size() - 1);
    const auto j = nlohmann::json::parse(text.begin(), text.end(), nullptr, false);
    if (j.is_discarded() || !j.is_object()) return refuse(h, out, EINVAL, "the capabilities are not a JSON object");
    if (auto c = j.find("capabilities"); c != j.end()) {
      if (!c->is_object()) return refuse(h, out, EINVAL, "\"capabilities\" is not a JSON object");
      auto uint_cap = [&](const char* key, std::uint32_t& to) {
        auto v = c->find(key);
        if (v == c->end()) return true;
        if (!v->is_number_unsigned() || v->get<std::uint64_t>() > 0xFFFFFFFFu) return false;
        to = v->get<std::uint32_t>();
        return true;
      };
      if (!uint_cap("max_msg_fds", max_fds)) return refuse(h, out, EINVAL, "max_msg_fds is not an unsigned number");
      if (!uint_cap("max_data_xfer_size", max_xfer) || max_xfer == 0)
        return refuse(h, out, EINVAL, "max_data_xfer_size is not a positive number");
    }
  }
  client_max_fds_ = max_fds;
  client_max_xfer_ = max_xfer;
  negotiated_ = true;
  const auto& dma = device_.dma_limits();
  const std::string caps = fmt::format(
      R"({{"capabilities":{{"max_msg_fds":{},"max_data_xfer_size":{},"pgsizes":{},"max_dma_maps":{}}}}})", kMaxMsgFds,
      kMaxDataXferSize, dma.pgsizes, std::min(dma.max_maps, dma_cap_));
  out.begin(h);
  out.append(kMajor);
  out.append(std::min(minor, kMinor));
  out.append_bytes(std::span(reinterpret_cast<const std::uint8_t*>(caps.data()), caps.size() + 1));  // with its NUL
  note("VERSION: client proposed {}.{} (max_msg_fds {}, max_data_xfer_size {}), agreed {}.{}", major, minor, max_fds,
       max_xfer, kMajor, std::min(minor, kMinor));
  return done(h, out);
}

// R28: DMA_MAP brings the client's memory into the device's address space.
Outcome Session::dma_map(const Header& h, std::span<const std::uint8_t> p, std::span<sys::UniqueFd> fds, ReplyBuffer& out) {
  if (p.size() < sizeof(DmaMapRequest)) return refuse(h, out, EINVAL, "DMA_MAP payload of {} bytes, need 32", p.size());
  const auto m = load<DmaMapRequest>(p, 0);
  if (m.argsz < sizeof m) return refuse(h, out, EINVAL, "DMA_MAP argsz {} smaller than the request", m.argsz);
  if (m.flags & ~static_cast<std::uint32_t>(VFIO_DMA_MAP_FLAG_READ | VFIO_DMA_MAP_FLAG_WRITE))
    return refuse(h, out, EINVAL, "DMA_MAP flags {:#x}: only READ and WRITE are defined", m.flags);
  if (fds.size() > 1) return refuse(h, out, EINVAL, "DMA_MAP with {} fds, at most one", fds.size());
  const auto& lim = device_.dma_limits();
  const auto end = checked_add(m.address, m.size);
  if (m.size == 0 || !end) return refuse(h, out, EINVAL, "DMA_MAP {:#x}+{:#x} is empty or wraps", m.address, m.size);
  const std::uint64_t page = lim.pgsizes ? std::uint64_t{1} << std::countr_zero(lim.pgsizes) : 1;
  if (m.address % page || m.size % page || (!fds.empty() && m.offset % page))
    return refuse(h, out, EINVAL, "DMA_MAP {:#x}+{:#x} (fd offset {:#x}) is not aligned to the {:#x}-byte IOMMU page",
                  m.address, m.size, m.offset, page);
  if (fds.empty() && lim.needs_fd)
    return refuse(h, out, EINVAL, "DMA_MAP {:#x}+{:#x} without an fd: the IOMMU maps only memory the server can map (R28)",
                  m.address, m.size);
  if (!lim.iova_ranges.empty() &&
      std::none_of(lim.iova_ranges.begin(), lim.iova_ranges.end(),
                   [&](const IovaRange& r) { return m.address >= r.start.value() && *end - 1 <= r.last.value(); }))
    return refuse(h, out, EINVAL, "DMA_MAP {:#x}+{:#x} lies outside the IOMMU's usable IOVA ranges (R28)", m.address,
                  m.size);
  for (const auto& d : dma_)
    if (m.address < d.address + d.size && d.address < *end)
      return refuse(h, out, EEXIST, "DMA_MAP {:#x}+{:#x} overlaps the mapping {:#x}+{:#x}", m.address, m.size,
                    d.address, d.size);
  if (dma_.size() >= std::min(lim.max_maps, dma_cap_))
    return refuse(h, out, ENOSPC, "DMA_MAP: {} mappings exist, the announced max_dma_maps", dma_.size());
  const DmaMapping mapping{Iova{m.address}, m.size, fds.empty() ? -1 : fds[0].get(), m.offset,
                           (m.flags & VFIO_DMA_MAP_FLAG_READ) != 0, (m.flags & VFIO_DMA_MAP_FLAG_WRITE) != 0};
  if (auto ok = device_.dma_map(mapping); !ok)
    return refuse(h, out, ok.error().err, "DMA_MAP {:#x}+{:#x}: {}", m.address, m.size, ok.error().message);
  dma_.push_back({m.address, m.size, m.offset, m.flags, !fds.empty()});
  out.begin(h);
  note("DMA_MAP {:#x}+{:#x}{}", m.address, m.size, fds.empty() ? "" : " with an fd");
  return done(h, out);
}

// DMA_UNMAP removes exactly what was mapped (R28); the reply echoes the
// request. VFIO_DMA_UNMAP_FLAG_ALL with address and size 0 removes every
// mapping (libvfio-user's extension, which QEMU sends for a 2^64 section).
Outcome Session::dma_unmap(const Header& h, std::span<const std::uint8_t> p, ReplyBuffer& out) {
  if (p.size() < sizeof(DmaUnmapRequest))
    return refuse(h, out, EINVAL, "DMA_UNMAP payload of {} bytes, need 24", p.size());
  const auto u = load<DmaUnmapRequest>(p, 0);
  if (u.argsz < sizeof u) return refuse(h, out, EINVAL, "DMA_UNMAP argsz {} cannot hold the 24-byte reply", u.argsz);
  if (u.flags == VFIO_DMA_UNMAP_FLAG_ALL) {
    if (u.address != 0 || u.size != 0)
      return refuse(h, out, EINVAL, "DMA_UNMAP of all mappings needs address and size 0");
    const std::size_t n = dma_.size();
    for (const auto& d : dma_) (void)device_.dma_unmap(Iova{d.address}, d.size);
    dma_.clear();
    note("DMA_UNMAP all: {} mapping(s)", n);
  } else {
    if (u.flags != 0) return refuse(h, out, EINVAL, "DMA_UNMAP flags {:#x} not supported", u.flags);
    const auto it = std::find_if(dma_.begin(), dma_.end(),
                                 [&](const DmaRegion& d) { return d.address == u.address && d.size == u.size; });
    if (it == dma_.end())
      return refuse(h, out, ENOENT, "no DMA mapping is exactly {:#x}+{:#x}", u.address, u.size);
    if (auto ok = device_.dma_unmap(Iova{u.address}, u.size); !ok)
      return refuse(h, out, ok.error().err, "DMA_UNMAP {:#x}+{:#x}: {}", u.address, u.size, ok.error().message);
    dma_.erase(it);
    note("DMA_UNMAP {:#x}+{:#x}", u.address, u.size);
  }
  out.begin(h);
  out.append_bytes(p.first(sizeof u));
  return done(h, out);
}

// argsz is the largest reply the client takes: smaller than the fixed reply
// is refused, never answered with more than it allows.
Outcome Session::device_info(const Header& h, std::span<const std::uint8_t> p, ReplyBuffer& out) {
  if (p.size() < kDeviceInfoSize)
    return refuse(h, out, EINVAL, "DEVICE_GET_INFO payload of {} bytes, need {}", p.size(), kDeviceInfoSize);
  const auto argsz = load<std::uint32_t>(p, 0);
  if (argsz < kDeviceInfoSize)
    return refuse(h, out, EINVAL, "DEVICE_GET_INFO argsz {} is smaller than the {}-byte reply", argsz,
                  kDeviceInfoSize);
  const auto info = device_.info();
  vfio_device_info r{};
  r.argsz = kDeviceInfoSize;
  r.flags = info.flags;
  r.num_regions = info.num_regions;
  r.num_irqs = info.num_irqs;
  out.begin(h);
  out.append_bytes(std::span(reinterpret_cast<const std::uint8_t*>(&r), kDeviceInfoSize));
  note("DEVICE_GET_INFO");
  return done(h, out);
}

// The region's info and capability chain when they fit argsz, with the fd to
// map it through (at most one, and only to a client that takes fds). When the
// capabilities do not fit: the bare struct, argsz saying what is needed, CAPS
// clear and no fd - QEMU's client rejects CAPS with cap_offset 0, the
// kernel's convention, so the flag stays clear here.
Outcome Session::region_info(const Header& h, std::span<const std::uint8_t> p, ReplyBuffer& out) {
  if (p.size() < sizeof(vfio_region_info))
    return refuse(h, out, EINVAL, "GET_REGION_INFO payload of {} bytes, need {}", p.size(), sizeof(vfio_region_info));
  const auto argsz = load<std::uint32_t>(p, 0);
  const auto index = load<std::uint32_t>(p, offsetof(vfio_region_info, index));
  if (argsz < sizeof(vfio_region_info))
    return refuse(h, out, EINVAL, "GET_REGION_INFO argsz {} is smaller than the {}-byte struct", argsz,
                  sizeof(vfio_region_info));
  auto view = device_.region_info(RegionIndex{index});
  if (!view) return refuse(h, out, view.error().err ? view.error().err : EINVAL, "{}", view.error().message);
  const auto bytes = view->bytes;
  const bool fd_allowed = client_max_fds_ >= 1;
  out.begin(h);
  if (bytes.size() <= argsz && (view->fd < 0 || fd_allowed)) {
    out.append_bytes(bytes);
    if (view->fd >= 0) out.attach_fd(view->fd);
    note("GET_REGION_INFO {} ({} bytes{})", index, bytes.size(), view->fd >= 0 ? ", fd sent" : "");
    return done(h, out);
  }
  out.append_bytes(bytes.first(sizeof(vfio_region_info)));
  auto* info = out.payload_data();
  std::uint32_t flags = 0;
  std::memcpy(&flags, info + kRegionInfoFlags, sizeof flags);
  flags &= ~static_cast<std::uint32_t>(VFIO_REGION_INFO_FLAG_CAPS);
  if (!fd_allowed && view->fd >= 0) {
    // The client takes no fds: it cannot map the region, only access it.
    flags &= ~static_cast<std::uint32_t>(VFIO_REGION_INFO_FLAG_MMAP);
    const auto bare = static_cast<std::uint32_t>(sizeof(vfio_region_info));
    std::memcpy(info, &bare, sizeof bare);
  }
  std::memcpy(info + kRegionInfoFlags, &flags, sizeof flags);
  const std::uint32_t zero = 0;
  std::memcpy(info + kRegionInfoCapOffset, &zero, sizeof zero);
  if (fd_allowed)
    note("GET_REGION_INFO {}: argsz {} too small for the {}-byte reply", index, argsz, bytes.size());
  else
    note("GET_REGION_INFO {}: the client takes no fds: not mappable", index);
  return done(h, out);
}

Outcome Session::irq_info(const Header& h, std::span<const std::uint8_t> p, ReplyBuffer& out) {
  if (p.size() < sizeof(vfio_irq_info))
    return refuse(h, out, EINVAL, "GET_IRQ_INFO payload of {} bytes, need {}", p.size(), sizeof(vfio_irq_info));
  const auto argsz = load<std::uint32_t>(p, 0);
  const auto index = load<std::uint32_t>(p, offsetof(vfio_irq_info, index));
  if (argsz < sizeof(vfio_irq_info))
    return refuse(h, out, EINVAL, "GET_IRQ_INFO argsz {} is smaller than the {}-byte reply", argsz,
                  sizeof(vfio_irq_info));
  auto irq = device_.irq(index);
  if (!irq) return refuse(h, out, EINVAL, "{}", irq.error().message);
  vfio_irq_info r{};
  r.argsz = sizeof r;
  r.flags = irq->flags;
  r.index = irq->index;
  r.count = irq->count;
  out.begin(h);
  out.append(r);
  note("GET_IRQ_INFO {}", index);
  return done(h, out);
}

// R29: exactly one data type and one action; the eventfds (one per interrupt,
// or none to de-assign) go straight to the device.
Outcome Session::set_irqs(const Header& h, std::span<const std::uint8_t> p, std::span<sys::UniqueFd> fds, ReplyBuffer& out) {
  if (p.size() < sizeof(SetIrqsRequest)) return refuse(h, out, EINVAL, "SET_IRQS payload of {} bytes, need 20", p.size());
  const auto s = load<SetIrqsRequest>(p, 0);
  if (s.argsz < sizeof s) return refuse(h, out, EINVAL, "SET_IRQS argsz {} is smaller than the request", s.argsz);
  constexpr auto kDataMask = static_cast<std::uint32_t>(VFIO_IRQ_SET_DATA_TYPE_MASK);
  constexpr auto kActionMask = static_cast<std::uint32_t>(VFIO_IRQ_SET_ACTION_TYPE_MASK);
  const std::uint32_t data = s.flags & kDataMask;
  const std::uint32_t action = s.flags & kActionMask;
  if (std::popcount(data) != 1 || std::popcount(action) != 1 || (s.flags & ~(kDataMask | kActionMask)))
    return refuse(h, out, EINVAL, "SET_IRQS flags {:#x}: exactly one data type and one action", s.flags);
  auto irq = device_.irq(s.index);
  if (!irq) return refuse(h, out, EINVAL, "{}", irq.error().message);
  if (s.count == 0) {
    if (s.start != 0 || data != VFIO_IRQ_SET_DATA_NONE || action != VFIO_IRQ_SET_ACTION_TRIGGER)
      return refuse(h, out, EINVAL, "SET_IRQS with count 0 only disables the index (DATA_NONE|TRIGGER, start 0)");
  } else if (s.start >= irq->count || s.count > irq->count - s.start) {
    return refuse(h, out, EINVAL, "SET_IRQS {}+{} of index {}, which has {}", s.start, s.count, s.index, irq->count);
  }
  if ((action & (VFIO_IRQ_SET_ACTION_MASK | VFIO_IRQ_SET_ACTION_UNMASK)) && !(irq->flags & VFIO_IRQ_INFO_MASKABLE))
    return refuse(h, out, EINVAL, "IRQ index {} is not maskable", s.index);
  std::span<const std::uint8_t> bools;
  if (data == VFIO_IRQ_SET_DATA_BOOL) {
    if (p.size() != sizeof s + s.count)
      return refuse(h, out, EINVAL, "SET_IRQS DATA_BOOL carries {} bytes for {} interrupts", p.size() - sizeof s, s.count);
    bools = p.subspan(sizeof s, s.count);
  }
  if (data == VFIO_IRQ_SET_DATA_EVENTFD) {
    if (!(irq->flags & VFIO_IRQ_INFO_EVENTFD)) return refuse(h, out, EINVAL, "IRQ index {} takes no eventfds", s.index);
    if (!fds.empty() && fds.size() != s.count)
      return refuse(h, out, EINVAL, "SET_IRQS brings {} eventfds for {} interrupts", fds.size(), s.count);
  } else if (!fds.empty()) {
    return refuse(h, out, EINVAL, "SET_IRQS brings fds without DATA_EVENTFD");
  }
  std::array<int, kMaxMsgFds> raw{};
  for (std::size_t i = 0; i < fds.size(); ++i) raw[i] = fds[i].get();
  if (auto ok = device_.set_irqs({s.flags, s.index, s.start, s.count, bools, std::span(raw.data(), fds.size())}); !ok)
    return refuse(h, out, ok.error().err, "SET_IRQS index {}: {}", s.index, ok.error().message);
  // Track what stays assigned, for teardown (R30).
  auto it = std::find_if(irqs_.begin(), irqs_.end(), [&](const IrqSetting& x) { return x.index == s.index; });
  if (it == irqs_.end()) it = irqs_.insert(irqs_.end(), IrqSetting{s.index, 0, 0});
  ++it->calls;
  if (action == VFIO_IRQ_SET_ACTION_TRIGGER) {
    if (s.count == 0) it->triggers = 0;
    else if (data == VFIO_IRQ_SET_DATA_EVENTFD)
      it->triggers = fds.empty() ? (it->triggers >= s.count ? it->triggers - s.count : 0) : it->triggers + s.count;
  }
  out.begin(h);
  note("SET_IRQS index {} start {} count {} flags {:#x}, {} fd(s)", s.index, s.start, s.count, s.flags, fds.size());
  return done(h, out);
}

// R17 at the device: an access at or past the region's end is refused, one
// running past it is cut short and the reply's count says so. The reply's
// data is read from the device straight into the reply.
Outcome Session::region_access(const Header& h, std::span<const std::uint8_t> p, ReplyBuffer& out) {
  if (p.size() < sizeof(RegionAccess)) return refuse(h, out, EINVAL, "region access payload of {} bytes", p.size());
  const auto a = load<RegionAccess>(p, 0);
  if (a.count > kMaxDataXferSize)
    return refuse(h, out, EINVAL, "count {} exceeds the server's max_data_xfer_size {}", a.count, kMaxDataXferSize);
  if (h.command == kRegionWrite) {
    if (p.size() - sizeof a != a.count)
      return refuse(h, out, EINVAL, "REGION_WRITE carries {} bytes, count says {}", p.size() - sizeof a, a.count);
    auto n = device_.write(RegionIndex{a.region}, a.offset, p.subspan(sizeof a, a.count));
    if (!n) return refuse(h, out, n.error().err ? n.error().err : EIO, "{}", n.error().message);
    out.begin(h);
    out.append(RegionAccess{a.offset, a.region, static_cast<std::uint32_t>(*n)});
    note("REGION_WRITE {}:{:#x} {} bytes", a.region, a.offset, *n);
    return done(h, out);
  }
  if (a.count > client_max_xfer_)
    return refuse(h, out, EINVAL, "count {} exceeds the client's max_data_xfer_size {}", a.count, client_max_xfer_);
  out.begin(h);
  auto* head = out.extend(sizeof a);
  auto* data = out.extend(a.count);
  if (!head || !data) return refuse(h, out, ENOMEM, "no room for {} bytes in the reply buffer", a.count);
  auto n = device_.read(RegionIndex{a.region}, a.offset, std::span(data, a.count));
  if (!n) return refuse(h, out, n.error().err ? n.error().err : EIO, "{}", n.error().message);
  const RegionAccess r{a.offset, a.region, static_cast<std::uint32_t>(*n)};
  std::memcpy(head, &r, sizeof r);
  out.truncate_payload(sizeof r + *n);
  note("REGION_READ {}:{:#x} {} bytes", a.region, a.offset, *n);
  return done(h, out);
}

Outcome Session::device_reset(const Header& h, ReplyBuffer& out) {
  if (auto ok = device_.reset(); !ok) return refuse(h, out, ok.error().err ? ok.error().err : EIO, "{}", ok.error().message);
  out.begin(h);
  note("DEVICE_RESET");
  return done(h, out);
}

Teardown Session::teardown() {
  Teardown t;
  for (const auto& d : dma_) {
    if (auto ok = device_.dma_unmap(Iova{d.address}, d.size); !ok)
      t.errors.push_back(fmt::format("DMA unmap {:#x}+{:#x}: {}", d.address, d.size, ok.error().message));
    ++t.dma_unmapped;
  }
  dma_.clear();
  for (const auto& s : irqs_) {
    // An index with nothing assigned is already off (VFIO refuses to
    // disable MSI/MSI-X that is not enabled: EINVAL).
    if (s.triggers == 0) continue;
    const IrqSet off{VFIO_IRQ_SET_DATA_NONE | VFIO_IRQ_SET_ACTION_TRIGGER, s.index, 0, 0, {}, {}};
    if (auto ok = device_.set_irqs(off); !ok)
      t.errors.push_back(fmt::format("disabling IRQ index {}: {}", s.index, ok.error().message));
    ++t.irq_indexes_disabled;
  }
  irqs_.clear();
  return t;
}

nlohmann::json Session::save() const {
  nlohmann::json dma = nlohmann::json::array();
  for (const auto& d : dma_)
    dma.push_back({{"address", d.address}, {"size", d.size}, {"offset", d.offset}, {"flags", d.flags},
                   {"had_fd", d.had_fd}});
  nlohmann::json irqs = nlohmann::json::array();
  for (const auto& i : irqs_) irqs.push_back({{"index", i.index}, {"triggers", i.triggers}, {"calls", i.calls}});
  return {{"negotiated", negotiated_}, {"max_msg_fds", client_max_fds_}, {"max_data_xfer_size", client_max_xfer_},
          {"dma", std::move(dma)}, {"irqs", std::move(irqs)}};
}

Result<void> Session::restore(const nlohmann::json& j) {
  auto negotiated = state::boolean(j, "negotiated");
  auto fds = state::u64(j, "max_msg_fds");
  auto xfer = state::u64(j, "max_data_xfer_size");
  auto dma = state::array(j, "dma");
  auto irqs = state::array(j, "irqs");
  if (!negotiated || !fds || !xfer || !dma || !irqs)
    return fail(!negotiated ? negotiated.error() : !fds ? fds.error() : !xfer ? xfer.error()
                : !dma ? dma.error() : irqs.error());
  if (*fds > UINT32_MAX || *xfer > UINT32_MAX)
    return fail_errno(EINVAL, "hand-over state: the client's limits {} and {} do not fit 32 bits", *fds, *xfer);
  std::vector<DmaRegion> d;
  for (const auto& e : **dma) {
    auto a = state::u64(e, "address"), sz = state::u64(e, "size"), o = state::u64(e, "offset"),
         f = state::u64(e, "flags");
    auto h = state::boolean(e, "had_fd");
    if (!a || !sz || !o || !f || !h)
      return fail(!a ? a.error() : !sz ? sz.error() : !o ? o.error() : !f ? f.error() : h.error());
    d.push_back({*a, *sz, *o, static_cast<std::uint32_t>(*f), *h});
  }
  std::vector<IrqSetting> q;
  for (const auto& e : **irqs) {
    auto i = state::u64(e, "index"), t = state::u64(e, "triggers"), c = state::u64(e, "calls");
    if (!i || !t || !c) return fail(!i ? i.error() : !t ? t.error() : c.error());
    q.push_back({static_cast<std::uint32_t>(*i), static_cast<std::uint32_t>(*t), static_cast<std::uint32_t>(*c)});
  }
  negotiated_ = *negotiated;
  client_max_fds_ = static_cast<std::uint32_t>(*fds);
  client_max_xfer_ = static_cast<std::uint32_t>(*xfer);
  dma_ = std::move(d);
  irqs_ = std::move(q);
  return {};
}

}  // namespace nvgrace::vfio::user
