// The part of the minimal VMM every architecture shares: guest RAM, bus 0
// with a host bridge and the emulated GPUs (the variant over an emulated
// function, as nvgrace serve has it), their BARs kept in step with the
// config space through memslots (R21-R24), the trapped accesses (R20, R22),
// the guest's report, the host's own checks afterwards, and the vCPU loop
// with its deadline. An architecture (platform.hpp) opens the VM, builds the
// boot state and the vCPU, and turns its exits into calls here.
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "nvgrace/common/types.hpp"
#include "nvgrace/guest/protocol.h"
#include "nvgrace/runner/runner.hpp"
#include "nvgrace/vfio/variant/variant.hpp"
#include "nvgrace/vm/kvm.hpp"
#include "nvgrace/vm/memslots.hpp"

namespace spdlog {
class logger;
}

namespace nvgrace::runner {

// Where things are in guest physical memory.
struct MemoryMap {
  GuestPhysAddr ram_base;
  GuestPhysAddr ecam_base;
  std::uint64_t ecam_size = 0;  // bus 0 decodes; other buses master-abort
  GuestPhysAddr mmio64_base, mmio64_limit;  // where the guest assigns 64-bit BARs
  std::vector<vm::GuestRange> fixed_mmio;      // the architecture's own (a report page)
};

// What an architecture's exit handler decided.
enum class ExitAction { resume, finished };

class Machine {
 public:
  Machine(vm::Kvm& kvm, const RunOptions& opts, const std::function<void(const std::string&)>& on_line,
          std::chrono::steady_clock::time_point deadline, MemoryMap map);

  // Guest RAM (a memfd, one memslot), the GPUs, and the boot information at
  // `boot_info_gpa` filled with everything but the architecture's part.
  [[nodiscard]] Result<void> setup(GuestPhysAddr boot_info_gpa);

  // A pointer into guest RAM; `gpa` must lie in RAM.
  template <class T>
  [[nodiscard]] T* guest(GuestPhysAddr gpa) { return reinterpret_cast<T*>(ram_.data() + (gpa - map_.ram_base)); }
  [[nodiscard]] nvg_boot_info& boot_info() { return *guest<nvg_boot_info>(boot_info_gpa_); }
  [[nodiscard]] const MemoryMap& map() const { return map_; }

  // Config space of bus 0, as the guest reaches it.
  std::uint32_t cfg_read(unsigned devfn, unsigned reg, unsigned len);
  void cfg_write(unsigned devfn, unsigned reg, unsigned len, std::uint32_t value);
  // An MMIO exit outside the architecture's own pages: ECAM, the trapped part
  // of a BAR (R20, R22), or nothing (master abort: reads all-ones).
  void mmio(GuestPhysAddr gpa, std::uint8_t* data, unsigned len, bool write);

  // The guest's report channel.
  void report_char(char c);
  void report_done(std::uint32_t failures);
  [[nodiscard]] bool done() const { return done_; }

  // A report line (guest, host or note), counted and passed on.
  void line(const std::string& text);
  // "ok   host <what>" / "FAIL host <what>".
  void host_check(bool ok, const std::string& what);

  // Runs the vCPU until `handle` says the guest finished, the deadline
  // passes, or something fails; an unexpected stop logs the registers.
  [[nodiscard]] Result<void> run_vcpu(vm::Vcpu& vcpu, const std::function<Result<ExitAction>(kvm_run&)>& handle);
  [[nodiscard]] Result<void> check_deadline(std::string_view doing) const;
  // The error for an exit no architecture's handler expects (internal error,
  // failed entry, anything else): each handler's default case.
  [[nodiscard]] static Result<ExitAction> unexpected_exit(const kvm_run& run);

  // After the guest is done: the host's checks of device memory and memslots
  // (checks mode), a note for every BAR left unmapped, the counters.
  [[nodiscard]] RunReport finish();
  [[nodiscard]] RunReport& report() { return report_; }
  [[nodiscard]] std::shared_ptr<spdlog::logger> log() const { return log_; }
  [[nodiscard]] const RunOptions& options() const { return opts_; }

 private:
  struct Gpu {
    std::string name;
    unsigned devfn = 0;
    std::unique_ptr<vfio::Variant> device;
    std::unique_ptr<vm::BarMapper> mapper;
  };
  Result<void> setup_ram();
  Result<void> setup_gpus(nvg_boot_info& bi);
  void sync_bars();
  void host_checks();

  vm::Kvm& kvm_;
  vm::MemslotManager slots_;
  RunOptions opts_;
  const std::function<void(const std::string&)>& on_line_;
  std::shared_ptr<spdlog::logger> log_;
  // --timeout bounds the whole run, set-up included: checked between GPUs
  // while setting up, after every exit, and on each watchdog tick.
  std::chrono::steady_clock::time_point deadline_;
  MemoryMap map_;
  std::vector<vm::GuestRange> fixed_;   // RAM, ECAM and map_.fixed_mmio: what no BAR may cover
  std::vector<vm::GuestRange> others_;  // sync_bars' scratch: the other GPUs' claims
  GuestPhysAddr boot_info_gpa_;
  sys::UniqueFd ram_fd_;
  sys::Mapping ram_;
  vm::Memslot ram_slot_;
  pciemu::ConfigSpace host_bridge_;
  std::vector<Gpu> gpus_;
  std::string text_;
  bool done_ = false;
  RunReport report_;
};


}  // namespace nvgrace::runner
