#include "nvgrace/vfio/host/memory_type.hpp"

namespace nvgrace::vfio::host {

// x86: /dev/mem opened without O_SYNC maps a range outside System RAM with the
// type PAT and the MTRRs give it - write-back for memory kept from the kernel
// - and KVM's EPT/NPT follows the host's type. resmem gets write-back too, not
// write-combined: no Grace host is x86, this is the stand-in of the tests.
const DevmemMemoryType& devmem_memory_type() {
  static constexpr DevmemMemoryType t{
      true, "write-back", "write-back (not write-combined: x86 stands in for a Grace host here)",
      "x86 /dev/mem without O_SYNC keeps the range's PAT/MTRR type", ""};
  return t;
}

// x86 KVM takes a device-DAX page's type from the host's mapping (PAT):
// write-back, on every kernel.
DaxMemoryType dax_memory_type(std::string_view) { return {true, "", ""}; }

}  // namespace nvgrace::vfio::host
