// Memslot manager and BAR mapper against a fake KVM: nvgrace-model.md R21-R24.
#include <catch2/catch.hpp>

#include <dirent.h>

#include <fstream>
#include <map>
#include <sstream>

#include <linux/pci_regs.h>
#include <spdlog/sinks/ostream_sink.h>

#include "nvgrace/devices/emulated.hpp"
#include "nvgrace/vm/memslots.hpp"

using namespace nvgrace;
using namespace nvgrace::vm;

namespace {

// Behaves like KVM_SET_USER_MEMORY_REGION: slots may not overlap, ids are
// bounded, size 0 deletes.
class FakeKvm final : public MemslotApi {
 public:
  struct Region {
    std::uint64_t gpa, size, hva;
  };
  explicit FakeKvm(std::uint32_t max = 32) : max_(max) {}
  Result<void> set_user_memory_region(std::uint32_t slot, GuestPhysAddr guest, std::uint64_t size, HostVirtAddr host,
                                      std::uint32_t) override {
    const std::uint64_t gpa = guest.value(), hva = host.value();
    ++calls;
    if (slot >= max_) return fail_errno(EINVAL, "slot {} out of range", slot);
    if (size == 0) {
      if (!regions.erase(slot)) return fail_errno(EINVAL, "deleting unknown slot {}", slot);
      return {};
    }
    for (const auto& [id, r] : regions)
      if (id != slot && gpa < r.gpa + r.size && r.gpa < gpa + size) return fail_errno(EEXIST, "overlaps slot {}", id);
    regions[slot] = {gpa, size, hva};
    return {};
  }
  std::uint32_t max_slots() const override { return max_; }
  std::map<std::uint32_t, Region> regions;
  std::uint64_t calls = 0;

 private:
  std::uint32_t max_;
};

struct Rig {
  FakeKvm kvm;
  MemslotManager slots{kvm};
  std::ostringstream logs;
  std::shared_ptr<spdlog::logger> log =
      std::make_shared<spdlog::logger>("test", std::make_shared<spdlog::sinks::ostream_sink_mt>(logs));
  std::unique_ptr<vfio::Variant> dev;
  std::unique_ptr<BarMapper> mapper;
  std::vector<GuestRange> fixed{{GuestPhysAddr{0}, 64 * MiB, "RAM"}, {GuestPhysAddr{0xB0000000}, MiB, "ECAM"}};

  explicit Rig(const char* profile = "gh200", std::uint64_t limit = std::uint64_t{1} << 48) {
    log->set_level(spdlog::level::debug);
    devices::EmulatedOptions o;
    o.profile = profile;
    o.name = "memslot-test";
    auto emu = devices::make_emulated_device(o);
    REQUIRE(emu.has_value());
    dev = std::move(emu->device);
    mapper = BarMapper::create("gpu0", slots, *dev, GuestPhysAddr{limit}, log).value();
  }
  void cfg(std::size_t off, std::uint32_t v, std::vector<GuestRange> others = {}) {
    REQUIRE(dev->write(vfio::kConfigRegion, off, std::span(reinterpret_cast<const std::uint8_t*>(&v), 4)).value() == 4);
    mapper->sync(fixed, others);
  }
  void place(unsigned bar, std::uint64_t addr, std::vector<GuestRange> others = {}) {
    cfg(0x10 + 4 * bar, static_cast<std::uint32_t>(addr), others);
    cfg(0x14 + 4 * bar, static_cast<std::uint32_t>(addr >> 32), others);
  }
  void decode(bool on, std::vector<GuestRange> others = {}) { cfg(PCI_COMMAND, on ? PCI_COMMAND_MEMORY : 0, others); }
  const FakeKvm::Region* slot_at(std::uint64_t gpa) {
    for (const auto& [id, r] : kvm.regions)
      if (r.gpa == gpa) return &r;
    return nullptr;
  }
};

std::size_t count_fds() {
  std::size_t n = 0;
  if (DIR* d = opendir("/proc/self/fd")) {
    while (readdir(d)) ++n;
    closedir(d);
  }
  return n;
}
// Mappings of device memory (the backends' memfds). Anonymous mappings are
// not counted: sanitizer runtimes add their own while a test runs.
std::size_t count_device_maps() {
  std::ifstream in("/proc/self/maps");
  std::size_t n = 0;
  for (std::string l; std::getline(in, l);)
    if (l.find("memfd:nvgrace-gh200-0") != std::string::npos) ++n;
  return n;
}

}  // namespace

TEST_CASE("memslots: ids are reused lowest first and bounded by KVM_CAP_NR_MEMSLOTS") {
  FakeKvm kvm(3);
  MemslotManager m(kvm);
  static char page[3][4096];
  auto a = m.map(GuestPhysAddr{0x0}, 4096, HostVirtAddr(page[0])).value();
  auto b = m.map(GuestPhysAddr{0x1000}, 4096, HostVirtAddr(page[1])).value();
  auto c = m.map(GuestPhysAddr{0x2000}, 4096, HostVirtAddr(page[2])).value();
  CHECK(a.id() == 0);
  CHECK(b.id() == 1);
  CHECK(c.id() == 2);
  auto d = m.map(GuestPhysAddr{0x3000}, 4096, HostVirtAddr(page[0]));
  REQUIRE_FALSE(d.has_value());
  CHECK(d.error().err == ENOSPC);
  b.reset();
  CHECK(kvm.regions.count(1) == 0);
  auto e = m.map(GuestPhysAddr{0x4000}, 4096, HostVirtAddr(page[1])).value();
  CHECK(e.id() == 1);
  CHECK(m.live() == 3);
  {
    Memslot moved = std::move(e);
    CHECK_FALSE(e);
    CHECK(moved.id() == 1);
  }
  CHECK(m.live() == 2);
  CHECK(kvm.regions.size() == 2);
}

TEST_CASE("memslots: a failed KVM call creates nothing and leaks no id") {
  FakeKvm kvm;
  MemslotManager m(kvm);
  static char page[2][4096];
  auto a = m.map(GuestPhysAddr{0x0}, 0x2000, HostVirtAddr(page[0])).value();
  auto clash = m.map(GuestPhysAddr{0x1000}, 0x1000, HostVirtAddr(page[1]));
  REQUIRE_FALSE(clash.has_value());
  CHECK(clash.error().err == EEXIST);
  CHECK(m.live() == 1);
  auto b = m.map(GuestPhysAddr{0x2000}, 0x1000, HostVirtAddr(page[1])).value();
  CHECK(b.id() == 1);
}

TEST_CASE("R21: nothing is mapped while decode is off or the BAR holds no address") {
  Rig r;
  r.place(4, 0x10000000000);
  CHECK(r.kvm.regions.empty());  // decode off
  r.decode(true);
  CHECK(r.slot_at(0x10000000000));
  r.place(4, 0);  // cleared: not a valid address
  CHECK_FALSE(r.slot_at(0x10000000000));
}

TEST_CASE("R21: a BAR being sized (all-ones) is never mapped, even with decode on") {
  Rig r;
  r.decode(true);
  r.cfg(0x20, 0xFFFFFFFF);
  r.cfg(0x24, 0xFFFFFFFF);
  CHECK(r.kvm.regions.empty());
  CHECK(r.mapper->claims().empty());
  r.place(4, 0x20000000000);
  CHECK(r.slot_at(0x20000000000));
}

TEST_CASE("R21/R22: BAR4 maps its memory length at its address, the tail stays unmapped, BAR0 is claimed but trapped") {
  Rig r;
  r.place(0, 0x30000000000);
  r.place(2, 0x20040000000);
  r.place(4, 0x10000000000);
  r.decode(true);
  const auto* s4 = r.slot_at(0x10000000000);
  REQUIRE(s4);
  CHECK(s4->size == 95 * GiB);  // length, not the 128 GiB BAR (R22)
  // The slot's host memory is usemem itself: what the guest writes there the
  // device reads back (the mapping is the mapper's own, through region info).
  *reinterpret_cast<std::uint64_t*>(s4->hva + 0x1000) = 0x5a5a;
  std::uint64_t back = 0;
  REQUIRE(r.dev->read(vfio::kBar4Region, 0x1000, std::span(reinterpret_cast<std::uint8_t*>(&back), 8)).value() == 8);
  CHECK(back == 0x5a5a);
  CHECK(s4->hva % GiB == 0);  // R24: host mapping aligned
  const auto* s2 = r.slot_at(0x20040000000);
  REQUIRE(s2);
  CHECK(s2->size == 1 * GiB);
  CHECK(r.kvm.regions.size() == 2);  // BAR0 has no slot
  const auto* tail = r.mapper->claim_at(GuestPhysAddr{0x10000000000 + 95 * GiB});
  REQUIRE(tail);
  CHECK(tail->index == BarIndex{4});
  const auto* bar0 = r.mapper->claim_at(GuestPhysAddr{0x30000001498});
  REQUIRE(bar0);
  CHECK(bar0->index == BarIndex{0});
  CHECK_FALSE(bar0->mapped);
}

TEST_CASE("R21: moving the BAR moves the slot and decode off or reset removes it") {
  Rig r;
  r.place(4, 0x10000000000);
  r.decode(true);
  const auto calls = r.kvm.calls;
  r.decode(false);
  r.place(4, 0x40000000000);
  r.decode(true);
  CHECK_FALSE(r.slot_at(0x10000000000));
  CHECK(r.slot_at(0x40000000000));
  CHECK(r.kvm.calls - calls == 2);  // delete on decode-off, create at the new place
  // Moving with decode on: delete then create, never two overlapping slots.
  r.place(4, 0x60000000000);
  CHECK(r.slot_at(0x60000000000));
  CHECK(r.kvm.regions.size() == 1);  // BAR2 was never placed
  r.decode(false);
  CHECK(r.kvm.regions.empty());
  r.decode(true);
  CHECK_FALSE(r.kvm.regions.empty());
  r.dev->reset();
  r.mapper->sync(r.fixed, {});
  CHECK(r.kvm.regions.empty());  // R14: the BARs are zero after reset
  CHECK(r.mapper->claims().empty());
}

TEST_CASE("R23: placements over RAM, another BAR or past the PA limit are refused and logged") {
  Rig r("gh200", std::uint64_t{1} << 40);  // a guest with a 40-bit physical address space
  r.decode(true);

  // BAR2 (1 GiB) at 2 GiB reaches 0xC0000000, over ECAM at 0xB0000000.
  r.place(2, 0x80000000);
  CHECK(r.logs.str().find("gpu0 BAR2 at 0x80000000 not mapped: it overlaps ECAM") != std::string::npos);
  // BAR0 (16 MiB) at 32 MiB lies in the 64 MiB of RAM.
  r.place(0, 0x2000000);
  CHECK(r.logs.str().find("gpu0 BAR0 at 0x2000000 not mapped: it overlaps RAM") != std::string::npos);
  // BAR4 at 1 TiB ends past the 40-bit limit.
  r.place(4, std::uint64_t{1} << 40);
  CHECK(r.logs.str().find("lies past the guest's 0x10000000000 physical address limit") != std::string::npos);
  CHECK(r.kvm.regions.empty());
  CHECK(r.mapper->claims().empty());

  // BAR4 over another device's BAR.
  const std::vector<GuestRange> other{{GuestPhysAddr{0x8000000000}, 16 * MiB, "gpu1 BAR0"}};
  r.place(4, 0x8000000000, other);
  CHECK(r.logs.str().find("gpu0 BAR4 at 0x8000000000 not mapped: it overlaps gpu1 BAR0") != std::string::npos);
  CHECK(r.kvm.regions.empty());

  // Two BARs of the same device on top of each other: both refused, whatever
  // the order (BAR2 here comes after BAR4).
  r.place(4, 0x4000000000);
  CHECK(r.slot_at(0x4000000000));
  r.place(2, 0x4000000000);
  INFO(r.logs.str());
  CHECK(r.logs.str().find("gpu0 BAR4 at 0x4000000000 not mapped: it overlaps gpu0 BAR2") != std::string::npos);
  CHECK(r.logs.str().find("gpu0 BAR2 at 0x4000000000 not mapped: it overlaps gpu0 BAR4") != std::string::npos);
  CHECK(r.logs.str().find("memslot refused") == std::string::npos);
  CHECK(r.kvm.regions.empty());
  CHECK(r.mapper->refusals() >= 6);

  // The guest carries on: fixing the placement maps both.
  r.place(2, 0x8040000000);
  r.place(0, 0x8080000000);
  CHECK(r.slot_at(0x4000000000));
  CHECK(r.slot_at(0x8040000000));
  CHECK(r.mapper->claims().size() == 3);
}

TEST_CASE("R23: each distinct refusal is logged once, not on every sync") {
  Rig r;
  r.decode(true);
  r.place(2, 0x80000000);
  const auto once = r.logs.str();
  r.mapper->sync(r.fixed, {});
  r.mapper->sync(r.fixed, {});
  CHECK(r.logs.str() == once);
}

TEST_CASE("R24: host mappings are aligned so both fake BARs can use huge pages at their guest addresses") {
  Rig r;
  r.place(2, 0x10040000000);
  r.place(4, 0x20000000000);
  r.decode(true);
  const auto* s2 = r.slot_at(0x10040000000);
  const auto* s4 = r.slot_at(0x20000000000);
  REQUIRE(s2);
  REQUIRE(s4);
  CHECK(s4->hva % GiB == 0);                    // usemem: aligned to min(size, 1 GiB)
  CHECK(s2->hva % (512 * MiB) == 0);            // resmem follows a 512 MiB-rounded usemem
  CHECK(s2->gpa % (2 * MiB) == s2->hva % (2 * MiB));
  CHECK(s4->gpa % GiB == s4->hva % GiB);
  CHECK(r.logs.str().find("no huge pages") == std::string::npos);
}

TEST_CASE("10,000 relocations and decode toggles leak no slot, fd or mapping") {
  const auto fds_before = count_fds();
  const auto maps_before = count_device_maps();
  CHECK(maps_before == 0);
  {
    Rig r;
    // The device's memfd is mapped by its memory source and, once per BAR
    // with memory, by the mapper (as a VMM maps a VFIO region): that many,
    // however often the BARs move.
    const auto maps_at_start = count_device_maps();
    CHECK(maps_at_start == 3);
    r.place(2, 0x7F40000000);
    for (int i = 0; i < 10000; ++i) {
      if (i % 3 == 0) r.decode(i % 2 == 0);
      r.place(4, 0x10000000000 + static_cast<std::uint64_t>(i % 7) * 128 * GiB);
      if (i % 1000 == 999) {
        r.dev->reset();
        r.mapper->sync(r.fixed, {});
        REQUIRE(r.kvm.regions.empty());
      }
    }
    CHECK(r.kvm.regions.size() <= 2);
    CHECK(r.slots.live() == r.kvm.regions.size());
    std::uint32_t max_id = 0;
    for (const auto& [id, reg] : r.kvm.regions) max_id = std::max(max_id, id);
    CHECK(max_id < 2);  // ids reused, not burned
    CHECK(count_device_maps() == maps_at_start);  // however often the BARs moved
  }
  CHECK(count_fds() == fds_before);
  CHECK(count_device_maps() == 0);
}
