#include "json.hpp"

#include <cstring>

#include <fmt/format.h>

namespace nvgrace::cli {

std::string hex_id(std::uint16_t id) { return fmt::format("{:#06x}", id); }

std::string_view to_string(CacheAttr c) {
  switch (c) {
    case CacheAttr::write_back: return "write-back";
    case CacheAttr::write_combined: return "write-combined";
    case CacheAttr::uncached: break;
  }
  return "uncached";
}

CacheAttr cache_attr(vfio::CacheMode mode) {
  return mode == vfio::CacheMode::write_back ? CacheAttr::write_back : CacheAttr::write_combined;
}

std::string errno_name(int err) {
  const char* n = ::strerrorname_np(err);
  return n ? n : fmt::format("errno {}", err);
}

}  // namespace nvgrace::cli
