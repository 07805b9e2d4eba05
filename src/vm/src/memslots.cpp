#include "nvgrace/vm/memslots.hpp"

#include <linux/pci_regs.h>
#include <linux/vfio.h>
#include <sys/mman.h>

#include <algorithm>
#include <functional>

#include <array>
#include <span>
#include <string_view>

#include "nvgrace/common/checked.hpp"
#include "nvgrace/vfio/region_info.hpp"

namespace nvgrace::vm {

Memslot::Memslot(Memslot&& o) noexcept
    : owner_(std::exchange(o.owner_, nullptr)), id_(o.id_), gpa_(o.gpa_), size_(o.size_) {}

Memslot& Memslot::operator=(Memslot&& o) noexcept {
  if (this != &o) {
    reset();
    owner_ = std::exchange(o.owner_, nullptr);
    id_ = o.id_;
    gpa_ = o.gpa_;
    size_ = o.size_;
  }
  return *this;
}

void Memslot::reset() {
  if (owner_) std::exchange(owner_, nullptr)->release(id_);
}

Result<Memslot> MemslotManager::map(GuestPhysAddr gpa, std::uint64_t size, HostVirtAddr hva, std::uint32_t flags) {
  std::uint32_t id;
  if (!free_ids_.empty()) {
    id = free_ids_.back();
  } else if (next_id_ < api_.max_slots()) {
    id = next_id_;
  } else {
    return fail_errno(ENOSPC, "all {} KVM memslots are in use", api_.max_slots());
  }
  if (auto ok = api_.set_user_memory_region(id, gpa, size, hva, flags); !ok)
    return fail(ok.error());
  if (!free_ids_.empty()) free_ids_.pop_back();
  else ++next_id_;
  ++live_;
  Memslot s;
  s.owner_ = this;
  s.id_ = id;
  s.gpa_ = gpa;
  s.size_ = size;
  return s;
}

void MemslotManager::release(std::uint32_t id) {
  // Deleting a slot KVM knows cannot fail short of a kernel bug; if it does,
  // keep the id out of reuse rather than hand KVM a slot it still holds.
  if (!api_.set_user_memory_region(id, GuestPhysAddr{0}, 0, HostVirtAddr{}, 0)) return;
  free_ids_.insert(std::lower_bound(free_ids_.begin(), free_ids_.end(), id, std::greater<>()), id);
  --live_;
}

BarMapper::BarMapper(std::string name, MemslotManager& slots, vfio::Function& device, GuestPhysAddr phys_limit,
                     std::shared_ptr<spdlog::logger> log)
    : name_(std::move(name)), slots_(slots), device_(device), phys_limit_(phys_limit), log_(std::move(log)) {}

Result<std::unique_ptr<BarMapper>> BarMapper::create(std::string name, MemslotManager& slots, vfio::Function& device,
                                                     GuestPhysAddr phys_limit, std::shared_ptr<spdlog::logger> log) {
  std::unique_ptr<BarMapper> m(new BarMapper(std::move(name), slots, device, phys_limit, std::move(log)));
  // Each BAR's size and the memory behind it: its region's first sparse
  // area, mapped through the fd region info brings (R16, R18), aligned for
  // huge pages (R24). Done once: placing a BAR later costs only memslots.
  for (unsigned i = 0; i < kBarCount; ++i) {
    const RegionIndex index{i};
    auto view = device.region_info(index);
    if (!view) return fail(view.error().context(fmt::format("{} region {} info", m->name_, i)));
    auto info = vfio::decode_region_info(view->bytes);
    if (!info) return fail(info.error().context(fmt::format("{} region {} info", m->name_, i)));
    m->bar_sizes_.push_back(info->region.size);
    if (view->fd < 0 || info->region.sparse.empty() || !(info->region.flags & VFIO_REGION_INFO_FLAG_MMAP)) continue;
    const auto& area = info->region.sparse.front();
    if (area.offset != 0 || area.size == 0) continue;
    auto map = sys::Mapping::map(view->fd, info->offset, area.size, sys::huge_alignment(area.size),
                                 PROT_READ | PROT_WRITE, MAP_SHARED | MAP_NORESERVE);
    if (!map) return fail(map.error().context(fmt::format("{} BAR{} memory", m->name_, i)));
    m->backing_[i] = {area.size, std::move(*map)};
  }
  return m;
}

void BarMapper::append_ranges(std::vector<GuestRange>& out) const {
  for (const auto& c : claims_) out.push_back({c.base, c.size, name_ + " BAR" + std::to_string(c.index.value())});
}

const BarClaim* BarMapper::claim_at(GuestPhysAddr gpa) const {
  for (const auto& c : claims_)
    if (gpa >= c.base && gpa - c.base < c.size) return &c;
  return nullptr;
}

void BarMapper::sync(const std::vector<GuestRange>& fixed, const std::vector<GuestRange>& others) {
  auto state = vfio::read_decode_state(device_, bar_sizes_);
  if (!state) {
    log_->warn("{}: reading its BARs: {}", name_, state.error().message);
    return;
  }
  const bool decode = state->memory_decode;

  // Phase 1: decide where each BAR decodes (R21) and refuse what must not be
  // placed (R23). Two BARs of this device on top of each other are both
  // refused: the answer must not depend on the order they are looked at.
  struct Want {
    pciemu::BarState bar;
    const Backing* mem = nullptr;
    bool decodes = false;  // decode on, a real address, not mid-probe (R21)
    bool place = false;
    std::string why;              // refused (R23); empty, without allocating, when not
    std::string_view idle;        // not decoding, legitimately (R21)
  };
  // No allocation on the common path: the VMM calls this on every config
  // write. Strings are built only for a refusal.
  std::array<Want, 6> wants;
  std::size_t n = 0;
  for (const auto& bar : state->bars) {
    Want& w = wants[n++];
    w = Want{bar, nullptr, decode && !bar.sizing && bar.address != 0, false, {}, {}};
    if (backing_[bar.index.value()].length) w.mem = &backing_[bar.index.value()];
    if (!decode)
      w.idle = "memory decode is off (R21)";
    else if (bar.sizing)
      w.idle = "it is being sized: every address bit reads back set (R21)";
    else if (bar.address == 0)
      w.idle = "it is not assigned: address 0";
    if (w.decodes) {
      const auto end = checked_add(bar.address, bar.size);
      if (!end || *end > phys_limit_.value()) {
        w.why = fmt::format("{:#x}+{:#x} lies past the guest's {:#x} physical address limit", bar.address, bar.size,
                            phys_limit_);
      } else {
        for (const auto* list : {&fixed, &others})
          for (const auto& r : *list)
            if (w.why.empty() && r.overlaps(GuestPhysAddr{bar.address}, bar.size))
              w.why = fmt::format("it overlaps {} at {:#x}+{:#x}", r.owner, r.base, r.size);
      }
      w.place = w.why.empty();
    }
  }
  const std::span<Want> all(wants.data(), n);
  for (auto& a : all)
    for (const auto& b : all)
      if (&a != &b && a.place && b.decodes &&
          GuestRange{GuestPhysAddr{b.bar.address}, b.bar.size, {}}.overlaps(GuestPhysAddr{a.bar.address}, a.bar.size))
        a.why = fmt::format("it overlaps {} BAR{} at {:#x}", name_, b.bar.index, b.bar.address);
  for (auto& w : all) {
    if (!w.why.empty()) {
      w.place = false;
      ++refusals_;
      const auto msg = fmt::format("{} BAR{} at {:#x} not mapped: {} (R23)", name_, w.bar.index, w.bar.address, w.why);
      if (msg != last_refusal_[w.bar.index.value()]) log_->warn("{}", msg);  // each distinct refusal once
      last_refusal_[w.bar.index.value()] = msg;
    } else {
      last_refusal_[w.bar.index.value()].clear();
    }
  }

  // Phase 2: remove every slot that no longer matches, so new slots never
  // overlap old ones (KVM refuses overlapping memslots).
  for (const auto& w : all) {
    Memslot& slot = slot_[w.bar.index.value()];
    if (slot && (!w.place || slot.gpa() != GuestPhysAddr{w.bar.address})) {
      log_->debug("{} BAR{}: slot {} at {:#x} removed", name_, w.bar.index, slot.id(), slot.gpa());
      slot.reset();
    }
  }

  // Phase 3: map what is placed; the tail [length, BAR size) gets no slot, so
  // guest accesses there trap (R22). claims_ and unplaced_ are rewritten in
  // place: a reason that did not change is not copied again.
  claims_.clear();
  std::size_t nunplaced = 0;
  auto unplace = [&](BarIndex index, std::string_view reason) {
    if (nunplaced == unplaced_.size()) unplaced_.emplace_back();
    auto& u = unplaced_[nunplaced++];
    u.index = index;
    if (u.reason != reason) u.reason.assign(reason);
  };
  for (const auto& w : all) {
    if (!w.place) {
      if (w.why.empty()) unplace(w.bar.index, w.idle);
      else unplace(w.bar.index, fmt::format("refused: {} (R23)", w.why));
      continue;
    }
    BarClaim claim{w.bar.index, GuestPhysAddr{w.bar.address}, w.bar.size, false};
    Memslot& slot = slot_[w.bar.index.value()];
    if (w.mem && !slot) {
      if (w.bar.address % (2 * MiB) != w.mem->map.address().value() % (2 * MiB))
        log_->info("{} BAR{} at {:#x}: guest and host addresses differ modulo 2 MiB, no huge pages (R24)", name_,
                   w.bar.index, w.bar.address);
      auto s = slots_.map(GuestPhysAddr{w.bar.address}, w.mem->length, w.mem->map.address());
      if (!s) {
        ++refusals_;
        log_->warn("{} BAR{} at {:#x}: memslot refused: {}", name_, w.bar.index, w.bar.address, s.error().message);
        unplace(w.bar.index, fmt::format("KVM refused its memslot: {}", s.error().message));
        continue;
      }
      slot = std::move(*s);
      log_->debug("{} BAR{}: memory mapped at {:#x}+{:#x} (slot {})", name_, w.bar.index, w.bar.address,
                  w.mem->length, slot.id());
    }
    claim.mapped = static_cast<bool>(slot);
    claims_.push_back(claim);
  }
  unplaced_.resize(nunplaced);
}

}  // namespace nvgrace::vm
