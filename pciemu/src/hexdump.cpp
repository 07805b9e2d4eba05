#include "nvgrace/pciemu/hexdump.hpp"

#include <fmt/format.h>

namespace nvgrace::pciemu {

std::string lspci_hex_lines(std::span<const std::uint8_t> config) {
  std::string out;
  out.reserve(config.size() * 3 + config.size() / 16 * 6);
  for (std::size_t i = 0; i < config.size(); ++i) {
    if (i % 16 == 0) out += fmt::format("{:02x}:", i);
    out += fmt::format(" {:02x}", config[i]);
    if (i % 16 == 15) out += '\n';
  }
  if (config.size() % 16 != 0) out += '\n';
  return out;
}

}  // namespace nvgrace::pciemu
