#include "nvgrace/plan/guest_plan.hpp"

#include <algorithm>
#include <limits>
#include <numeric>

#include <fmt/format.h>

#include "nvgrace/common/size.hpp"

namespace nvgrace::plan {

namespace {

// PCI-to-PCI bridge memory windows have 1 MiB granularity (PCI-to-PCI Bridge
// Architecture Specification, section 3.2.5.8).
constexpr std::uint64_t kBridgeGranule = 1 * MiB;

Result<PortWindow> window_for(const std::vector<GuestBar>& bars) {
  std::vector<std::uint64_t> sizes;
  for (const auto& b : bars) sizes.push_back(b.size);
  std::sort(sizes.rbegin(), sizes.rend());
  std::uint64_t end = 0;
  for (auto s : sizes) {
    if (!is_pow2(s)) return fail("BAR size {:#x} is not a power of two", s);
    auto at = align_up(end, s);
    auto next = at ? checked_add(*at, s) : std::nullopt;
    if (!next) return fail("BARs of one GPU overflow the 64-bit address space");
    end = *next;
  }
  auto size = align_up(end, kBridgeGranule);
  if (!size) return fail("root-port window overflows the 64-bit address space");
  const std::uint64_t align = std::max(sizes.empty() ? 0 : sizes.front(), kBridgeGranule);
  return PortWindow{*size, align, 0};
}

}  // namespace

Result<GuestPlan> plan_guest(std::span<const std::vector<GuestBar>> gpus, unsigned guest_numa_nodes) {
  GuestPlan plan;
  for (const auto& bars : gpus) {
    auto w = window_for(bars);
    if (!w) return fail(w.error());
    plan.windows.push_back(*w);
  }

  // Place the windows, largest alignment first.
  std::vector<std::size_t> order(plan.windows.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(),
                   [&](std::size_t a, std::size_t b) { return plan.windows[a].align > plan.windows[b].align; });
  std::uint64_t end = 0;
  for (auto i : order) {
    auto& w = plan.windows[i];
    auto at = align_up(end, w.align);
    auto next = at ? checked_add(*at, w.size) : std::nullopt;
    if (!next) return fail("the GPUs' BARs overflow the 64-bit address space");
    w.offset = *at;
    end = *next;
  }
  plan.mmio64_bytes = end;
  auto highmem = next_pow2(std::max(end, kQemuDefaultHighmemMmio));
  if (!highmem) return fail("64-bit MMIO need {:#x} has no power-of-two window", end);
  plan.highmem_mmio_size = *highmem;

  plan.guest_numa_nodes = guest_numa_nodes;
  unsigned node = guest_numa_nodes;
  for (std::size_t i = 0; i < gpus.size(); ++i) {
    auto& nodes = plan.gi_nodes.emplace_back();
    for (unsigned k = 0; k < kGiNodesPerGpu; ++k) {
      if (node == std::numeric_limits<unsigned>::max()) return fail("NUMA node ids overflow");
      nodes.push_back(node++);
    }
  }
  return plan;
}

}  // namespace nvgrace::plan
