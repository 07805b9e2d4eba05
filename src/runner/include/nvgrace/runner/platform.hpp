// What an architecture adds to the minimal VMM, behind one interface: how the
// VM is opened (arm64: an IPA space sized for the guest plan's window, R32),
// where things are in guest physical memory, the boot state and the vCPU
// (x86: long mode; arm64: PSCI, SVE and the CPU model, R34-R36), what each
// exit means, and the architecture's own checks after the guest is done.
// The run loop that drives it is one, in machine.cpp; each architecture is
// one file, src/<arch>/platform.cpp, which defines make_platform().
#pragma once

#include <linux/kvm.h>

#include <cstdint>
#include <memory>
#include <string_view>

#include "nvgrace/common/result.hpp"
#include "nvgrace/runner/machine.hpp"
#include "nvgrace/runner/runner.hpp"
#include "nvgrace/vm/kvm.hpp"

namespace nvgrace::runner {

class Platform {
 public:
  virtual ~Platform() = default;
  [[nodiscard]] virtual std::string_view arch() const = 0;
  [[nodiscard]] virtual GuestMemLimits mem_limits() const = 0;
  // Refuses what this architecture cannot run (an x86 --cpu model), names
  // the CPU model the run uses ("host" on x86).
  [[nodiscard]] virtual Result<std::string> check(const RunOptions& opts) = 0;
  // The VM, with what the run needs, and where things are in it.
  [[nodiscard]] virtual Result<vm::Kvm> open_vm(const RunOptions& opts) = 0;
  [[nodiscard]] virtual MemoryMap memory_map(const vm::Kvm& kvm, const RunOptions& opts) const = 0;
  [[nodiscard]] virtual GuestPhysAddr boot_info_gpa() const = 0;
  // The guest image and its first page tables in RAM; the vCPU created and
  // set to start the guest.
  [[nodiscard]] virtual Result<vm::Vcpu> boot(Machine& m, vm::Kvm& kvm) = 0;
  // One exit of the vCPU.
  [[nodiscard]] virtual Result<ExitAction> exit(Machine& m, kvm_run& run) = 0;
  // After the guest finished (not in benchmark mode): the architecture's own
  // host checks.
  virtual void after(Machine& m, const vm::Vcpu& vcpu) {
    (void)m;
    (void)vcpu;
  }
};

// This build's architecture (src/x86_64/platform.cpp or src/aarch64/platform.cpp).
[[nodiscard]] std::unique_ptr<Platform> make_platform();

}  // namespace nvgrace::runner
