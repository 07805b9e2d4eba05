// Emulated config space: nvgrace-model.md R2, R11-R15.
#include <catch2/catch.hpp>

#include <vector>

#include <linux/pci_regs.h>

#include "config_test_util.hpp"
#include "nvgrace/pciemu/capabilities.hpp"
#include "nvgrace/pciemu/mig.hpp"

using namespace nvgrace;
using namespace nvgrace::pciemu;
using test::rd;
using test::wr;

namespace {

// Linux's __pci_read_base: decode off, save, write all-ones, read, restore;
// for a 64-bit BAR the low and high halves in turn. Returns the decoded size.
std::uint64_t linux_size_bar(DeviceConfig& c, unsigned index) {
  const std::size_t lo = PCI_BASE_ADDRESS_0 + 4 * index;
  const auto cmd = rd(c, PCI_COMMAND, 2);
  wr(c, PCI_COMMAND, 2, cmd & ~static_cast<std::uint32_t>(PCI_COMMAND_MEMORY));
  const auto save_lo = rd(c, lo, 4);
  wr(c, lo, 4, 0xFFFFFFFF);
  const auto mask_lo = rd(c, lo, 4);
  wr(c, lo, 4, save_lo);
  REQUIRE((mask_lo & PCI_BASE_ADDRESS_MEM_TYPE_MASK) == PCI_BASE_ADDRESS_MEM_TYPE_64);
  const auto save_hi = rd(c, lo + 4, 4);
  wr(c, lo + 4, 4, 0xFFFFFFFF);
  const auto mask_hi = rd(c, lo + 4, 4);
  wr(c, lo + 4, 4, save_hi);
  wr(c, PCI_COMMAND, 2, cmd);
  CHECK(rd(c, lo, 4) == save_lo);
  CHECK(rd(c, lo + 4, 4) == save_hi);
  const std::uint64_t mask = (static_cast<std::uint64_t>(mask_hi) << 32) | (mask_lo & PCI_BASE_ADDRESS_MEM_MASK);
  return ~mask + 1;
}

struct Cap {
  unsigned offset;
  unsigned id;
};

std::vector<Cap> std_caps(const DeviceConfig& c) {
  std::vector<Cap> caps;
  auto pos = rd(c, PCI_CAPABILITY_LIST, 1);
  for (int guard = 0; pos != 0 && guard < 48; ++guard) {
    caps.push_back({pos, rd(c, pos, 1)});
    pos = rd(c, pos + 1, 1);
  }
  return caps;
}

std::vector<Cap> ext_caps(const DeviceConfig& c) {
  std::vector<Cap> caps;
  unsigned pos = PCI_CFG_SPACE_SIZE;
  for (int guard = 0; pos != 0 && guard < 960; ++guard) {
    const auto h = rd(c, pos, 4);
    caps.push_back({pos, PCI_EXT_CAP_ID(h)});
    pos = PCI_EXT_CAP_NEXT(h);
  }
  return caps;
}

void check_chains(const DeviceConfig& c) {
  auto s = std_caps(c);
  REQUIRE(s.size() == 3);
  CHECK(s[0].offset == cfg::kPmCap);
  CHECK(s[0].id == PCI_CAP_ID_PM);
  CHECK(s[1].id == PCI_CAP_ID_MSIX);
  CHECK(s[2].id == PCI_CAP_ID_EXP);
  auto e = ext_caps(c);
  REQUIRE(e.size() == 2);
  CHECK(e[0].id == PCI_EXT_CAP_ID_ERR);
  CHECK(e[1].id == PCI_EXT_CAP_ID_DVSEC);
  CHECK((rd(c, PCI_STATUS, 2) & PCI_STATUS_CAP_LIST) != 0);
}

}  // namespace

TEST_CASE("R12 acceptance: all-ones to 0x20 and 0x24 of a gh200 reads back the 128 GiB size mask") {
  auto c = test::make_gpu("gh200");
  wr(c, 0x20, 4, 0xFFFFFFFF);
  wr(c, 0x24, 4, 0xFFFFFFFF);
  CHECK(rd(c, 0x20, 4) == 0x0000000C);
  CHECK(rd(c, 0x24, 4) == 0xFFFFFFE0);
  CHECK(c.bar(BarIndex{4})->sizing);
}

TEST_CASE("R12: a probe of 0xFFFFFFF0 (address bits only) reads back the same size mask") {
  auto c = test::make_gpu("gh200");
  wr(c, 0x18, 4, 0xFFFFFFF0);  // BAR2, 1 GiB resmem
  CHECK(rd(c, 0x18, 4) == 0xC000000C);
  wr(c, 0x18, 4, 0xFFFFFFFF);
  CHECK(rd(c, 0x18, 4) == 0xC000000C);
  wr(c, 0x10, 4, 0xFFFFFFF0);  // BAR0, 16 MiB
  CHECK(rd(c, 0x10, 4) == 0xFF00000C);
}

TEST_CASE("the Linux sizing sequence finds every BAR's size and restores it (R11, R12)") {
  for (const char* profile : {"gh200", "gh200-144g", "gb200", "gb300"}) {
    INFO(profile);
    auto c = test::make_gpu(profile);
    // Place the BARs first so the restore has something to restore.
    wr(c, 0x10, 4, 0xE0000000);
    wr(c, 0x14, 4, 0x00000100);
    wr(c, 0x18, 4, 0x00000000);
    wr(c, 0x1C, 4, 0x00000200);
    wr(c, 0x20, 4, 0x00000000);
    wr(c, 0x24, 4, 0x00000400);
    wr(c, PCI_COMMAND, 2, PCI_COMMAND_MEMORY);
    for (const auto& bar : c.params().bars) {
      CHECK(linux_size_bar(c, bar.index.value()) == bar.size);
      CHECK_FALSE(c.bar(bar.index)->sizing);
    }
    CHECK(c.memory_decode());
  }
}

TEST_CASE("R11: fake BAR sizes follow the layout on every profile") {
  auto gh = test::make_gpu("gh200");
  CHECK(gh.bar(BarIndex{2})->size == 1 * GiB);
  CHECK(gh.bar(BarIndex{2})->role == BarRole::resmem);
  CHECK(gh.bar(BarIndex{4})->size == 128 * GiB);
  CHECK(gh.bar(BarIndex{0})->size == 16 * MiB);
  auto gb = test::make_gpu("gb200");
  CHECK(gb.bar(BarIndex{2})->role == BarRole::device);  // R10
  CHECK(gb.bar(BarIndex{2})->size == 256 * GiB);
  CHECK(gb.bar(BarIndex{4})->size == 256 * GiB);
}

TEST_CASE("R13: 1-, 2- and 4-byte writes anywhere inside the BAR window store the written bytes") {
  auto c = test::make_gpu("gh200");
  // BAR4 (128 GiB): address 0x12_3456_0000_0000? only bits >= 37 are writable.
  wr(c, 0x27, 1, 0x12);
  wr(c, 0x25, 2, 0x3456);
  wr(c, 0x24, 1, 0xE0);
  CHECK(rd(c, 0x24, 4) == 0x123456E0);
  CHECK(c.bar(BarIndex{4})->address == 0x123456E000000000ull);
  // BAR2 (1 GiB): bits 30-31 of the low dword are writable.
  wr(c, 0x1B, 1, 0xFF);
  CHECK(rd(c, 0x18, 4) == 0xC000000C);
  wr(c, 0x1A, 2, 0x4000);
  CHECK(rd(c, 0x18, 4) == 0x4000000C);
  wr(c, 0x1C, 2, 0xBEEF);
  wr(c, 0x1E, 2, 0xDEAD);
  CHECK(c.bar(BarIndex{2})->address == 0xDEADBEEF40000000ull);
  // The flag byte ignores writes.
  wr(c, 0x18, 1, 0x00);
  CHECK((rd(c, 0x18, 1) & 0x0F) == 0x0C);
}

TEST_CASE("R13 improve: a 4-byte write at 0x1E updates BAR3 and BAR4 together") {
  auto c = test::make_gpu("gh200");
  wr(c, 0x1C, 4, 0x00000000);
  wr(c, 0x20, 4, 0x00000000);
  wr(c, 0x1E, 4, 0x5678ABCD);  // 0x1E-0x1F: BAR3 bytes 2-3; 0x20-0x21: BAR4 low bytes 0-1
  CHECK(rd(c, 0x1C, 4) == 0xABCD0000);
  // BAR4's low dword has no address bits (128 GiB): only flags remain.
  CHECK(rd(c, 0x20, 4) == 0x0000000C);
  // And a 4-byte read across the boundary sees both registers.
  CHECK(rd(c, 0x1E, 4) == 0x000CABCD);
  // 2-byte write at 0x23 spans BAR4 low and high.
  wr(c, 0x23, 2, 0xE0FF);
  CHECK(rd(c, 0x24, 4) == 0x000000E0);
  CHECK(rd(c, 0x20, 4) == 0x0000000C);
  // Unaligned 4-byte read at 0x03 returns device-id high byte, command, status low byte.
  CHECK(rd(c, 0x03, 4) == (0x23u | rd(c, 0x04, 2) << 8 | (rd(c, 0x06, 1) << 24)));
}

TEST_CASE("R15: read-only fields never change") {
  auto c = test::make_gpu("gh200");
  const std::vector<std::uint8_t> before(c.space().bytes().begin(), c.space().bytes().end());
  for (std::size_t off = 0; off < ConfigSpace::kSize; off += 4) wr(c, off, 4, 0xFFFFFFFF);
  for (std::size_t off = 0; off < ConfigSpace::kSize; ++off) {
    const auto ro = static_cast<std::uint8_t>(~(c.space().writable_mask()[off] | c.space().w1c_mask()[off]));
    INFO("offset " << off);
    CHECK((c.space().bytes()[off] & ro) == (before[off] & ro));
  }
  CHECK(rd(c, PCI_VENDOR_ID, 2) == 0x10de);
  CHECK(rd(c, PCI_DEVICE_ID, 2) == 0x2342);
  CHECK(rd(c, PCI_CLASS_DEVICE, 2) == 0x0302);
  CHECK(rd(c, PCI_SUBSYSTEM_ID, 2) == 0x16eb);
  CHECK((rd(c, cfg::kExpCap + PCI_EXP_DEVCTL, 2) & PCI_EXP_DEVCTL_BCR_FLR) == 0);  // FLR bit reads 0
  check_chains(c);
}

TEST_CASE("R15 improve: write-1-to-clear bits clear only where a one is written") {
  auto c = test::make_gpu("gh200");
  struct W1c {
    std::size_t off;
    std::size_t width;
    std::uint32_t bits;
  };
  const std::vector<W1c> regs{
      {PCI_STATUS, 2, PCI_STATUS_DETECTED_PARITY | PCI_STATUS_SIG_SYSTEM_ERROR | PCI_STATUS_REC_MASTER_ABORT},
      {cfg::kExpCap + PCI_EXP_DEVSTA, 2, PCI_EXP_DEVSTA_CED | PCI_EXP_DEVSTA_URD | PCI_EXP_DEVSTA_FED},
      {cfg::kAerCap + PCI_ERR_UNCOR_STATUS, 4, PCI_ERR_UNC_COMP_TIME | PCI_ERR_UNC_UNSUP | PCI_ERR_UNC_POISON_TLP},
      {cfg::kAerCap + PCI_ERR_COR_STATUS, 4, PCI_ERR_COR_RCVR | PCI_ERR_COR_BAD_TLP | PCI_ERR_COR_ADV_NFAT},
      {cfg::kPmCap + PCI_PM_CTRL, 2, PCI_PM_CTRL_PME_STATUS},
  };
  for (const auto& r : regs) {
    INFO("register at " << r.off);
    const auto base = rd(c, r.off, r.width);
    REQUIRE(c.space().device_set(r.off, r.width, r.bits).has_value());
    CHECK(rd(c, r.off, r.width) == (base | r.bits));
    wr(c, r.off, r.width, 0);  // zeros clear nothing
    CHECK(rd(c, r.off, r.width) == (base | r.bits));
    const std::uint32_t lowest = r.bits & (~r.bits + 1);
    wr(c, r.off, r.width, lowest);  // one bit cleared, the others stay
    CHECK(rd(c, r.off, r.width) == (base | (r.bits & ~lowest)));
    wr(c, r.off, r.width, 0xFFFFFFFF >> (32 - 8 * r.width));
    CHECK((rd(c, r.off, r.width) & r.bits) == 0);
  }
  CHECK((rd(c, PCI_STATUS, 2) & PCI_STATUS_CAP_LIST) != 0);
}

TEST_CASE("R14: reset clears the fake BARs and restores power-on values") {
  auto c = test::make_gpu("gh200");
  wr(c, 0x18, 4, 0x40000000);
  wr(c, 0x1C, 4, 0x80);
  wr(c, 0x24, 4, 0x100);
  wr(c, PCI_COMMAND, 2, PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER);
  REQUIRE(c.bar(BarIndex{2})->address != 0);
  c.reset();
  for (std::size_t off = PCI_BASE_ADDRESS_0; off <= PCI_BASE_ADDRESS_5; off += 4) CHECK((rd(c, off, 4) & ~0xFu) == 0);
  CHECK(c.bar(BarIndex{2})->address == 0);
  CHECK(c.bar(BarIndex{4})->address == 0);
  CHECK_FALSE(c.memory_decode());
  check_chains(c);
}

TEST_CASE("unused BARs read 0 and ignore writes") {
  auto cfg = DeviceConfig::build({0x2342, 0x10de, 0x16eb, true, {{BarIndex{4}, BarRole::usemem, 1 * GiB, std::nullopt}}, 0, std::nullopt});
  REQUIRE(cfg.has_value());
  for (std::size_t off : {0x10u, 0x14u, 0x18u, 0x1Cu}) {
    wr(*cfg, off, 4, 0xFFFFFFFF);
    CHECK(rd(*cfg, off, 4) == 0);
  }
  CHECK_FALSE(cfg->bar(BarIndex{0}));
  wr(*cfg, 0x20, 4, 0xFFFFFFFF);
  CHECK(rd(*cfg, 0x20, 4) == 0xC000000C);
}

TEST_CASE("the expansion ROM BAR sizes by all-ones and keeps its enable bit") {
  auto c = test::make_gpu("gh200", 512 * 1024);
  wr(c, PCI_ROM_ADDRESS, 4, 0xFFFFFFFE);
  CHECK(rd(c, PCI_ROM_ADDRESS, 4) == 0xFFF80000);  // 512 KiB mask, disabled
  wr(c, PCI_ROM_ADDRESS, 4, 0xFEB00001);
  CHECK(rd(c, PCI_ROM_ADDRESS, 4) == 0xFEB00001);  // enabled at 0xFEB00000, reserved bits stay 0
  wr(c, PCI_ROM_ADDRESS, 4, 0xFEB007FE);
  CHECK(rd(c, PCI_ROM_ADDRESS, 4) == 0xFEB00000);
  auto none = test::make_gpu("gh200");
  wr(none, PCI_ROM_ADDRESS, 4, 0xFFFFFFFF);
  CHECK(rd(none, PCI_ROM_ADDRESS, 4) == 0);
  CHECK_FALSE(DeviceConfig::build({0x2342, 0, 0, true, {}, 1000, std::nullopt}).has_value());
}

TEST_CASE("R2: the emulated DVSEC says Hopper has the MIG bug and Blackwell does not") {
  auto gh = test::make_gpu("gh200");
  auto d = detect_mig_hw_bug(gh.space().bytes());
  CHECK(d.mig_hw_bug);
  CHECK(d.dvsec_offset == cfg::kDvsecCap);
  auto gb = test::make_gpu("gb300");
  auto e = detect_mig_hw_bug(gb.space().bytes());
  CHECK_FALSE(e.mig_hw_bug);
  CHECK(e.dvsec_offset == cfg::kDvsecCap);
}

TEST_CASE("R21: BAR state distinguishes a size probe from a placed address") {
  auto c = test::make_gpu("gh200");
  wr(c, 0x24, 4, 0xFFFFFFFF);
  CHECK(c.bar(BarIndex{4})->sizing);
  wr(c, 0x24, 4, 0x00000080);
  CHECK_FALSE(c.bar(BarIndex{4})->sizing);
  CHECK(c.bar(BarIndex{4})->address == 0x8000000000ull);
  // One half probed alone is a placement, not a probe: BAR2's low half
  // all-ones with the high half 0 decodes at 0xC0000000.
  wr(c, 0x18, 4, 0xFFFFFFFF);
  CHECK_FALSE(c.bar(BarIndex{2})->sizing);
  CHECK(c.bar(BarIndex{2})->address == 0xC0000000ull);
  wr(c, 0x1C, 4, 0xFFFFFFFF);
  CHECK(c.bar(BarIndex{2})->sizing);
}

namespace {

// Places BAR `index` of `c` at `address` (low half, then high half, as a guest
// does) and checks what the model says about it (R21).
void check_placement(DeviceConfig& c, unsigned index, std::uint64_t size, std::uint64_t address) {
  const std::size_t lo = PCI_BASE_ADDRESS_0 + 4 * index;
  wr(c, lo, 4, static_cast<std::uint32_t>(address));
  wr(c, lo + 4, 4, static_cast<std::uint32_t>(address >> 32));
  const auto bar = c.bar(BarIndex{index});
  REQUIRE(bar.has_value());
  const std::uint64_t probe = ~(size - 1);  // every writable address bit set
  if (bar->address != address || bar->sizing != (address == probe))
    FAIL("BAR" << index << " of size 0x" << std::hex << size << " placed at 0x" << address << " reads address 0x"
               << bar->address << ", sizing " << bar->sizing);
}

// Naturally aligned placements of a BAR of `size`: every one whose low dword
// equals the size mask of that half, every one whose high dword does, the
// probe itself, and pseudo-random ones (fixed seed).
std::vector<std::uint64_t> placements(std::uint64_t size, std::uint64_t& seed) {
  const std::uint64_t mask = ~(size - 1);
  const auto lo_mask = static_cast<std::uint32_t>(mask) & 0xFFFFFFF0u;
  const auto hi_mask = static_cast<std::uint32_t>(mask >> 32);
  auto next = [&] {
    seed ^= seed << 13;
    seed ^= seed >> 7;
    seed ^= seed << 17;
    return seed;
  };
  std::vector<std::uint64_t> out{0, mask};
  for (std::uint64_t hi : std::initializer_list<std::uint64_t>{0, 1, 0x180, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFE,
                           static_cast<std::uint64_t>(hi_mask)}) {
    out.push_back((hi << 32 | lo_mask) & mask);  // low dword == its size mask
    out.push_back((hi << 32) & mask);
  }
  for (std::uint64_t lo : std::initializer_list<std::uint64_t>{0, 0x10, 0x40000000, 0x80000000, 0xC0000000, 0xFFFFFFF0,
                           static_cast<std::uint64_t>(lo_mask)})
    out.push_back((static_cast<std::uint64_t>(hi_mask) << 32 | lo) & mask);  // high dword == its size mask
  for (int i = 0; i < 48; ++i) out.push_back(next() & mask);
  return out;
}

}  // namespace

TEST_CASE("R21 property: only a BAR reading all-ones in both halves is a size probe, for every size and placement") {
  std::uint64_t seed = 0x2545F4914F6CDD1Dull;
  std::size_t checked = 0;
  // Every power-of-two size a 64-bit memory BAR can have, at each BAR index.
  for (unsigned index : {0u, 2u, 4u}) {
    for (unsigned bits = 4; bits < 64; ++bits) {
      const std::uint64_t size = std::uint64_t{1} << bits;
      DeviceConfigParams p;
      p.device_id = 0x2342;
      p.bars.push_back({BarIndex{index}, BarRole::usemem, size, std::nullopt});
      auto c = DeviceConfig::build(p);
      REQUIRE(c.has_value());
      for (auto a : placements(size, seed)) {
        check_placement(*c, index, size, a);
        ++checked;
      }
    }
  }
  // Every BAR of every profile.
  for (const char* profile : {"gh200", "gh200-144g", "gb200", "gb300"}) {
    auto c = test::make_gpu(profile);
    for (const auto& b : c.params().bars)
      for (auto a : placements(b.size, seed)) {
        check_placement(c, b.index.value(), b.size, a);
        ++checked;
      }
  }
  CHECK(checked > 10000);
}

TEST_CASE("R21: the 1 GiB BAR2 at 0x180c0000000 that four GH200 get is a placement, not a probe") {
  auto c = test::make_gpu("gh200");
  wr(c, 0x18, 4, 0xC0000000);
  wr(c, 0x1C, 4, 0x180);
  CHECK(rd(c, 0x18, 4) == 0xC000000C);
  CHECK_FALSE(c.bar(BarIndex{2})->sizing);
  CHECK(c.bar(BarIndex{2})->address == 0x180c0000000ull);
}

TEST_CASE("accesses with a bad width or past 4 KiB are refused with EINVAL") {
  auto c = test::make_gpu("gh200");
  for (auto [off, width] : std::vector<std::pair<std::size_t, std::size_t>>{{0, 3}, {0, 0}, {0, 8}, {4095, 2}, {4096, 1}, {~std::size_t{0}, 4}}) {
    INFO(off << " " << width);
    auto r = c.read(off, width);
    REQUIRE_FALSE(r.has_value());
    CHECK(r.error().err == EINVAL);
    CHECK_FALSE(c.write(off, width, 0).has_value());
  }
  CHECK(rd(c, 4095, 1) == 0);
  CHECK(rd(c, 4092, 4) == 0);
}

TEST_CASE("property: 100,000 random writes keep every invariant") {
  auto c = test::make_gpu("gh200");
  const auto wm = c.space().writable_mask();
  const auto w1c = c.space().w1c_mask();
  const std::vector<std::uint8_t> initial(c.space().bytes().begin(), c.space().bytes().end());
  std::uint64_t state = 0x9E3779B97F4A7C15ull;  // fixed seed, xorshift64
  auto next = [&] {
    state ^= state << 13;
    state ^= state >> 7;
    state ^= state << 17;
    return state;
  };
  // Bias offsets toward the header and capabilities, where the interesting registers are.
  const std::size_t hot[] = {0x00, 0x04, 0x10, 0x18, 0x1C, 0x20, 0x24, 0x30, 0x60, 0x68, 0x78, 0x80, 0x100, 0x148};
  std::vector<std::uint8_t> prev(initial);
  for (int i = 0; i < 100000; ++i) {
    const std::size_t widths[] = {1, 2, 4};
    const std::size_t width = widths[next() % 3];
    std::size_t off = (next() % 2) ? hot[next() % std::size(hot)] + next() % 8 : next() % ConfigSpace::kSize;
    if (off + width > ConfigSpace::kSize) off = ConfigSpace::kSize - width;
    const auto value = static_cast<std::uint32_t>(next());
    // Now and then the device raises status bits (errors, PME): only W1C bits.
    const bool device_event = next() % 64 == 0;
    if (device_event) {
      std::uint32_t bits = 0;
      for (std::size_t b = 0; b < width; ++b) bits |= static_cast<std::uint32_t>(w1c[off + b]) << (8 * b);
      REQUIRE(c.space().device_set(off, width, value & bits).has_value());
    } else {
      wr(c, off, width, value);
    }
    const auto now = c.space().bytes();
    for (std::size_t b = 0; b < ConfigSpace::kSize; ++b) {
      const auto ro = static_cast<std::uint8_t>(~(wm[b] | w1c[b]));
      if ((now[b] & ro) != (initial[b] & ro)) FAIL("read-only bits changed at " << b << " step " << i);
      // A guest write never sets a W1C bit.
      if (!device_event && (now[b] & w1c[b] & ~prev[b]) != 0) FAIL("W1C bit set by a write at " << b);
    }
    // R12: BAR flags always read 64-bit prefetchable; BAR sizes never change.
    for (std::size_t bar : {0x10u, 0x18u, 0x20u})
      if ((c.space().peek(bar, 4) & 0xF) != 0xC) FAIL("BAR flags lost at " << bar << " step " << i);
    prev.assign(c.space().bytes().begin(), c.space().bytes().end());
    if (i % 1000 == 0) check_chains(c);
  }
  check_chains(c);
  CHECK(linux_size_bar(c, 4) == 128 * GiB);
}

TEST_CASE("R31: the CXL Device DVSEC is found after the NVIDIA one, and its timeout codes decode to 1..256 s") {
  auto gpu = make_emulated_gpu("gb300", 0).value();
  auto params = gpu.config.params();
  params.cxl_active_timeout = 3;
  auto c = DeviceConfig::build(params).value();
  const auto hit = find_dvsec(c.space().bytes(), kCxlVendorId, kCxlDeviceDvsecId);
  REQUIRE(hit.offset.has_value());
  CHECK(*hit.offset == cfg::kCxlDvsecCap);
  CHECK(find_dvsec(c.space().bytes(), kNvidiaVendorId, kNvidiaGpuCapDvsecId).offset == cfg::kDvsecCap);
  CHECK(decode_cxl_range_size_low(c.space().peek(cfg::kCxlDvsecCap + kCxlRange1SizeLow, 4)).active_timeout ==
        std::chrono::seconds(64));
  const std::int64_t expect[] = {1, 4, 16, 64, 256, 256, 256, 256};
  for (std::uint32_t code = 0; code < 8; ++code) {
    const auto s = decode_cxl_range_size_low(code << 13 | 3);
    CHECK(s.active_timeout.count() == expect[code]);
    CHECK(s.info_valid);
    CHECK(s.active);
  }
  // Without it, none.
  CHECK_FALSE(find_dvsec(gpu.config.space().bytes(), kCxlVendorId, kCxlDeviceDvsecId).offset.has_value());
}

TEST_CASE("R27: the MSI-X table and PBA are found in BAR0 of the emulated GPU") {
  auto c = test::make_gpu("gh200");
  const auto m = find_msix(c.space().bytes());
  REQUIRE(m.has_value());
  CHECK(m->capability == cfg::kMsixCap);
  CHECK(m->vectors == cfg::kMsixVectors);
  CHECK(m->table_bar == 0);
  CHECK(m->table_offset == cfg::kMsixTableOffset);
  CHECK(m->pba_bar == 0);
}
