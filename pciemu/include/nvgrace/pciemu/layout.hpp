// How a Grace GPU's coherent device memory becomes guest BARs
// (nvgrace-model.md R5, R7-R10).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "nvgrace/common/checked.hpp"
#include "nvgrace/common/result.hpp"
#include "nvgrace/common/types.hpp"

namespace nvgrace::pciemu {

// R7.
inline constexpr std::uint64_t kResmemSize = 1 * GiB;
inline constexpr std::uint64_t kMemblockSize = 512 * MiB;
// R11.
inline constexpr BarIndex kResmemBarIndex{2};
inline constexpr BarIndex kUsememBarIndex{4};

enum class MemRole { usemem, resmem };

[[nodiscard]] constexpr std::string_view to_string(MemRole r) { return r == MemRole::usemem ? "usemem" : "resmem"; }

// One fake BAR and the device memory behind it.
struct MemRegion {
  MemRole role = MemRole::usemem;
  BarIndex bar_index;
  std::uint64_t host_base = 0;  // host physical address of the first byte
  std::uint64_t length = 0;     // bytes of real memory behind the BAR
  std::uint64_t bar_size = 0;   // power of two >= length
  bool cacheable = true;        // R19: usemem write-back, resmem write-combined

  // The unbacked part of the BAR, [length, bar_size): reads all-ones (R17, R22).
  [[nodiscard]] std::uint64_t tail() const { return bar_size - length; }
};

struct LayoutInput {
  std::uint64_t mem_base = 0;  // nvidia,gpu-mem-base-pa
  std::uint64_t mem_size = 0;  // nvidia,gpu-mem-size
  bool mig_hw_bug = false;     // R2
  // Host physical address width. 64 reproduces the kernel driver, which only
  // rejects what does not fit phys_addr_t; a smaller value models a CPU's PA size.
  unsigned phys_addr_bits = 64;
};

// Either fake BARs (usemem, and resmem with the MIG bug) or passthrough (R5).
struct Layout {
  bool passthrough = false;
  std::string reason;  // why passthrough; empty for fake BARs
  std::optional<MemRegion> usemem;
  std::optional<MemRegion> resmem;  // only with the MIG bug (R9, R10)
};

// Splits device memory per R7-R10. A missing-memory condition the kernel
// driver treats as "plain passthrough" (size 0, base outside the physical
// address range: R5) is a Layout with passthrough set and a reason. A memory
// description the driver would refuse to probe with (usemem rounding to 0,
// base + size wrapping, a BAR size that does not fit 64 bits) is an Error.
[[nodiscard]] Result<Layout> compute_layout(const LayoutInput& in);

}  // namespace nvgrace::pciemu
