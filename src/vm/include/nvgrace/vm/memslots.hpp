// KVM memslots as RAII handles, and the mapping of fake BARs into guest
// physical memory as the guest programs them (nvgrace-model.md R21-R24).
//
// Thread-safety: none; the VMM's vCPU loop owns these objects.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <spdlog/spdlog.h>

#include "nvgrace/common/result.hpp"
#include "nvgrace/common/types.hpp"
#include "nvgrace/sys/fd.hpp"
#include "nvgrace/vfio/function.hpp"

namespace nvgrace::vm {

// The one KVM call memslots need, behind an interface so the manager can be
// tested without /dev/kvm. size 0 deletes the slot (KVM_SET_USER_MEMORY_REGION).
class MemslotApi {
 public:
  virtual ~MemslotApi() = default;
  virtual Result<void> set_user_memory_region(std::uint32_t slot, GuestPhysAddr gpa, std::uint64_t size,
                                              HostVirtAddr hva, std::uint32_t flags) = 0;
  // KVM_CAP_NR_MEMSLOTS.
  [[nodiscard]] virtual std::uint32_t max_slots() const = 0;
};

class MemslotManager;

// One live memslot; destroying it deletes the slot and frees its id.
class Memslot {
 public:
  Memslot() = default;
  Memslot(Memslot&& o) noexcept;
  Memslot& operator=(Memslot&& o) noexcept;
  Memslot(const Memslot&) = delete;
  Memslot& operator=(const Memslot&) = delete;
  ~Memslot() { reset(); }

  void reset();
  [[nodiscard]] explicit operator bool() const { return owner_ != nullptr; }
  [[nodiscard]] std::uint32_t id() const { return id_; }
  [[nodiscard]] GuestPhysAddr gpa() const { return gpa_; }
  [[nodiscard]] std::uint64_t size() const { return size_; }

 private:
  friend class MemslotManager;
  MemslotManager* owner_ = nullptr;
  std::uint32_t id_ = 0;
  GuestPhysAddr gpa_;
  std::uint64_t size_ = 0;
};

class MemslotManager {
 public:
  explicit MemslotManager(MemslotApi& api) : api_(api) {}
  // Creates a slot with the lowest free id.
  [[nodiscard]] Result<Memslot> map(GuestPhysAddr gpa, std::uint64_t size, HostVirtAddr hva, std::uint32_t flags = 0);
  [[nodiscard]] std::size_t live() const { return live_; }

 private:
  friend class Memslot;
  void release(std::uint32_t id);
  MemslotApi& api_;
  // Freed ids, highest first: the lowest is at the back. A vector, so that
  // after the first few BAR moves no map or release allocates.
  std::vector<std::uint32_t> free_ids_;
  std::uint32_t next_id_ = 0;
  std::size_t live_ = 0;
};

// A guest-physical range something owns, for the R23 overlap checks.
struct GuestRange {
  GuestPhysAddr base;
  std::uint64_t size = 0;
  std::string owner;  // "RAM", "ECAM", "gpu0 BAR4", ...
  [[nodiscard]] bool overlaps(GuestPhysAddr b, std::uint64_t s) const { return b < base + size && base < b + s; }
};

// Where one BAR of a device currently decodes, as seen by the VMM.
struct BarClaim {
  BarIndex index;
  GuestPhysAddr base;
  std::uint64_t size = 0;
  bool mapped = false;  // a fake BAR whose [0, length) is a memslot
};

// A BAR that decodes nothing after the last sync, and why: decode off, never
// assigned, mid-probe, or refused (R21, R23).
struct UnplacedBar {
  BarIndex index;
  std::string reason;
};

// Keeps a device's BAR mappings in step with its config space, as a VMM
// does with a VFIO device: it knows the device only as a vfio::Function - the
// BAR registers through config space, each BAR's size and its mmap-able
// sparse areas (the fake BARs' memory, R16) through region info, mapped once
// through the fd region info brings. Call sync() after every config write and
// after reset. For each BAR that decodes (memory decode on, a valid address,
// not mid-probe: R21) it records a claim; a BAR with memory behind it gets a
// memslot for its sparse area [0, length) at its address (moved when the BAR
// moves, removed on decode-off or reset). The tail [length, BAR size) stays
// without a slot so guest accesses trap (R22). A BAR placed over guest RAM
// or fixed MMIO, over another BAR, or past the guest physical-address limit
// is refused and logged and gets no claim; the guest keeps running (R23).
// Host mappings are aligned for huge pages (R24); a guest placement that
// defeats them is logged.
class BarMapper {
 public:
  // Reads the device's region info and maps its sparse areas once.
  [[nodiscard]] static Result<std::unique_ptr<BarMapper>> create(std::string name, MemslotManager& slots,
                                                                 vfio::Function& device, GuestPhysAddr phys_limit,
                                                                 std::shared_ptr<spdlog::logger> log);

  // `fixed`: RAM and fixed MMIO; `others`: the claims of every other device.
  void sync(const std::vector<GuestRange>& fixed, const std::vector<GuestRange>& others);

  [[nodiscard]] const std::vector<BarClaim>& claims() const { return claims_; }
  // Every BAR with no claim after the last sync, with the reason.
  [[nodiscard]] const std::vector<UnplacedBar>& unplaced() const { return unplaced_; }
  // Appends this device's claims as ranges named "<name> BAR<i>" (what
  // another device's sync() takes as `others`).
  void append_ranges(std::vector<GuestRange>& out) const;
  // The claim containing `gpa`, if any.
  [[nodiscard]] const BarClaim* claim_at(GuestPhysAddr gpa) const;
  [[nodiscard]] std::uint64_t refusals() const { return refusals_; }
  [[nodiscard]] const std::string& name() const { return name_; }
  [[nodiscard]] vfio::Function& device() { return device_; }

 private:
  BarMapper(std::string name, MemslotManager& slots, vfio::Function& device, GuestPhysAddr phys_limit,
            std::shared_ptr<spdlog::logger> log);
  // The memory behind a BAR, from its region's sparse area and fd.
  struct Backing {
    std::uint64_t length = 0;  // the sparse area: [0, length) of the BAR
    sys::Mapping map;          // this process's mapping of it
  };
  std::string name_;
  MemslotManager& slots_;
  vfio::Function& device_;
  GuestPhysAddr phys_limit_;
  std::vector<std::uint64_t> bar_sizes_;  // by BAR index, from region info
  Backing backing_[kBarCount];
  std::shared_ptr<spdlog::logger> log_;
  std::vector<BarClaim> claims_;
  std::vector<UnplacedBar> unplaced_;
  Memslot slot_[kBarCount];  // by BAR index; only BARs with memory use theirs
  std::uint64_t refusals_ = 0;
  std::string last_refusal_[kBarCount];  // log each distinct refusal once
};

}  // namespace nvgrace::vm
