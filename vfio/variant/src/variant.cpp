#include "nvgrace/vfio/variant/variant.hpp"

#include <linux/pci_regs.h>
#include <linux/vfio.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>

#include <algorithm>
#include <cstring>

#include <fmt/format.h>

#include "nvgrace/common/checked.hpp"
#include "nvgrace/pciemu/capabilities.hpp"
#include "nvgrace/vfio/region_info.hpp"
#include "nvgrace/vfio/state.hpp"

namespace nvgrace::vfio {
namespace {

// A 64-bit BAR at `index` - 1 whose upper half is `index`: the fake BAR at
// `index` would cut it in two.
bool upper_half_of_64bit_bar(std::span<const std::uint8_t> cfg, unsigned index) {
  if (index == 0) return false;
  const std::size_t lo = PCI_BASE_ADDRESS_0 + 4 * (index - 1);
  if (lo >= cfg.size()) return false;
  const std::uint8_t v = cfg[lo];
  return !(v & PCI_BASE_ADDRESS_SPACE_IO) && (v & PCI_BASE_ADDRESS_MEM_TYPE_MASK) == PCI_BASE_ADDRESS_MEM_TYPE_64;
}

}  // namespace

Result<std::unique_ptr<Variant>> Variant::create(std::unique_ptr<Function> function, VariantOptions o) {
  if (!function) return fail_errno(EINVAL, "{}: no function", o.name);
  if (o.layout.passthrough || !o.layout.usemem)
    return fail_errno(EINVAL, "{}: the device has no fake BARs (R5)", o.name);
  if (!o.memory) return fail_errno(EINVAL, "{}: fake BARs need a memory source", o.name);
  std::unique_ptr<Variant> v(new Variant());
  v->function_ = std::move(function);
  v->name_ = o.name;
  v->layout_ = o.layout;
  v->memory_ = std::move(o.memory);
  auto& fn = *v->function_;
  const auto info = fn.info();
  if (!(info.flags & VFIO_DEVICE_FLAGS_PCI) || info.num_regions <= VFIO_PCI_CONFIG_REGION_INDEX)
    return fail_errno(ENODEV, "{}: VFIO does not present it as a PCI device ({} regions)", v->name_, info.num_regions);

  auto cfg_info = fn.region_info(kConfigRegion);
  if (!cfg_info) return fail(cfg_info.error().context(v->name_));
  auto cfg_desc = decode_region_info(cfg_info->bytes);
  if (!cfg_desc) return fail(cfg_desc.error().context(v->name_ + ": config region info"));
  v->config_size_ = cfg_desc->region.size;
  std::vector<std::uint8_t> cfg(static_cast<std::size_t>(std::min<std::uint64_t>(v->config_size_, PCI_CFG_SPACE_EXP_SIZE)));
  if (auto n = fn.read(kConfigRegion, 0, cfg); !n) return fail(n.error().context(v->name_ + ": reading config space"));
  v->cxl_dvsec_ = pciemu::find_dvsec(cfg, pciemu::kCxlVendorId, pciemu::kCxlDeviceDvsecId).offset;

  std::vector<pciemu::GuestBar> fake;
  for (const auto* m : {&v->layout_.usemem, &v->layout_.resmem}) {
    if (!*m) continue;
    const auto range = v->memory_->range((*m)->role);
    if (!range || range->size != (*m)->length)
      return fail_errno(EINVAL, "{}: the memory source {} does not hold {} ({:#x} bytes)", v->name_,
                        v->memory_->kind(), to_string((*m)->role), (*m)->length);
    fake.push_back({(*m)->bar_index,
                    (*m)->role == pciemu::MemRole::usemem ? pciemu::BarRole::usemem : pciemu::BarRole::resmem,
                    (*m)->bar_size, **m});
  }
  // R27: the function's own MSI-X table and PBA must stay reachable, and no
  // 64-bit BAR of its own may straddle a fake one.
  const auto msix = pciemu::find_msix(cfg);
  for (const auto& b : fake) {
    const unsigned i = b.index.value();
    if (msix && (msix->table_bar == i || msix->table_bar == i + 1))
      return fail_errno(EINVAL, "{}: its MSI-X table is in BAR{}, which the fake {} BAR replaces (R27)", v->name_,
                        msix->table_bar, pciemu::to_string(b.role));
    if (msix && (msix->pba_bar == i || msix->pba_bar == i + 1))
      return fail_errno(EINVAL, "{}: its MSI-X PBA is in BAR{}, which the fake {} BAR replaces (R27)", v->name_,
                        msix->pba_bar, pciemu::to_string(b.role));
    if (upper_half_of_64bit_bar(cfg, i))
      return fail_errno(EINVAL, "{}: BAR{} is a 64-bit BAR whose upper half is BAR{}, where the fake {} BAR goes (R11)",
                        v->name_, i - 1, i, pciemu::to_string(b.role));
  }
  pciemu::DeviceConfigParams params;
  params.device_id = o.device_id;
  params.bars = fake;
  auto overlay = pciemu::DeviceConfig::build(params);
  if (!overlay) return fail(overlay.error().context(v->name_));
  v->overlay_ = std::move(*overlay);
  v->overlay_->reset();  // R14: the fake BARs are zero when the device is opened

  // R16: the fake BARs replace the function's regions 2/4 and their upper
  // halves; the region offset is the memory's offset in the fd sent with it.
  v->regions_.resize(info.num_regions);
  for (const auto& b : fake) {
    const auto* m = b.index == v->layout_.usemem->bar_index ? &*v->layout_.usemem : &*v->layout_.resmem;
    const auto range = v->memory_->range(m->role);
    RegionDesc desc{bar_region(b.index), b.size,
                    VFIO_REGION_INFO_FLAG_READ | VFIO_REGION_INFO_FLAG_WRITE | VFIO_REGION_INFO_FLAG_MMAP,
                    {{0, m->length}}, !m->cacheable};
    if (!o.mmap_fake_bars) {
      desc.flags &= ~static_cast<std::uint32_t>(VFIO_REGION_INFO_FLAG_MMAP);
      desc.sparse.clear();
    }
    auto& r = v->regions_[b.index.value()];
    r = {encode_region_info(desc, region_info_size(desc), range->fd_offset), b.size, m,
         o.mmap_fake_bars ? range->fd : -1};
    const RegionDesc upper{RegionIndex{b.index.value() + 1}, 0, 0, {}, false};
    v->regions_[b.index.value() + 1] = {encode_region_info(upper, region_info_size(upper)), 0, nullptr, -1};
    for (unsigned k = 0; k < 8; ++k) v->owned_mask_ |= std::uint64_t{1} << (PCI_BASE_ADDRESS_0 + 4 * b.index.value() - 0x10 + k);
  }
  // Each BAR's size as the client will see it (the fake ones replaced).
  for (unsigned i = 0; i < kBarCount; ++i) {
    if (!v->regions_[i].info.empty()) {
      v->bar_sizes_.push_back(v->regions_[i].size);
      continue;
    }
    auto ri = fn.region_info(RegionIndex{i});
    auto d = ri ? decode_region_info(ri->bytes) : Result<DecodedRegionInfo>(fail(ri.error()));
    v->bar_sizes_.push_back(d ? d->region.size : 0);
  }
  o.memory.reset();
  v->options_ = std::move(o);
  return v;
}

const Variant::Region* Variant::fake(RegionIndex index) const {
  if (index.value() >= regions_.size() || regions_[index.value()].info.empty()) return nullptr;
  return &regions_[index.value()];
}

bool Variant::model_owns(std::uint64_t off) const {
  return off >= PCI_BASE_ADDRESS_0 && off < PCI_BASE_ADDRESS_0 + 64 && (owned_mask_ >> (off - PCI_BASE_ADDRESS_0) & 1);
}

std::string Variant::readiness_rule() const {
  if (options_.readiness == ReadinessCheck::skip) return "skipped";
  if (cxl_dvsec_) return fmt::format("R31 (CXL Device DVSEC at {:#x})", *cxl_dvsec_);
  return "R20 (BAR0 registers 0x1498 and 0x200bc)";
}

Result<RegionInfoView> Variant::region_info(RegionIndex index) {
  const auto* r = fake(index);
  if (!r) return function_->region_info(index);
  if (r->mem) {
    std::shared_lock reset_guard(reset_mutex_);
    if (auto ok = wait_ready(); !ok) return fail(ok.error());
  }
  return RegionInfoView{r->info, r->fd};
}

Result<RegionDesc> Variant::region(RegionIndex index) const {
  if (index.value() >= regions_.size())
    return fail_errno(EINVAL, "region {} does not exist (0..{})", index, regions_.size() - 1);
  if (const auto* r = fake(index)) {
    auto d = decode_region_info(r->info);
    if (!d) return fail(d.error());
    auto desc = d->region;
    if (r->mem) desc.write_combined = !r->mem->cacheable;
    return desc;
  }
  auto view = function_->region_info(index);
  if (!view) return fail(view.error());
  auto d = decode_region_info(view->bytes);
  if (!d) return fail(d.error());
  return d->region;
}

Result<std::size_t> Variant::read(RegionIndex index, std::uint64_t offset, std::span<std::uint8_t> out) {
  if (index == kConfigRegion) return config_access(offset, out.data(), out.size(), false);
  if (const auto* r = fake(index)) return memory_access(*r, index, offset, out.data(), out.size(), false);
  std::shared_lock reset_guard(reset_mutex_);
  return function_->read(index, offset, out);
}

Result<std::size_t> Variant::write(RegionIndex index, std::uint64_t offset, std::span<const std::uint8_t> in) {
  // The buffer is only read on the write path.
  if (index == kConfigRegion) return config_access(offset, const_cast<std::uint8_t*>(in.data()), in.size(), true);
  if (const auto* r = fake(index)) return memory_access(*r, index, offset, const_cast<std::uint8_t*>(in.data()), in.size(), true);
  std::shared_lock reset_guard(reset_mutex_);
  return function_->write(index, offset, in);
}

// R26: config space is the function's, except the fake BARs' registers,
// which the variant owns (R11-R13). Which bytes of an access are the
// variant's follows the kernel's nvgrace-gpu exactly (R39; 6.12 and 7.3
// alike): an access that touches BAR2's register pair (0x18-0x1F) is
// emulated against that window alone - or not at all where BAR2 is not a
// fake BAR (Blackwell) - else one that touches BAR4's (0x20-0x27) against
// that one. A read takes the function's bytes, then the window's from the
// overlay; a write inside a window stores only the window's bytes and says
// so with a short count (the bytes outside it are dropped), a write outside
// one goes to the function whole.
std::optional<Variant::Window> Variant::window_for(std::uint64_t offset, std::size_t count) const {
  const auto hits = [&](std::uint64_t reg) { return offset < reg + 8 && offset + count > reg; };
  const auto owned = [&](std::uint64_t reg) { return model_owns(reg); };
  constexpr std::uint64_t kBar2 = PCI_BASE_ADDRESS_2, kBar4 = PCI_BASE_ADDRESS_4;
  std::optional<std::uint64_t> reg;
  if (hits(kBar2)) {
    if (!owned(kBar2)) return std::nullopt;
    reg = kBar2;
  } else if (hits(kBar4) && owned(kBar4)) {
    reg = kBar4;
  }
  if (!reg) return std::nullopt;
  // The bytes of the access inside [reg, reg + 8).
  const std::uint64_t first = std::max(offset, *reg);
  const std::uint64_t last = std::min(offset + count, *reg + 8);
  return Window{static_cast<std::size_t>(first - offset), static_cast<std::size_t>(last - first)};
}

Result<std::size_t> Variant::config_access(std::uint64_t offset, std::uint8_t* buf, std::size_t len, bool is_write) {
  std::shared_lock reset_guard(reset_mutex_);
  if (offset >= config_size_)
    return fail_errno(EINVAL, "config offset {:#x} is at or past the {:#x}-byte config space", offset, config_size_);
  const auto count = static_cast<std::size_t>(std::min<std::uint64_t>(len, config_size_ - offset));
  const auto w = window_for(offset, count);
  if (!is_write) {
    auto n = function_->read(kConfigRegion, offset, std::span(buf, count));
    if (!n) return fail(n.error());
    if (w) {
      std::lock_guard lock(overlay_mutex_);
      for (std::size_t i = w->at; i < w->at + w->count; ++i)
        buf[i] = static_cast<std::uint8_t>(overlay_->space().peek(offset + i, 1));
    }
    return *n;
  }
  if (!w) return function_->write(kConfigRegion, offset, std::span<const std::uint8_t>(buf, count));
  std::lock_guard lock(overlay_mutex_);
  for (std::size_t i = w->at; i < w->at + w->count; ++i)
    if (auto ok = overlay_->write(offset + i, 1, buf[i]); !ok) return fail(ok.error());
  return w->count;
}

Result<std::size_t> Variant::memory_access(const Region& r, RegionIndex index, std::uint64_t offset, std::uint8_t* buf,
                                           std::size_t len, bool is_write) {
  std::shared_lock reset_guard(reset_mutex_);
  // By reference: this is the hot path of every region access.
  if (r.size == 0) return fail_errno(EINVAL, "region {} has size 0", index);
  if (offset >= r.size)
    return fail_errno(EINVAL, "offset {:#x} is at or past region {}'s size {:#x} (R17)", offset, index, r.size);
  const std::size_t count = static_cast<std::size_t>(std::min<std::uint64_t>(len, r.size - offset));
  if (count == 0) return std::size_t{0};
  if (auto ok = ready_for_access(); !ok) return fail(ok.error());
  const auto range = memory_->range(r.mem->role);
  const std::size_t backed =
      offset < r.mem->length ? static_cast<std::size_t>(std::min<std::uint64_t>(count, r.mem->length - offset)) : 0;
  if (is_write) {
    std::memcpy(range->data + offset, buf, backed);
    if (count > backed) dropped_.fetch_add(count - backed, std::memory_order_relaxed);
  } else {
    std::memcpy(buf, range->data + offset, backed);
  }
  // R39: the kernel's resmem path (its I/O accessors) answers an access
  // that starts in the memory and runs past it with the memory's part only
  // - a short count, no all-ones for the rest (6.12 and 7.3 alike). usemem
  // and an access wholly past the memory give the whole count.
  if (!r.mem->cacheable && backed > 0 && backed < count) return backed;
  if (!is_write) std::memset(buf + backed, 0xFF, count - backed);  // R17: the unbacked tail reads all-ones
  return count;
}

Result<MmapArea> Variant::mmap(RegionIndex index, std::uint64_t offset, std::uint64_t length) {
  std::shared_lock reset_guard(reset_mutex_);
  const auto* r = fake(index);
  if (!r || !r->mem) return fail_errno(EINVAL, "region {} has no mmap-able memory (R16)", index);
  const auto* m = r->mem;
  auto end = checked_add(offset, length);
  if (length == 0 || !end || *end > m->length)
    return fail_errno(EINVAL, "mmap of [{:#x}, +{:#x}) reaches past {}'s {:#x} bytes of memory (R18)", offset, length,
                      to_string(m->role), m->length);
  if (auto ok = wait_ready(); !ok) return fail(ok.error());
  const auto range = memory_->range(m->role);
  return MmapArea{range->fd, range->fd_offset + offset, length, range->cache};
}

// R20 as the newest kernel has it (7.3, nvgrace_gpu_check_device_ready; R39):
// the first memory access after a reset needs memory decode on - EIO while
// it is off, and the check stays pending - and then the readiness wait.
// 6.12 has no such check (docs/oracle.md).
Result<void> Variant::ready_for_access() {
  if (reset_done_.load(std::memory_order_acquire)) {
    auto cmd = config_read(*function_, ConfigOffset{PCI_COMMAND}, 2);
    if (!cmd) return fail(cmd.error().context(name_));
    if (!(*cmd & PCI_COMMAND_MEMORY))
      return fail_errno(EIO, "{}memory decode is off: the first access after a reset needs it on (R20)",
                        name_.empty() ? "" : name_ + ": ");
    reset_done_.store(false, std::memory_order_release);
  }
  return wait_ready();
}

// Once per arming (creation, reset): one waiter polls, the others wait on it.
Result<void> Variant::wait_ready() {
  if (ready_.load(std::memory_order_acquire)) return {};
  std::lock_guard lock(ready_mutex_);
  if (ready_.load(std::memory_order_acquire)) return {};
  if (auto ok = poll_ready(); !ok) return ok;
  ready_.store(true, std::memory_order_release);
  return {};
}

// R20 / R31 on the function: the CXL DVSEC's word through config space, or
// BAR0's registers through region 0 (with memory decode turned on for the
// reads where the function needs it, and restored after).
Result<void> Variant::poll_ready() {
  if (options_.readiness == ReadinessCheck::skip) return {};
  auto& fn = *function_;
  auto cfg_read = [&](std::uint64_t off) -> Result<std::uint32_t> {
    return config_read(fn, ConfigOffset{static_cast<unsigned>(off)}, 4);
  };
  Result<void> ok;
  if (cxl_dvsec_) {
    ok = wait_cxl_ready(cfg_read, *cxl_dvsec_, options_.ready);
  } else {
    const auto bar0 = bar_sizes_.empty() ? 0 : bar_sizes_[0];
    if (bar0 < kHbmTrainingStatusReg + 4)
      return fail_errno(ENODEV, "{}: BAR0 ({:#x} bytes) has no readiness registers at {:#x}/{:#x} (R20)", name_, bar0,
                        kC2cLinkStatusReg, kHbmTrainingStatusReg);
    std::optional<std::uint32_t> restore;
    if (options_.decode_for_readiness) {
      auto cmd = config_read(fn, ConfigOffset{PCI_COMMAND}, 2);
      if (!cmd) return fail(cmd.error().context(name_));
      if (!(*cmd & PCI_COMMAND_MEMORY)) {
        (void)config_write(fn, ConfigOffset{PCI_COMMAND}, 2, *cmd | PCI_COMMAND_MEMORY);
        restore = *cmd;
      }
    }
    ok = wait_bar0_ready(
        [&](std::uint64_t off) -> Result<std::uint32_t> {
          std::uint32_t v = 0;
          auto n = fn.read(kBar0Region, off, std::span(reinterpret_cast<std::uint8_t*>(&v), 4));
          if (!n) return fail(n.error());
          return v;
        },
        options_.ready);
    if (restore) (void)config_write(fn, ConfigOffset{PCI_COMMAND}, 2, *restore);
  }
  if (!ok && !name_.empty()) return fail(ok.error().context(name_));
  return ok;
}

Result<void> Variant::reset() {
  Result<void> hw;
  {
    std::unique_lock reset_guard(reset_mutex_);
    hw = function_->reset();
    {
      std::lock_guard lock(overlay_mutex_);
      overlay_->reset();
    }
    ready_.store(false, std::memory_order_release);
    reset_done_.store(true, std::memory_order_release);
  }
  if (!hw) return hw;
  if (options_.reset_wait == ResetWait::lazy) return {};
  std::shared_lock reset_guard(reset_mutex_);
  return wait_ready();
}

bool Variant::memory_decode() {
  auto cmd = config_read(*this, ConfigOffset{PCI_COMMAND}, 2);
  return cmd && (*cmd & PCI_COMMAND_MEMORY);
}

pciemu::BarStates Variant::bar_states() {
  auto s = read_decode_state(*this, bar_sizes_);
  return s ? s->bars : pciemu::BarStates{};
}

Result<nlohmann::json> Variant::save_state(sys::FdTable& fds) const {
  std::unique_lock reset_guard(reset_mutex_);  // no access in flight
  auto function = function_->save_state(fds);
  if (!function) return fail(function.error());
  const auto usemem = memory_->range(pciemu::MemRole::usemem);
  if (!usemem || usemem->fd < 0)
    return fail_errno(ENOTSUP, "{}: its memory source ({}) has no descriptor to hand over", name_, memory_->kind());
  auto size = backing_size(layout_);
  if (!size) return fail(size.error());
  std::lock_guard lock(overlay_mutex_);
  return nlohmann::json{{"kind", "variant"},
                        {"function", std::move(*function)},
                        {"memory_fd", fds.add(usemem->fd)},
                        {"memory_base", usemem->fd_offset},
                        {"memory_size", *size},
                        {"memory_kind", memory_->kind()},
                        {"overlay", state::binary(overlay_->space().bytes())},
                        {"ready", ready_.load()},
                        {"reset_done", reset_done_.load()},
                        {"dropped", dropped_.load()}};
}

Result<void> Variant::restore_state(const nlohmann::json& j, sys::FdTable& fds) {
  if (auto ok = state::expect_kind(j, "variant"); !ok) return ok;
  auto function = state::object(j, "function");
  auto fd_index = state::u64(j, "memory_fd");
  auto base = state::u64(j, "memory_base");
  auto size = state::u64(j, "memory_size");
  auto kind = state::text(j, "memory_kind");
  auto overlay = state::bytes(j, "overlay");
  auto ready = state::boolean(j, "ready");
  auto reset_done = state::boolean(j, "reset_done");
  auto dropped = state::u64(j, "dropped");
  for (const Error* e : {function ? nullptr : &function.error(), fd_index ? nullptr : &fd_index.error(),
                         base ? nullptr : &base.error(), size ? nullptr : &size.error(),
                         kind ? nullptr : &kind.error(), overlay ? nullptr : &overlay.error(),
                         ready ? nullptr : &ready.error(), reset_done ? nullptr : &reset_done.error(),
                         dropped ? nullptr : &dropped.error()})
    if (e) return fail(*e);
  auto need = backing_size(layout_);
  if (!need) return fail(need.error());
  if (*size != *need)
    return fail_errno(EINVAL, "hand-over state: {:#x} bytes of GPU memory saved, this layout has {:#x}", *size, *need);
  const auto here = memory_->range(pciemu::MemRole::usemem);
  if (!here || here->fd_offset != *base)
    return fail_errno(EINVAL, "hand-over state: the memory starts at {:#x} of its descriptor, here at {:#x}", *base,
                      here ? here->fd_offset : 0);
  std::unique_lock reset_guard(reset_mutex_);
  if (auto ok = function_->restore_state(**function, fds); !ok) return ok;
  auto fd = fds.take(*fd_index);
  if (!fd) return fail(fd.error());
  struct stat st {};
  if (::fstat(fd->get(), &st) != 0)
    return fail_errno(errno, "hand-over state: the memory's descriptor: {}", std::strerror(errno));
  if (S_ISCHR(st.st_mode)) {
    // Physical memory through a device node (/dev/mem on a real host): the
    // backend this process built from the same command line reaches the same
    // range of the same node, and the memory itself never moved.
    struct stat mine {};
    if (here->fd < 0 || ::fstat(here->fd, &mine) != 0 || !S_ISCHR(mine.st_mode) || mine.st_rdev != st.st_rdev ||
        std::string_view(memory_->kind()) != *kind)
      return fail_errno(EINVAL, "hand-over state: the memory was {} through device {}:{}, here it is {}", *kind,
                        major(st.st_rdev), minor(st.st_rdev), memory_->describe());
  } else if (!S_ISREG(st.st_mode) || static_cast<std::uint64_t>(st.st_size) < *base + *size) {
    return fail_errno(EINVAL, "hand-over state: the memory's descriptor does not hold {:#x} bytes at {:#x}", *size,
                      *base);
  }
  if (S_ISREG(st.st_mode)) {
    // The whole file, as the backend that made it mapped it (hugetlbfs sizes
    // are whole huge pages).
    const auto length = static_cast<std::uint64_t>(st.st_size);
    auto map = sys::Mapping::map(fd->get(), 0, length, sys::huge_alignment(length), PROT_READ | PROT_WRITE,
                                 MAP_SHARED | MAP_NORESERVE);
    if (!map) return fail(map.error().context("handed-over GPU memory"));
    const std::string k(*kind);
    memory_ = make_contiguous_backend(k, fmt::format("{} handed over ({:#x} bytes)", k, *size), std::move(*fd),
                                      std::move(*map), layout_, *base);
    for (auto& r : regions_)
      if (r.mem && r.fd >= 0) r.fd = memory_->range(r.mem->role)->fd;
  }
  {
    std::lock_guard lock(overlay_mutex_);
    if (auto ok = overlay_->space().load(*overlay); !ok) return ok;
  }
  ready_.store(*ready);
  reset_done_.store(*reset_done);
  dropped_.store(*dropped);
  return {};
}

}  // namespace nvgrace::vfio
