#include "nvgrace/pciemu/device_config.hpp"

#include <linux/pci_regs.h>

#include "nvgrace/common/checked.hpp"
#include "nvgrace/pciemu/capabilities.hpp"
#include "nvgrace/pciemu/identity.hpp"
#include "nvgrace/pciemu/mig.hpp"

namespace nvgrace::pciemu {
namespace {

using U16 = std::uint16_t;

constexpr U16 at(U16 base, unsigned off) { return static_cast<U16>(base + off); }

// Type-0 header (PCI Local Bus 3.0, section 6.1; PCIe 6.0, section 7.5.1).
void header_rows(const DeviceConfigParams& p, std::vector<RegDef>& t) {
  t.push_back({PCI_VENDOR_ID, 2, kNvidiaVendorId, 0, 0, "Vendor ID"});
  t.push_back({PCI_DEVICE_ID, 2, p.device_id, 0, 0, "Device ID"});
  t.push_back({PCI_COMMAND, 2, 0,
               PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER | PCI_COMMAND_PARITY | PCI_COMMAND_SERR |
                   PCI_COMMAND_INTX_DISABLE,
               0, "Command"});
  // R15 "improve": the error bits of Status are write-1-to-clear.
  t.push_back({PCI_STATUS, 2, PCI_STATUS_CAP_LIST, 0,
               PCI_STATUS_PARITY | PCI_STATUS_SIG_TARGET_ABORT | PCI_STATUS_REC_TARGET_ABORT |
                   PCI_STATUS_REC_MASTER_ABORT | PCI_STATUS_SIG_SYSTEM_ERROR | PCI_STATUS_DETECTED_PARITY,
               "Status"});
  // Class 0x0302: display controller, 3D controller; prog-if 0.
  t.push_back({PCI_CLASS_REVISION, 4, 0x03020000u | cfg::kRevision, 0, 0, "Class code / Revision ID"});
  t.push_back({PCI_CACHE_LINE_SIZE, 1, 0, 0xFF, 0, "Cache Line Size"});
  t.push_back({PCI_SUBSYSTEM_VENDOR_ID, 2, p.subsystem_vendor, 0, 0, "Subsystem Vendor ID"});
  t.push_back({PCI_SUBSYSTEM_ID, 2, p.subsystem_id, 0, 0, "Subsystem ID"});
  t.push_back({PCI_CAPABILITY_LIST, 1, cfg::kPmCap, 0, 0, "Capabilities Pointer"});
  t.push_back({PCI_INTERRUPT_LINE, 1, 0xFF, 0xFF, 0, "Interrupt Line"});
  t.push_back({PCI_INTERRUPT_PIN, 1, 1, 0, 0, "Interrupt Pin (INTA)"});

  // BARs (R11, R12): 64-bit prefetchable memory. Writable bits are the address
  // bits at or above the BAR size, so an all-ones write reads back the size
  // mask and the flag bits never change; a probe of 0xFFFFFFF0 reads the same.
  for (const auto& b : p.bars) {
    const std::uint64_t addr_mask = ~(b.size - 1);
    const auto lo = static_cast<U16>(PCI_BASE_ADDRESS_0 + 4 * b.index.value());
    t.push_back({lo, 4, PCI_BASE_ADDRESS_MEM_TYPE_64 | PCI_BASE_ADDRESS_MEM_PREFETCH,
                 static_cast<std::uint32_t>(addr_mask) & static_cast<std::uint32_t>(PCI_BASE_ADDRESS_MEM_MASK), 0,
                 "BAR (low)"});
    t.push_back({at(lo, 4), 4, 0, static_cast<std::uint32_t>(addr_mask >> 32), 0, "BAR (high)"});
  }
  if (p.rom_size != 0)
    t.push_back({PCI_ROM_ADDRESS, 4, 0, (~(p.rom_size - 1) & PCI_ROM_ADDRESS_MASK) | PCI_ROM_ADDRESS_ENABLE, 0,
                 "Expansion ROM BAR"});
}

// Power Management capability (PCI PM 1.2).
void pm_rows(std::vector<RegDef>& t) {
  const U16 c = cfg::kPmCap;
  t.push_back({c, 2, PCI_CAP_ID_PM | cfg::kMsixCap << 8, 0, 0, "PM: ID / Next"});
  t.push_back({at(c, PCI_PM_PMC), 2, 0x0003, 0, 0, "PM Capabilities (version 3)"});
  t.push_back({at(c, PCI_PM_CTRL), 2, PCI_PM_CTRL_NO_SOFT_RESET, PCI_PM_CTRL_STATE_MASK | PCI_PM_CTRL_PME_ENABLE,
               PCI_PM_CTRL_PME_STATUS, "PM Control/Status"});
}

// MSI-X capability; table and PBA live in BAR0.
void msix_rows(std::vector<RegDef>& t) {
  const U16 c = cfg::kMsixCap;
  t.push_back({c, 2, PCI_CAP_ID_MSIX | cfg::kExpCap << 8, 0, 0, "MSI-X: ID / Next"});
  t.push_back({at(c, PCI_MSIX_FLAGS), 2, cfg::kMsixVectors - 1u, PCI_MSIX_FLAGS_ENABLE | PCI_MSIX_FLAGS_MASKALL, 0,
               "MSI-X Message Control"});
  t.push_back({at(c, PCI_MSIX_TABLE), 4, cfg::kMsixTableOffset | 0u, 0, 0, "MSI-X Table offset / BIR 0"});
  t.push_back({at(c, PCI_MSIX_PBA), 4, cfg::kMsixPbaOffset | 0u, 0, 0, "MSI-X PBA offset / BIR 0"});
}

// PCI Express capability, version 2, endpoint, Gen5 x16.
void exp_rows(std::vector<RegDef>& t) {
  const U16 c = cfg::kExpCap;
  t.push_back({c, 2, PCI_CAP_ID_EXP, 0, 0, "PCIe: ID / Next (end of list)"});
  t.push_back({at(c, PCI_EXP_FLAGS), 2, 0x0002 | PCI_EXP_TYPE_ENDPOINT << 4, 0, 0, "PCIe Capabilities"});
  // MaxPayload 256 B, extended tags, L0s/L1 latency unlimited, role-based errors, FLR.
  t.push_back({at(c, PCI_EXP_DEVCAP), 4, 0x00008FE1u | PCI_EXP_DEVCAP_FLR, 0, 0, "Device Capabilities"});
  // MaxPayload 256 B, MaxReadReq 512 B, relaxed ordering, no snoop. Bit 15
  // (initiate FLR) always reads 0.
  t.push_back({at(c, PCI_EXP_DEVCTL), 2, 0x2830, 0x7DFF, 0, "Device Control"});
  t.push_back({at(c, PCI_EXP_DEVSTA), 2, 0, 0,
               PCI_EXP_DEVSTA_CED | PCI_EXP_DEVSTA_NFED | PCI_EXP_DEVSTA_FED | PCI_EXP_DEVSTA_URD, "Device Status"});
  t.push_back({at(c, PCI_EXP_LNKCAP), 4, 0x00000105, 0, 0, "Link Capabilities (32GT/s x16)"});
  t.push_back({at(c, PCI_EXP_LNKCTL), 2, 0x0040, 0x03C3, 0, "Link Control"});
  t.push_back({at(c, PCI_EXP_LNKSTA), 2, 0x1105, 0, 0, "Link Status (32GT/s x16)"});
  t.push_back({at(c, PCI_EXP_DEVCAP2), 4, 0x0000001F, 0, 0, "Device Capabilities 2"});
  t.push_back({at(c, PCI_EXP_DEVCTL2), 2, 0, 0x041F, 0, "Device Control 2"});
  t.push_back({at(c, PCI_EXP_LNKCAP2), 4, 0x0000003E, 0, 0, "Link Capabilities 2"});
  t.push_back({at(c, PCI_EXP_LNKCTL2), 2, 0x0005, 0x000F, 0, "Link Control 2"});
}

// Advanced Error Reporting, version 2 (PCIe 6.0, section 7.8.4).
void aer_rows(std::vector<RegDef>& t) {
  const U16 c = cfg::kAerCap;
  constexpr std::uint32_t uncor = PCI_ERR_UNC_DLP | PCI_ERR_UNC_SURPDN | PCI_ERR_UNC_POISON_TLP | PCI_ERR_UNC_FCP |
                                  PCI_ERR_UNC_COMP_TIME | PCI_ERR_UNC_COMP_ABORT | PCI_ERR_UNC_UNX_COMP |
                                  PCI_ERR_UNC_RX_OVER | PCI_ERR_UNC_MALF_TLP | PCI_ERR_UNC_ECRC |
                                  PCI_ERR_UNC_UNSUP | PCI_ERR_UNC_ACSV | PCI_ERR_UNC_INTN | PCI_ERR_UNC_MCBTLP |
                                  PCI_ERR_UNC_ATOMEG | PCI_ERR_UNC_TLPPRE;
  constexpr std::uint32_t cor = PCI_ERR_COR_RCVR | PCI_ERR_COR_BAD_TLP | PCI_ERR_COR_BAD_DLLP |
                                PCI_ERR_COR_REP_ROLL | PCI_ERR_COR_REP_TIMER | PCI_ERR_COR_ADV_NFAT |
                                PCI_ERR_COR_INTERNAL | PCI_ERR_COR_LOG_OVER;
  t.push_back({c, 4, PCI_EXT_CAP_ID_ERR | 2u << 16 | static_cast<std::uint32_t>(cfg::kDvsecCap) << 20, 0, 0,
               "AER: header"});
  t.push_back({at(c, PCI_ERR_UNCOR_STATUS), 4, 0, 0, uncor, "AER Uncorrectable Error Status"});
  t.push_back({at(c, PCI_ERR_UNCOR_MASK), 4, PCI_ERR_UNC_INTN, uncor, 0, "AER Uncorrectable Error Mask"});
  // Spec defaults: DLP, surprise down, FCP, receiver overflow, malformed TLP, internal are fatal.
  t.push_back({at(c, PCI_ERR_UNCOR_SEVER), 4, 0x00462030, uncor, 0, "AER Uncorrectable Error Severity"});
  t.push_back({at(c, PCI_ERR_COR_STATUS), 4, 0, 0, cor, "AER Correctable Error Status"});
  t.push_back({at(c, PCI_ERR_COR_MASK), 4, PCI_ERR_COR_ADV_NFAT | PCI_ERR_COR_INTERNAL, cor, 0,
               "AER Correctable Error Mask"});
  t.push_back({at(c, PCI_ERR_CAP), 4, 0x000000A0, 0x00000140, 0, "AER Capabilities and Control"});
}

// NVIDIA DVSEC 3 with the MIG capability word (R2): bit 0 set means no bug.
void dvsec_rows(const DeviceConfigParams& p, std::vector<RegDef>& t) {
  const U16 c = cfg::kDvsecCap;
  const std::uint32_t next = p.cxl_active_timeout ? static_cast<std::uint32_t>(cfg::kCxlDvsecCap) << 20 : 0u;
  t.push_back({c, 4, PCI_EXT_CAP_ID_DVSEC | 1u << 16 | next, 0, 0, "DVSEC: header"});
  t.push_back({at(c, PCI_DVSEC_HEADER1), 4, kNvidiaVendorId | 0x010u << 20, 0, 0, "DVSEC Header 1 (10de, len 16)"});
  t.push_back({at(c, PCI_DVSEC_HEADER2), 2, kNvidiaGpuCapDvsecId, 0, 0, "DVSEC Header 2 (ID 3)"});
  t.push_back({at(c, kDvsecMigCapOffset), 2, p.mig_hw_bug ? 0u : kMigSupportedWithCachedResmem, 0, 0,
               "NVIDIA GPU capabilities (bit 0: MIG with cached resmem)"});
}

// CXL Device DVSEC (CXL 3.1, section 8.1.3), the registers R31 reads: the
// header and Range 1 Size Low, whose bits 0 (MEM_INFO_VALID) and 1
// (MEM_ACTIVE) the device sets when its memory is ready, and 15:13 the
// Memory_Active_Timeout.
void cxl_rows(const DeviceConfigParams& p, std::vector<RegDef>& t) {
  if (!p.cxl_active_timeout) return;
  const U16 c = cfg::kCxlDvsecCap;
  t.push_back({c, 4, PCI_EXT_CAP_ID_DVSEC | 1u << 16, 0, 0, "CXL DVSEC: header (end of list)"});
  t.push_back({at(c, PCI_DVSEC_HEADER1), 4, kCxlVendorId | 0x1u << 16 | 0x3Cu << 20, 0, 0,
               "DVSEC Header 1 (1e98, rev 1, len 0x3c)"});
  t.push_back({at(c, PCI_DVSEC_HEADER2), 2, kCxlDeviceDvsecId, 0, 0, "DVSEC Header 2 (ID 0: CXL Device)"});
  t.push_back({at(c, kCxlRange1SizeLow), 4, static_cast<std::uint32_t>(*p.cxl_active_timeout & 7u) << 13, 0, 0,
               "CXL Range 1 Size Low (bits 0/1 live: memory valid/active)"});
}

}  // namespace

std::vector<RegDef> config_registers(const DeviceConfigParams& p) {
  std::vector<RegDef> t;
  header_rows(p, t);
  pm_rows(t);
  msix_rows(t);
  exp_rows(t);
  aer_rows(t);
  dvsec_rows(p, t);
  cxl_rows(p, t);
  return t;
}

Result<DeviceConfig> DeviceConfig::build(const DeviceConfigParams& params) {
  unsigned seen = 0;
  for (const auto& b : params.bars) {
    const unsigned i = b.index.value();
    if (i > 4 || i % 2 != 0) return fail("BAR{}: a 64-bit BAR must start at index 0, 2 or 4", i);
    if (seen & (1u << i)) return fail("BAR{} is given twice", i);
    seen |= 1u << i;
    if (!is_pow2(b.size) || b.size < 16) return fail("BAR{}: size {:#x} is not a power of two >= 16", b.index, b.size);
  }
  if (params.rom_size != 0 && (!is_pow2(params.rom_size) || params.rom_size < 2048))
    return fail("expansion ROM size {:#x} is not a power of two >= 2 KiB", params.rom_size);
  DeviceConfig d;
  d.params_ = params;
  if (auto ok = d.space_.define_all(config_registers(params)); !ok) return fail(ok.error());
  return d;
}

bool DeviceConfig::memory_decode() const { return (space_.peek(PCI_COMMAND, 2) & PCI_COMMAND_MEMORY) != 0; }

std::optional<BarState> DeviceConfig::bar(BarIndex index) const {
  for (const auto& b : params_.bars) {
    if (b.index != index) continue;
    const std::size_t lo = PCI_BASE_ADDRESS_0 + 4 * index.value();
    const std::uint64_t raw = space_.peek(lo, 4) | static_cast<std::uint64_t>(space_.peek(lo + 4, 4)) << 32;
    const std::uint64_t address = raw & ~std::uint64_t{0xF};
    // R21: a size probe is the whole BAR reading back every writable address
    // bit set - the low and high halves together, as QEMU's pci_bar_address()
    // decides it: such a BAR would end at the very top of the address space.
    // One half alone proves nothing: a 1 GiB BAR placed at 0x180c0000000 has a
    // low dword of 0xC000000C, every writable bit of that half set.
    const std::uint64_t writable =
        space_.peek_writable(lo, 4) | static_cast<std::uint64_t>(space_.peek_writable(lo + 4, 4)) << 32;
    return BarState{b.index, b.role, b.size, address, (raw & writable) == writable};
  }
  return std::nullopt;
}

BarStates DeviceConfig::bars() const {
  BarStates out;
  for (const auto& b : params_.bars) out.push_back(*bar(b.index));
  return out;
}

}  // namespace nvgrace::pciemu
