#include "pci_names.hpp"

#include <fmt/format.h>
#include <linux/pci_regs.h>

extern "C" {
#include <pci/pci.h>
}

namespace nvgrace::cli {

std::string lspci_device_line(const std::string& slot, std::span<const std::uint8_t> config) {
  auto byte = [&](std::size_t off) -> unsigned { return off < config.size() ? config[off] : 0xFF; };
  const unsigned vendor = byte(PCI_VENDOR_ID) | byte(PCI_VENDOR_ID + 1) << 8;
  const unsigned device = byte(PCI_DEVICE_ID) | byte(PCI_DEVICE_ID + 1) << 8;
  const unsigned cls = byte(PCI_CLASS_DEVICE) | byte(PCI_CLASS_DEVICE + 1) << 8;
  const unsigned rev = byte(PCI_REVISION_ID);

  // libpci needs an access method before name look-ups; the dump method on an
  // empty file touches no hardware.
  pci_access* pacc = pci_alloc();
  pacc->method = PCI_ACCESS_DUMP;
  pci_set_param(pacc, const_cast<char*>("dump.name"), const_cast<char*>("/dev/null"));
  pci_init(pacc);
  char class_name[256];
  char dev_name[512];
  std::string line = fmt::format(
      "{} {}: {}", slot, pci_lookup_name(pacc, class_name, sizeof class_name, PCI_LOOKUP_CLASS, cls),
      pci_lookup_name(pacc, dev_name, sizeof dev_name, PCI_LOOKUP_VENDOR | PCI_LOOKUP_DEVICE, vendor, device));
  pci_cleanup(pacc);
  if (rev != 0) line += fmt::format(" (rev {:02x})", rev);
  return line;
}

}  // namespace nvgrace::cli
