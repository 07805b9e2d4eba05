#include "nvgrace/vfio/host/memory_type.hpp"

#include <sys/utsname.h>

namespace nvgrace::vfio::host {

std::string running_kernel_release() {
  utsname u{};
  if (::uname(&u) != 0) return "";  // dax_memory_type() then says it cannot tell
  return u.release;
}

}  // namespace nvgrace::vfio::host
