// MIG hardware bug detection from config-space images: nvgrace-model.md R2.
#include <catch2/catch.hpp>

#include <random>
#include <vector>

#include <linux/pci_regs.h>

#include "nvgrace/pciemu/mig.hpp"

using namespace nvgrace::pciemu;

namespace {

struct Image {
  std::vector<std::uint8_t> b = std::vector<std::uint8_t>(PCI_CFG_SPACE_EXP_SIZE, 0);
  void put32(std::size_t off, std::uint32_t v) {
    for (int i = 0; i < 4; ++i) b.at(off + static_cast<std::size_t>(i)) = static_cast<std::uint8_t>(v >> (8 * i));
  }
  void put16(std::size_t off, std::uint16_t v) {
    b.at(off) = static_cast<std::uint8_t>(v);
    b.at(off + 1) = static_cast<std::uint8_t>(v >> 8);
  }
  // Extended capability header: id, version 1, next.
  void cap(std::size_t off, std::uint16_t id, std::size_t next) {
    put32(off, id | (1u << 16) | static_cast<std::uint32_t>(next) << 20);
  }
  void dvsec(std::size_t off, std::size_t next, std::uint16_t vendor, std::uint16_t dvsec_id, std::uint16_t word) {
    cap(off, PCI_EXT_CAP_ID_DVSEC, next);
    put32(off + PCI_DVSEC_HEADER1, vendor | (0x10u << 20));
    put16(off + PCI_DVSEC_HEADER2, dvsec_id);
    put16(off + kDvsecMigCapOffset, word);
  }
};

bool contains(const std::string& s, const char* what) { return s.find(what) != std::string::npos; }

}  // namespace

TEST_CASE("R2: NVIDIA DVSEC 3 with bit 0 set means no MIG bug") {
  Image img;
  img.cap(0x100, PCI_EXT_CAP_ID_ERR, 0x148);
  img.dvsec(0x148, 0, 0x10de, 3, 0x0001);
  auto d = detect_mig_hw_bug(img.b);
  CHECK_FALSE(d.mig_hw_bug);
  CHECK(d.dvsec_offset == 0x148u);
  CHECK(contains(d.reason, "no bug"));
}

TEST_CASE("R2: NVIDIA DVSEC 3 with bit 0 clear means the MIG bug") {
  Image img;
  img.dvsec(0x100, 0, 0x10de, 3, 0xFFFE);
  auto d = detect_mig_hw_bug(img.b);
  CHECK(d.mig_hw_bug);
  CHECK(d.dvsec_offset == 0x100u);
  CHECK(contains(d.reason, "bit 0 clear"));
}

TEST_CASE("R2: no DVSEC means the bug is assumed") {
  Image img;
  img.cap(0x100, PCI_EXT_CAP_ID_ERR, 0);
  auto d = detect_mig_hw_bug(img.b);
  CHECK(d.mig_hw_bug);
  CHECK_FALSE(d.dvsec_offset);
  CHECK(contains(d.reason, "not in the extended capability list"));

  Image empty;
  CHECK(contains(detect_mig_hw_bug(empty.b).reason, "no extended capabilities"));
  std::vector<std::uint8_t> ones(PCI_CFG_SPACE_EXP_SIZE, 0xFF);
  CHECK(detect_mig_hw_bug(ones).mig_hw_bug);
}

TEST_CASE("R2: a DVSEC of another vendor or another id is skipped") {
  Image img;
  img.dvsec(0x100, 0x140, 0x1e98, 3, 0x0001);  // another vendor, same id
  img.dvsec(0x140, 0x180, 0x10de, 2, 0x0001);  // NVIDIA, another id
  img.dvsec(0x180, 0, 0x10de, 3, 0x0001);      // the one
  auto d = detect_mig_hw_bug(img.b);
  CHECK_FALSE(d.mig_hw_bug);
  CHECK(d.dvsec_offset == 0x180u);

  Image only_others;
  only_others.dvsec(0x100, 0x140, 0x1e98, 3, 0x0001);
  only_others.dvsec(0x140, 0, 0x10de, 7, 0x0001);
  CHECK(detect_mig_hw_bug(only_others.b).mig_hw_bug);
}

TEST_CASE("R2: a looping chain terminates and counts as absent") {
  Image img;
  img.cap(0x100, PCI_EXT_CAP_ID_ERR, 0x140);
  img.cap(0x140, 0x0B, 0x100);
  auto d = detect_mig_hw_bug(img.b);
  CHECK(d.mig_hw_bug);
  CHECK(contains(d.reason, "loops at 0x140 -> 0x100"));

  Image self;
  self.cap(0x100, PCI_EXT_CAP_ID_ERR, 0x100);
  CHECK(contains(detect_mig_hw_bug(self.b).reason, "loops"));
}

TEST_CASE("R2: a pointer below 0x100 ends the walk") {
  Image img;
  img.cap(0x100, PCI_EXT_CAP_ID_ERR, 0x40);
  img.dvsec(0x40, 0, 0x10de, 3, 0x0001);  // would be found if the walk followed it
  auto d = detect_mig_hw_bug(img.b);
  CHECK(d.mig_hw_bug);
  CHECK(contains(d.reason, "below 0x100"));
}

TEST_CASE("R2: a pointer or DVSEC past the image ends the walk") {
  Image img;
  img.cap(0x100, PCI_EXT_CAP_ID_ERR, 0x200);
  std::vector<std::uint8_t> short_img(img.b.begin(), img.b.begin() + 0x180);
  CHECK(contains(detect_mig_hw_bug(short_img).reason, "past the 384-byte image"));

  // A DVSEC whose header sits in the last dword of 4 KiB: its registers lie past 4 KiB.
  Image edge;
  edge.cap(0x100, PCI_EXT_CAP_ID_ERR, 0xFFC);
  edge.cap(0xFFC, PCI_EXT_CAP_ID_DVSEC, 0);
  auto d = detect_mig_hw_bug(edge.b);
  CHECK(d.mig_hw_bug);
  CHECK(contains(d.reason, "runs past the 4096-byte image"));

  // A 256-byte image (what sysfs gives an unprivileged reader) has no extended space.
  std::vector<std::uint8_t> legacy(PCI_CFG_SPACE_SIZE, 0);
  CHECK(contains(detect_mig_hw_bug(legacy).reason, "no extended space"));
}

TEST_CASE("R2: random extended-capability chains always terminate without reading out of bounds") {
  std::mt19937 rng(20261122);
  for (int iter = 0; iter < 20000; ++iter) {
    const std::size_t size = iter % 4 == 0 ? (std::size_t{0x100} + rng() % 0xF00) : PCI_CFG_SPACE_EXP_SIZE;
    std::vector<std::uint8_t> img(size);
    for (auto& byte : img) byte = static_cast<std::uint8_t>(rng());
    // Make many headers DVSECs with plausible next pointers so chains get long.
    for (std::size_t off = 0x100; off + 4 <= size; off += 4)
      if (rng() % 3 == 0) {
        const std::uint32_t next = static_cast<std::uint32_t>(rng() % 0x1000);
        const std::uint32_t h = PCI_EXT_CAP_ID_DVSEC | next << 20;
        for (int i = 0; i < 4; ++i) img[off + static_cast<std::size_t>(i)] = static_cast<std::uint8_t>(h >> (8 * i));
      }
    auto d = detect_mig_hw_bug(img);
    CHECK_FALSE(d.reason.empty());
    if (d.dvsec_offset) CHECK(*d.dvsec_offset + 12 <= size);
  }
}
