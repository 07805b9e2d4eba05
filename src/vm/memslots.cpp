#include "vm/memslots.hpp"

#include <linux/pci_regs.h>

#include <algorithm>
#include <functional>

#include <array>
#include <span>
#include <string_view>

#include "nvgrace/common/checked.hpp"

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

Result<Memslot> MemslotManager::map(std::uint64_t gpa, std::uint64_t size, void* hva, std::uint32_t flags) {
  std::uint32_t id;
  if (!free_ids_.empty()) {
    id = free_ids_.back();
  } else if (next_id_ < api_.max_slots()) {
    id = next_id_;
  } else {
    return fail_errno(ENOSPC, "all {} KVM memslots are in use", api_.max_slots());
  }
  if (auto ok = api_.set_user_memory_region(id, gpa, size, reinterpret_cast<std::uint64_t>(hva), flags); !ok)
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
  if (!api_.set_user_memory_region(id, 0, 0, 0, 0)) return;
  free_ids_.insert(std::lower_bound(free_ids_.begin(), free_ids_.end(), id, std::greater<>()), id);
  --live_;
}

BarMapper::BarMapper(std::string name, MemslotManager& slots, vfio::VariantDevice& device, std::uint64_t phys_limit,
                     std::shared_ptr<spdlog::logger> log)
    : name_(std::move(name)), slots_(slots), device_(device), phys_limit_(phys_limit), log_(std::move(log)) {}

void BarMapper::append_ranges(std::vector<GuestRange>& out) const {
  for (const auto& c : claims_) out.push_back({c.base, c.size, name_ + " BAR" + std::to_string(c.index)});
}

const BarClaim* BarMapper::claim_at(std::uint64_t gpa) const {
  for (const auto& c : claims_)
    if (gpa >= c.base && gpa - c.base < c.size) return &c;
  return nullptr;
}

void BarMapper::sync(const std::vector<GuestRange>& fixed, const std::vector<GuestRange>& others) {
  const auto [decode, states] = device_.decode_state();
  const auto& layout = device_.layout();

  // Phase 1: decide where each BAR decodes (R21) and refuse what must not be
  // placed (R23). Two BARs of this device on top of each other are both
  // refused: the answer must not depend on the order they are looked at.
  struct Want {
    pciemu::BarState bar;
    const pciemu::MemRegion* mem = nullptr;
    bool decodes = false;  // decode on, a real address, not mid-probe (R21)
    bool place = false;
    std::string why;              // refused (R23); empty, without allocating, when not
    std::string_view idle;        // not decoding, legitimately (R21)
  };
  // No allocation on the common path: the VMM calls this on every config
  // write. Strings are built only for a refusal.
  std::array<Want, 6> wants;
  std::size_t n = 0;
  for (const auto& bar : states) {
    Want& w = wants[n++];
    w = Want{bar, nullptr, decode && !bar.sizing && bar.address != 0, false, {}, {}};
    for (const auto* m : {&layout.usemem, &layout.resmem})
      if (*m && (*m)->bar_index == bar.index) w.mem = &**m;
    if (!decode)
      w.idle = "memory decode is off (R21)";
    else if (bar.sizing)
      w.idle = "it is being sized: every address bit reads back set (R21)";
    else if (bar.address == 0)
      w.idle = "it is not assigned: address 0";
    if (w.decodes) {
      const auto end = checked_add(bar.address, bar.size);
      if (!end || *end > phys_limit_) {
        w.why = fmt::format("{:#x}+{:#x} lies past the guest's {:#x} physical address limit", bar.address, bar.size,
                            phys_limit_);
      } else {
        for (const auto* list : {&fixed, &others})
          for (const auto& r : *list)
            if (w.why.empty() && r.overlaps(bar.address, bar.size))
              w.why = fmt::format("it overlaps {} at {:#x}+{:#x}", r.owner, r.base, r.size);
      }
      w.place = w.why.empty();
    }
  }
  const std::span<Want> all(wants.data(), n);
  for (auto& a : all)
    for (const auto& b : all)
      if (&a != &b && a.place && b.decodes && GuestRange{b.bar.address, b.bar.size, {}}.overlaps(a.bar.address, a.bar.size))
        a.why = fmt::format("it overlaps {} BAR{} at {:#x}", name_, b.bar.index, b.bar.address);
  for (auto& w : all) {
    if (!w.why.empty()) {
      w.place = false;
      ++refusals_;
      const auto msg = fmt::format("{} BAR{} at {:#x} not mapped: {} (R23)", name_, w.bar.index, w.bar.address, w.why);
      if (msg != last_refusal_[w.bar.index]) log_->warn("{}", msg);  // each distinct refusal once
      last_refusal_[w.bar.index] = msg;
    } else {
      last_refusal_[w.bar.index].clear();
    }
  }

  // Phase 2: remove every slot that no longer matches, so new slots never
  // overlap old ones (KVM refuses overlapping memslots).
  for (const auto& w : all) {
    Memslot& slot = slot_[w.bar.index];
    if (slot && (!w.place || slot.gpa() != w.bar.address)) {
      log_->debug("{} BAR{}: slot {} at {:#x} removed", name_, w.bar.index, slot.id(), slot.gpa());
      slot.reset();
    }
  }

  // Phase 3: map what is placed; the tail [length, BAR size) gets no slot, so
  // guest accesses there trap (R22). claims_ and unplaced_ are rewritten in
  // place: a reason that did not change is not copied again.
  claims_.clear();
  std::size_t nunplaced = 0;
  auto unplace = [&](unsigned index, std::string_view reason) {
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
    BarClaim claim{w.bar.index, w.bar.address, w.bar.size, false};
    Memslot& slot = slot_[w.bar.index];
    if (w.mem && !slot) {
      const auto range = device_.backend().range(w.mem->role);
      if (w.bar.address % (2 * MiB) != reinterpret_cast<std::uintptr_t>(range->data) % (2 * MiB))
        log_->info("{} BAR{} at {:#x}: guest and host addresses differ modulo 2 MiB, no huge pages (R24)", name_,
                   w.bar.index, w.bar.address);
      auto s = slots_.map(w.bar.address, w.mem->length, range->data);
      if (!s) {
        ++refusals_;
        log_->warn("{} BAR{} at {:#x}: memslot refused: {}", name_, w.bar.index, w.bar.address, s.error().message);
        unplace(w.bar.index, fmt::format("KVM refused its memslot: {}", s.error().message));
        continue;
      }
      slot = std::move(*s);
      log_->debug("{} BAR{}: {} mapped at {:#x}+{:#x} (slot {})", name_, w.bar.index, to_string(w.mem->role),
                  w.bar.address, w.mem->length, slot.id());
    }
    claim.mapped = static_cast<bool>(slot);
    claims_.push_back(claim);
  }
  unplaced_.resize(nunplaced);
}

}  // namespace nvgrace::vm
