#include "nvgrace/pciemu/layout.hpp"

#include <fmt/format.h>

namespace nvgrace::pciemu {

Result<Layout> compute_layout(const LayoutInput& in) {
  if (in.phys_addr_bits == 0 || in.phys_addr_bits > 64)
    return fail("physical address width {} is outside 1..64 bits", in.phys_addr_bits);
  const std::uint64_t pa_max = in.phys_addr_bits == 64 ? ~std::uint64_t{0} : (std::uint64_t{1} << in.phys_addr_bits) - 1;

  // R5: these mean "no coherent memory to present": plain passthrough.
  if (in.mem_size == 0)
    return Layout{true, "nvidia,gpu-mem-size is 0 (C2C link not up): passthrough without fake BARs (R5)", {}, {}};
  if (in.mem_base > pa_max)
    return Layout{true,
                  fmt::format("nvidia,gpu-mem-base-pa {:#x} is above the {}-bit physical address range: "
                              "passthrough without fake BARs (R5)",
                              in.mem_base, in.phys_addr_bits),
                  {}, {}};

  auto end = checked_add(in.mem_base, in.mem_size - 1);  // last byte; size >= 1 here
  if (!end) return fail("device memory {:#x} + {:#x} wraps past 2^64", in.mem_base, in.mem_size);
  if (*end > pa_max)
    return fail("device memory [{:#x}, {:#x}] ends above the {}-bit physical address range", in.mem_base, *end,
                in.phys_addr_bits);

  // R7, R8: usemem is what is left after the reserved part; its BAR size is
  // taken before the R9 rounding.
  const std::uint64_t resmem_size = in.mig_hw_bug ? kResmemSize : 0;
  auto use_len = checked_sub(in.mem_size, resmem_size);
  if (!use_len)
    return fail("device memory size {:#x} is smaller than the {:#x} bytes reserved for resmem (R7)", in.mem_size,
                resmem_size);
  if (*use_len == 0) return fail("device memory size {:#x} leaves no usemem after resmem (R8)", in.mem_size);
  auto use_bar = next_pow2(*use_len);
  if (!use_bar) return fail("usemem length {:#x} needs a BAR larger than 2^63 (R8)", *use_len);

  Layout out;
  out.usemem = MemRegion{MemRole::usemem, kUsememBarIndex, in.mem_base, *use_len, *use_bar, true};
  if (!in.mig_hw_bug) return out;  // R10: no resmem, BAR2 stays the device's own

  // R9: usemem rounds down to the memory-block size; resmem takes the rest.
  const std::uint64_t rounded = align_down(*use_len, kMemblockSize);
  if (rounded == 0)
    return fail("usemem length {:#x} rounds down to 0 at the {:#x}-byte memory block size: device unusable (R9)",
                *use_len, kMemblockSize);
  out.usemem->length = rounded;
  auto res_base = checked_add(in.mem_base, rounded);
  auto res_len = checked_sub(in.mem_size, rounded);
  if (!res_base || !res_len) return fail("resmem placement overflows (R9)");
  auto res_bar = next_pow2(*res_len);
  if (!res_bar) return fail("resmem length {:#x} needs a BAR larger than 2^63 (R9)", *res_len);
  out.resmem = MemRegion{MemRole::resmem, kResmemBarIndex, *res_base, *res_len, *res_bar, false};
  return out;
}

}  // namespace nvgrace::pciemu
