// A minimal VMM that runs nvgrace's built-in guest against emulated Grace
// GPUs (nvgrace-model.md R11-R13, R17, R20-R24): RAM, a PCI host bridge with
// the GPUs on bus 0 behind ECAM (and, on x86, configuration mechanism #1), the
// GPUs' BARs mapped through KVM memslots as the guest programs them, and a
// report channel. The shared machine is machine.hpp; what each architecture
// adds is in x86_64/ (long mode, port I/O) and aarch64/ (IPA size R32, vCPU
// and CPU model R33-R36, PSCI).
//
// Thread-safety: one run at a time per call; the vCPU loop is single-threaded.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "nvgrace/common/result.hpp"

namespace nvgrace::runner {

// Guest RAM limits on this architecture (x86: below the ECAM window at
// 0xB0000000; arm64: RAM from 1 GiB, one 1 GiB table of blocks); whole 2 MiB
// pages.
struct GuestMemLimits {
  std::uint64_t min = 32ull << 20;
  std::uint64_t max = 0;
  std::uint64_t granule = 2ull << 20;
};
[[nodiscard]] GuestMemLimits guest_mem_limits();
// "x86_64" or "aarch64": the architecture this VMM was built for.
[[nodiscard]] std::string_view arch_name();

struct RunOptions {
  std::string profile = "gh200";
  unsigned count = 1;
  std::uint64_t guest_mem = 64ull << 20;
  std::chrono::seconds timeout{60};
  // arm64: the vCPU's CPU model (R34-R36): "host", "grace-v1", with
  // ",feat_FIELD=VALUE" overrides (cpu/model.hpp). x86 takes "host".
  std::string cpu = "host";
  bool trace = false;        // log every exit
  bool bench = false;        // run the guest's benchmark instead of its checks
  // A paravirtual KVM that emulates every guest instruction (this project's
  // CI machine) makes each store cost thousands of cycles: keep it short.
  unsigned bench_mib = 4;
  unsigned bench_iters = 20000;
};

// The guest RAM a benchmark of `bench_mib` MiB needs (its RAM buffer starts
// 16 MiB into RAM), in whole 2 MiB pages.
[[nodiscard]] std::uint64_t bench_guest_mem(unsigned bench_mib);

struct ExitCounts {
  std::uint64_t io = 0, mmio = 0, config = 0, unclaimed = 0, total = 0;
};

struct RunReport {
  std::string arch;              // "x86_64", "aarch64"
  unsigned phys_bits = 0;        // guest physical (arm64: IPA) bits the VM was given
  unsigned host_phys_bits = 0;   // the most the host could give
  std::string cpu;               // the CPU model as resolved ("host" on x86)
  unsigned guest_failures = 0;
  unsigned host_failures = 0;
  unsigned checks = 0;          // lines reported, guest and host
  ExitCounts exits;
  std::uint64_t refusals = 0;   // BAR placements refused (R23)
  std::uint64_t unplaced = 0;   // BARs decoding nothing at the end, each reported with its reason
  std::uint64_t slots_live = 0; // memslots at the end (RAM included)
  std::vector<std::pair<std::string, std::uint64_t>> bench;  // name, cycles (arm64: counter ticks)
  [[nodiscard]] bool passed() const { return guest_failures == 0 && host_failures == 0; }
};

// Runs the guest; every report line (guest checks, host checks, notes) goes
// to `on_line` as it happens. Errors: KVM unavailable (err ENODEV or the open
// errno), a host that cannot give what the run needs (ERANGE: the IPA size;
// EINVAL: the CPU model, each field named), a guest that stops unexpectedly
// (with a register dump in the log), a timeout.
[[nodiscard]] Result<RunReport> run(const RunOptions& opts, const std::function<void(const std::string&)>& on_line);

}  // namespace nvgrace::runner
