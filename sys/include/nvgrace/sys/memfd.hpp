// Anonymous memory files (memfd_create): guest RAM, emulated device memory,
// register files and state that must be handed to another process (over a
// socket, or kept by a keeper across a restart) with the memory in them.
#pragma once

#include <cstdint>
#include <string_view>

#include "nvgrace/common/result.hpp"
#include "nvgrace/sys/fd.hpp"

namespace nvgrace::sys {

// A close-on-exec memfd of `size` bytes (sparse: pages cost nothing until
// touched), named `name` in /proc/*/maps. Errors name the step and the size.
[[nodiscard]] Result<UniqueFd> make_memfd(std::string_view name, std::uint64_t size);

// An eventfd (close-on-exec; `nonblock` adds EFD_NONBLOCK).
[[nodiscard]] Result<UniqueFd> make_eventfd(bool nonblock);

}  // namespace nvgrace::sys
