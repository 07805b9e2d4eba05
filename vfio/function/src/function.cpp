#include "nvgrace/vfio/function.hpp"

#include <linux/pci_regs.h>

#include <cstring>

#include "nvgrace/vfio/region_info.hpp"
#include "nvgrace/vfio/state.hpp"

namespace nvgrace::vfio {

Result<std::uint32_t> config_read(Function& f, ConfigOffset offset, std::size_t width) {
  if (width != 1 && width != 2 && width != 4) return fail_errno(EINVAL, "config read of width {}", width);
  std::uint32_t v = 0;
  auto n = f.read(kConfigRegion, offset.value(), std::span(reinterpret_cast<std::uint8_t*>(&v), width));
  if (!n) return fail(n.error());
  if (*n != width) return fail_errno(EIO, "config read of {} bytes at {:#x} returned {}", width, offset, *n);
  return v;
}

Result<void> config_write(Function& f, ConfigOffset offset, std::size_t width, std::uint32_t value) {
  if (width != 1 && width != 2 && width != 4) return fail_errno(EINVAL, "config write of width {}", width);
  auto n = f.write(kConfigRegion, offset.value(), std::span(reinterpret_cast<const std::uint8_t*>(&value), width));
  if (!n) return fail(n.error());
  if (*n != width) return fail_errno(EIO, "config write of {} bytes at {:#x} took {}", width, offset, *n);
  return {};
}

Result<std::vector<std::uint64_t>> region_sizes(Function& f) {
  std::vector<std::uint64_t> sizes;
  for (unsigned i = 0; i < f.info().num_regions; ++i) {
    auto view = f.region_info(RegionIndex{i});
    if (!view) return fail(view.error().context(fmt::format("region {} info", i)));
    auto d = decode_region_info(view->bytes);
    if (!d) return fail(d.error().context(fmt::format("region {} info", i)));
    sizes.push_back(d->region.size);
  }
  return sizes;
}

Result<std::vector<std::uint8_t>> config_dump(Function& f, std::size_t size) {
  std::vector<std::uint8_t> b(size);
  for (std::size_t o = 0; o < size; o += 4) {
    const std::size_t n = std::min<std::size_t>(4, size - o);
    auto got = f.read(kConfigRegion, o, std::span(b.data() + o, n));
    if (!got) return fail(got.error());
    if (*got != n) return fail_errno(EIO, "short config read at {:#x}: {} of {} bytes", o, *got, n);
  }
  return b;
}

Result<DecodeState> read_decode_state(Function& f, std::span<const std::uint64_t> bar_sizes) {
  // COMMAND, then the BAR registers a pair at a time: what a VMM does after
  // every config write the guest makes (R21). Never one read across pairs:
  // the kernel's nvgrace-gpu emulates only one fake BAR's pair in an access
  // that touches two (R39), and so does the variant.
  std::uint16_t cmd = 0;
  if (auto n = f.read(kConfigRegion, PCI_COMMAND, std::span(reinterpret_cast<std::uint8_t*>(&cmd), 2)); !n)
    return fail(n.error());
  std::uint32_t regs[kBarCount] = {};
  for (unsigned pair = 0; pair < kBarCount; pair += 2)
    if (auto n = f.read(kConfigRegion, PCI_BASE_ADDRESS_0 + 4 * pair,
                        std::span(reinterpret_cast<std::uint8_t*>(regs + pair), 8));
        !n)
      return fail(n.error());
  DecodeState s;
  s.memory_decode = (cmd & PCI_COMMAND_MEMORY) != 0;
  for (unsigned i = 0; i + 1 < kBarCount && i < bar_sizes.size(); ++i) {
    const std::uint64_t size = bar_sizes[i];
    const std::uint32_t lo = regs[i];
    if (size == 0 || (lo & PCI_BASE_ADDRESS_SPACE_IO) ||
        (lo & PCI_BASE_ADDRESS_MEM_TYPE_MASK) != PCI_BASE_ADDRESS_MEM_TYPE_64)
      continue;
    const std::uint64_t raw = lo | static_cast<std::uint64_t>(regs[i + 1]) << 32;
    const std::uint64_t address = raw & ~std::uint64_t{0xF};
    const std::uint64_t writable = ~(size - 1) & ~std::uint64_t{0xF};
    s.bars.push_back({BarIndex{i}, pciemu::BarRole::device, size, address, (raw & writable) == writable});
    ++i;  // the upper half
  }
  return s;
}

}  // namespace nvgrace::vfio

namespace nvgrace::vfio {

Result<nlohmann::json> Function::save_state(sys::FdTable&) const {
  return fail_errno(ENOTSUP, "this kind of function cannot be handed to another server process (R41)");
}

Result<void> Function::restore_state(const nlohmann::json&, sys::FdTable&) {
  return fail_errno(ENOTSUP, "this kind of function cannot take over another server process's state (R41)");
}

}  // namespace nvgrace::vfio
