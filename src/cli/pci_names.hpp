// Device names from the pci.ids database, through libpci (pciutils).
#pragma once

#include <cstdint>
#include <span>
#include <string>

namespace nvgrace::cli {

// The line `lspci` prints for a device, e.g.
// "01:00.0 3D controller: NVIDIA Corporation Device 2342 (rev a1)".
[[nodiscard]] std::string lspci_device_line(const std::string& slot, std::span<const std::uint8_t> config);

}  // namespace nvgrace::cli
