// What a guest needs to hold Grace GPUs: the 64-bit MMIO space their BARs
// take, and the NUMA nodes the guest driver expects (nvgrace-model.md R1,
// R10, R25). How the plan is written for one VMM is targets.hpp's business.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "nvgrace/common/result.hpp"
#include "nvgrace/pciemu/bars.hpp"

namespace nvgrace::plan {

using pciemu::GuestBar;

// The 64-bit prefetchable window of one PCIe root port holding one GPU.
struct PortWindow {
  std::uint64_t size = 0;    // BARs packed naturally aligned, rounded to 1 MiB
  std::uint64_t align = 0;   // the largest BAR (at least 1 MiB)
  std::uint64_t offset = 0;  // where the window lands in the guest's 64-bit MMIO space
};

struct GuestPlan {
  std::vector<PortWindow> windows;  // one per GPU, in input order
  std::uint64_t mmio64_bytes = 0;   // end of the last window
  std::uint64_t highmem_mmio_size = 0;  // smallest power of two >= max(512 GiB, mmio64_bytes)
  unsigned guest_numa_nodes = 1;    // the guest's own memory nodes, 0..guest_numa_nodes-1
  // The generic-initiator NUMA node ids of each GPU, in input order: 8 per
  // GPU, consecutive, after the memory nodes (R25). How they are written
  // for a VMM is targets.hpp's business.
  std::vector<std::vector<unsigned>> gi_nodes;
};

// QEMU's arm virt machine default 64-bit MMIO window (R25).
inline constexpr std::uint64_t kQemuDefaultHighmemMmio = 512 * GiB;
// Generic-initiator NUMA nodes per Grace GPU (R25).
inline constexpr unsigned kGiNodesPerGpu = 8;

// Each GPU sits behind its own root port; each BAR is aligned to its size and
// each port's window to its largest BAR. Windows are placed largest alignment
// first, which is the tightest packing for power-of-two windows. NUMA nodes for
// the generic initiators are numbered after the guest's `guest_numa_nodes`
// memory nodes. Limits of a particular VMM (QEMU's 128 node ids) are checked
// when the plan is written for it (targets.hpp).
[[nodiscard]] Result<GuestPlan> plan_guest(std::span<const std::vector<GuestBar>> gpus, unsigned guest_numa_nodes);

}  // namespace nvgrace::plan
