// A KVM virtual machine and its vCPUs, the parts every architecture shares.
// What differs lives beside it: x86_64/ (long mode, CPUID, port I/O) and
// aarch64/ (IPA size R32, vCPU init, SVE R34, ID registers R36).
// RAII throughout: fds, the kvm_run mapping. Thread-safety: one thread drives
// a vCPU; nothing here is shared.
#pragma once

#include <linux/kvm.h>

#include <cstdint>
#include <string>

#include "nvgrace/common/result.hpp"
#include "nvgrace/sys/fd.hpp"
#include "nvgrace/vm/memslots.hpp"

namespace nvgrace::vm {

// Whether /dev/kvm can be used, and why not.
[[nodiscard]] Result<void> kvm_available();

// The machine type KVM_CREATE_VM takes and the guest physical-address width
// it gives. Per architecture (vm/src/x86_64/vcpu.cpp, vm/src/aarch64/vcpu.cpp):
// x86 reads the width from CPUID and has one type; arm64 sizes the IPA space
// to cover `phys_needed` (R32) and refuses a host whose limit is smaller.
struct VmShape {
  unsigned long type = 0;
  unsigned phys_bits = 0;       // guest physical addresses are below 2^phys_bits
  unsigned host_limit_bits = 0; // the most this host can give
};
// `phys_needed`: the highest guest physical address used, plus one (0: no
// requirement, the architecture's default).
[[nodiscard]] Result<VmShape> vm_shape(int kvm_fd, std::uint64_t phys_needed);

class Kvm final : public MemslotApi {
 public:
  [[nodiscard]] static Result<Kvm> open(std::uint64_t phys_needed = 0);
  Kvm(Kvm&&) = default;
  Kvm& operator=(Kvm&&) = default;

  Result<void> set_user_memory_region(std::uint32_t slot, GuestPhysAddr gpa, std::uint64_t size, HostVirtAddr hva,
                                      std::uint32_t flags) override;
  [[nodiscard]] std::uint32_t max_slots() const override { return max_slots_; }
  [[nodiscard]] const VmShape& shape() const { return shape_; }
  [[nodiscard]] unsigned phys_bits() const { return shape_.phys_bits; }
  // KVM_CHECK_EXTENSION on /dev/kvm and on the VM (some capabilities answer
  // only on the VM fd, e.g. arm64's cacheable PFNMAP, R33). Negative: errno.
  [[nodiscard]] int check_extension(long cap) const;
  [[nodiscard]] int check_vm_extension(long cap) const;
  [[nodiscard]] int kvm_fd() const { return kvm_.get(); }
  [[nodiscard]] int vm_fd() const { return vm_.get(); }
  [[nodiscard]] std::uint64_t ioctls() const { return ioctls_; }

 private:
  Kvm() = default;
  sys::UniqueFd kvm_, vm_;
  std::uint32_t max_slots_ = 32;
  VmShape shape_;
  std::uint64_t ioctls_ = 0;
};

// A vCPU: its fd and the shared kvm_run page. How it starts is set by the
// architecture's code (nvgrace/vm/x86_64/vcpu.hpp, nvgrace/vm/aarch64/vcpu.hpp).
class Vcpu {
 public:
  [[nodiscard]] static Result<Vcpu> create(const Kvm& kvm, unsigned id);
  // KVM_RUN; EINTR (a signal) is returned as an error with err == EINTR.
  [[nodiscard]] Result<void> run();
  [[nodiscard]] kvm_run& state() { return *run_; }
  [[nodiscard]] int fd() const { return fd_.get(); }
  // The registers that matter for a stopped guest, for the log (per
  // architecture).
  [[nodiscard]] std::string register_dump() const;

 private:
  sys::UniqueFd fd_;
  sys::Mapping run_map_;
  kvm_run* run_ = nullptr;
};

}  // namespace nvgrace::vm
