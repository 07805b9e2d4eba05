// A KVM virtual machine and one vCPU, started directly in 64-bit long mode.
// RAII throughout: fds, the kvm_run mapping. Thread-safety: one thread drives
// the vCPU; nothing here is shared.
#pragma once

#include <linux/kvm.h>

#include <cstdint>
#include <string>

#include "nvgrace/common/result.hpp"
#include "nvgrace/vfio/fd.hpp"
#include "vm/memslots.hpp"

namespace nvgrace::vm {

// Whether /dev/kvm can be used, and why not.
[[nodiscard]] Result<void> kvm_available();

class Kvm final : public MemslotApi {
 public:
  [[nodiscard]] static Result<Kvm> open();
  Kvm(Kvm&&) = default;
  Kvm& operator=(Kvm&&) = default;

  Result<void> set_user_memory_region(std::uint32_t slot, std::uint64_t gpa, std::uint64_t size, std::uint64_t hva,
                                      std::uint32_t flags) override;
  [[nodiscard]] std::uint32_t max_slots() const override { return max_slots_; }
  // The guest's physical address width from KVM's supported CPUID (leaf 0x80000008).
  [[nodiscard]] unsigned phys_bits() const { return phys_bits_; }
  [[nodiscard]] int kvm_fd() const { return kvm_.get(); }
  [[nodiscard]] int vm_fd() const { return vm_.get(); }
  [[nodiscard]] std::uint64_t ioctls() const { return ioctls_; }

 private:
  Kvm() = default;
  vfio::UniqueFd kvm_, vm_;
  std::uint32_t max_slots_ = 32;
  unsigned phys_bits_ = 36;
  std::uint64_t ioctls_ = 0;
};

// Where the vCPU starts: long mode, paging on with the page tables at `cr3`,
// a flat 64-bit code segment from the GDT at `gdt` (in guest memory).
struct LongModeStart {
  std::uint64_t cr3 = 0;
  std::uint64_t gdt = 0;
  std::uint16_t gdt_limit = 0;
  std::uint64_t rip = 0;
  std::uint64_t rsp = 0;
  std::uint64_t rdi = 0;  // first argument of the guest's entry point
};

class Vcpu {
 public:
  [[nodiscard]] static Result<Vcpu> create(const Kvm& kvm, const LongModeStart& start);
  // KVM_RUN; EINTR (a signal) is returned as an error with err == EINTR.
  [[nodiscard]] Result<void> run();
  [[nodiscard]] kvm_run& state() { return *run_; }
  [[nodiscard]] std::string register_dump() const;

 private:
  vfio::UniqueFd fd_;
  vfio::Mapping run_map_;
  kvm_run* run_ = nullptr;
};

}  // namespace nvgrace::vm
