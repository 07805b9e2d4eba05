// A minimal x86-64 VMM that runs nvgrace's built-in guest against emulated
// Grace GPUs (nvgrace-model.md R11-R13, R17, R20-R24): RAM, a PCI host bridge
// reachable through configuration mechanism #1 (ports 0xCF8/0xCFC) and ECAM,
// the GPUs' BARs mapped through KVM memslots as the guest programs them, and
// a debug port the guest reports on.
//
// Thread-safety: one run at a time per call; the vCPU loop is single-threaded.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "nvgrace/common/result.hpp"

namespace nvgrace::runner {

// Guest RAM limits: at least room for the guest's tables, image and stack;
// at most up to the ECAM window at 0xB0000000; whole 2 MiB pages.
inline constexpr std::uint64_t kMinGuestMem = 32ull << 20;
inline constexpr std::uint64_t kMaxGuestMem = 0xB0000000ull;
inline constexpr std::uint64_t kGuestMemGranule = 2ull << 20;

struct RunOptions {
  std::string profile = "gh200";
  unsigned count = 1;
  std::uint64_t guest_mem = 64ull << 20;
  std::chrono::seconds timeout{60};
  bool trace = false;        // log every exit
  bool bench = false;        // run the guest's benchmark instead of its checks
  unsigned bench_mib = 4;    // every guest store costs ~11,000 cycles on a paravirtual KVM: keep the default short
  unsigned bench_iters = 20000;
};

// The guest RAM a benchmark of `bench_mib` MiB needs (its RAM buffer starts
// at 16 MiB), in whole 2 MiB pages.
[[nodiscard]] std::uint64_t bench_guest_mem(unsigned bench_mib);

struct ExitCounts {
  std::uint64_t io = 0, mmio = 0, config = 0, unclaimed = 0, total = 0;
};

struct RunReport {
  unsigned guest_failures = 0;
  unsigned host_failures = 0;
  unsigned checks = 0;          // lines reported, guest and host
  ExitCounts exits;
  std::uint64_t refusals = 0;   // BAR placements refused (R23)
  std::uint64_t unplaced = 0;   // BARs decoding nothing at the end, each reported with its reason
  std::uint64_t slots_live = 0; // memslots at the end (RAM included)
  std::vector<std::pair<std::string, std::uint64_t>> bench;  // name, cycles
  [[nodiscard]] bool passed() const { return guest_failures == 0 && host_failures == 0; }
};

// Runs the guest; every report line (guest checks, host checks) goes to
// `on_line` as it happens. Errors: KVM unavailable (err ENODEV or the open
// errno), a guest that stops unexpectedly (with a register dump), a timeout.
[[nodiscard]] Result<RunReport> run(const RunOptions& opts, const std::function<void(const std::string&)>& on_line);

}  // namespace nvgrace::runner
