// A Linux release as uname(2) names it ("6.12.117+deb13-cloud-arm64"), for
// behaviour that changed in a release - KVM's stage-2 memory types (R33,
// R40) changed in 6.17. Parsing only; the caller reads uname.
#pragma once

#include <charconv>
#include <optional>
#include <string_view>

namespace nvgrace {

struct KernelVersion {
  unsigned major = 0;
  unsigned minor = 0;
  [[nodiscard]] bool at_least(unsigned want_major, unsigned want_minor) const {
    return major > want_major || (major == want_major && minor >= want_minor);
  }
};

// MAJOR[.MINOR] at the start of the release (a missing minor is 0);
// nullopt when it does not start with a number.
[[nodiscard]] inline std::optional<KernelVersion> parse_kernel_release(std::string_view release) {
  KernelVersion v;
  const char* end = release.data() + release.size();
  auto r = std::from_chars(release.data(), end, v.major);
  if (r.ec != std::errc{}) return std::nullopt;
  if (r.ptr != end && *r.ptr == '.') {
    r = std::from_chars(r.ptr + 1, end, v.minor);
    if (r.ec != std::errc{}) return std::nullopt;
  }
  return v;
}

}  // namespace nvgrace
