// Config space in the hex format of `lspci -xxxx`, which `lspci -F FILE` reads
// back (pciutils lib/dump.c): 16 bytes a line, each line led by its offset.
#pragma once

#include <cstdint>
#include <span>
#include <string>

namespace nvgrace::pciemu {

// The hex lines only; the caller writes the device line before them.
[[nodiscard]] std::string lspci_hex_lines(std::span<const std::uint8_t> config);

}  // namespace nvgrace::pciemu
