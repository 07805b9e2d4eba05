// The JSON vocabulary every command shares (docs/json.md): ids as the
// conventional hex strings ("0x2342"), the cache attribute of a mapping as a
// string ("write-back", "write-combined", "uncached"), errno values by name.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "nvgrace/vfio/variant/memory.hpp"

namespace nvgrace::cli {

// "0x2342": four lower-case hex digits, as lspci and the kernel print ids.
[[nodiscard]] std::string hex_id(std::uint16_t id);

// How a mapping of a region must be made (R19). Device BARs that nvgrace
// traps, and anything not backed by memory, are "uncached".
enum class CacheAttr { write_back, write_combined, uncached };
[[nodiscard]] std::string_view to_string(CacheAttr c);
[[nodiscard]] CacheAttr cache_attr(vfio::CacheMode mode);

// "EINVAL" for EINVAL, "errno 1234" for a value without a name.
[[nodiscard]] std::string errno_name(int err);

}  // namespace nvgrace::cli
