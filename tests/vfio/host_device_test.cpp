// A real device served with the variant behaviour on top (R26-R31), against
// a fake VFIO device and a fake IOMMU that behave like the kernel's (regions
// at index << 40, region info with capabilities, SET_IRQS as bytes). The
// real kernel VFIO is exercised by the e2e scenarios (tests/e2e/host-*).
#include <catch2/catch.hpp>

#include <fcntl.h>
#include <linux/pci_regs.h>
#include <linux/vfio.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>

#include <nlohmann/json.hpp>

#include "arch.hpp"
#include "nvgrace/pciemu/layout.hpp"
#include "nvgrace/sys/fd_table.hpp"
#include "nvgrace/vfio/host/function.hpp"
#include "nvgrace/vfio/host/pci_host.hpp"
#include "nvgrace/vfio/region_info.hpp"
#include "nvgrace/vfio/variant/variant.hpp"
#include "nvgrace/vfio/wire.hpp"

using namespace nvgrace;
using namespace nvgrace::vfio;
using namespace nvgrace::vfio::host;
using namespace std::chrono_literals;

namespace {

constexpr unsigned kShift = 40;

// A PCI function as vfio-pci presents it: an NVMe-like device with a 64-bit
// BAR0 holding its MSI-X table (or elsewhere), 4 KiB of config space.
struct FakeVfio final : VfioDeviceIo {
  std::vector<std::uint8_t> config = std::vector<std::uint8_t>(4096, 0);
  std::vector<std::uint8_t> bar0;
  std::uint32_t flags = VFIO_DEVICE_FLAGS_PCI | VFIO_DEVICE_FLAGS_RESET;
  std::vector<std::vector<std::uint8_t>> set_irq_calls;
  int resets = 0;
  int ready_after_reads = 0;  // the R20 registers read 0xFF after this many reads
  int status_reads = 0;
  std::vector<std::pair<std::uint64_t, std::size_t>> config_writes;  // (offset, length) that reached the device
  int fd_ = ::memfd_create("fake-vfio", MFD_CLOEXEC);

  explicit FakeVfio(std::size_t bar0_size = 0x4000, unsigned msix_bir = 0) : bar0(bar0_size, 0) {
    auto put16 = [&](std::size_t at, std::uint16_t v) { std::memcpy(&config[at], &v, 2); };
    auto put32 = [&](std::size_t at, std::uint32_t v) { std::memcpy(&config[at], &v, 4); };
    put16(PCI_VENDOR_ID, 0x1b36);
    put16(PCI_DEVICE_ID, 0x0010);
    put16(PCI_STATUS, PCI_STATUS_CAP_LIST);
    put32(PCI_BASE_ADDRESS_0, PCI_BASE_ADDRESS_MEM_TYPE_64);
    config[PCI_CAPABILITY_LIST] = 0x40;
    config[0x40] = PCI_CAP_ID_MSIX;
    put16(0x40 + PCI_MSIX_FLAGS, 7);  // 8 vectors
    put32(0x40 + PCI_MSIX_TABLE, 0x2000 | msix_bir);
    put32(0x40 + PCI_MSIX_PBA, 0x3000 | msix_bir);
  }
  ~FakeVfio() override { ::close(fd_); }

  int fd() const override { return fd_; }
  Result<DeviceInfo> info() override { return DeviceInfo{flags, VFIO_PCI_NUM_REGIONS, VFIO_PCI_NUM_IRQS}; }
  Result<std::vector<std::uint8_t>> region_info(unsigned index) override {
    vfio_region_info i{};
    i.argsz = sizeof i;
    i.index = index;
    i.offset = std::uint64_t{index} << kShift;
    std::vector<std::uint8_t> out(sizeof i);
    if (index == VFIO_PCI_BAR0_REGION_INDEX) {
      // The kernel's way for the BAR with the MSI-X table: MSIX_MAPPABLE.
      i.size = bar0.size();
      i.flags = VFIO_REGION_INFO_FLAG_READ | VFIO_REGION_INFO_FLAG_WRITE | VFIO_REGION_INFO_FLAG_MMAP |
                VFIO_REGION_INFO_FLAG_CAPS;
      i.cap_offset = sizeof i;
      vfio_info_cap_header cap{VFIO_REGION_INFO_CAP_MSIX_MAPPABLE, 1, 0};
      wire::append(out, cap);
      i.argsz = static_cast<std::uint32_t>(out.size());
    } else if (index == VFIO_PCI_CONFIG_REGION_INDEX) {
      i.size = config.size();
      i.flags = VFIO_REGION_INFO_FLAG_READ | VFIO_REGION_INFO_FLAG_WRITE;
    }
    std::memcpy(out.data(), &i, sizeof i);
    return out;
  }
  Result<std::vector<std::uint8_t>> region_info_raw(unsigned index, std::uint32_t argsz) override {
    auto full = region_info(index);
    if (argsz >= full->size()) return full;
    // The kernel's answer to too small an argsz: the struct, asking for more.
    full->resize(sizeof(vfio_region_info));
    return full;
  }
  Result<void> ioeventfd(std::uint64_t, std::uint32_t, std::uint64_t, int) override {
    return fail_errno(ENOTTY, "VFIO_DEVICE_IOEVENTFD: not in this fake");
  }
  Result<IrqInfo> irq_info(unsigned index) override {
    switch (index) {
      case VFIO_PCI_INTX_IRQ_INDEX: return IrqInfo{index, VFIO_IRQ_INFO_EVENTFD | VFIO_IRQ_INFO_MASKABLE, 1};
      case VFIO_PCI_MSIX_IRQ_INDEX: return IrqInfo{index, VFIO_IRQ_INFO_EVENTFD | VFIO_IRQ_INFO_NORESIZE, 8};
      default: return IrqInfo{index, VFIO_IRQ_INFO_EVENTFD, 1};
    }
  }
  std::vector<std::uint8_t>* region(std::uint64_t at) {
    switch (at >> kShift) {
      case VFIO_PCI_CONFIG_REGION_INDEX: return &config;
      case VFIO_PCI_BAR0_REGION_INDEX: return &bar0;
      default: return nullptr;
    }
  }
  Result<std::size_t> pread(std::span<std::uint8_t> out, std::uint64_t at) override {
    auto* r = region(at);
    const std::uint64_t off = at & ((std::uint64_t{1} << kShift) - 1);
    if (!r || off >= r->size()) return fail_errno(EINVAL, "fake pread at {:#x}", at);
    const std::size_t n = std::min(out.size(), r->size() - off);
    std::memcpy(out.data(), r->data() + off, n);
    if (r == &bar0 && (off == kC2cLinkStatusReg || off == kHbmTrainingStatusReg)) {
      const std::uint32_t v = ++status_reads > ready_after_reads ? kStatusReady : 0;
      std::memcpy(out.data(), &v, std::min<std::size_t>(4, n));
    }
    return n;
  }
  Result<std::size_t> pwrite(std::span<const std::uint8_t> in, std::uint64_t at) override {
    auto* r = region(at);
    const std::uint64_t off = at & ((std::uint64_t{1} << kShift) - 1);
    if (!r || off >= r->size()) return fail_errno(EINVAL, "fake pwrite at {:#x}", at);
    const std::size_t n = std::min(in.size(), r->size() - off);
    std::memcpy(r->data() + off, in.data(), n);
    if (r == &config) config_writes.emplace_back(off, n);
    return n;
  }
  Result<void> set_irqs(std::span<const std::uint8_t> s) override {
    set_irq_calls.emplace_back(s.begin(), s.end());
    return {};
  }
  Result<void> reset() override {
    ++resets;
    return {};
  }
};

struct FakeIommu final : Iommu {
  DmaLimits lim{0x1000 | 0x200000, 4, {{Iova{0}, Iova{0xfedfffff}}, {Iova{0xfef00000}, Iova{0xffffffffffffull}}}, true};
  struct Map {
    Iova iova;
    std::uint64_t size;
    HostVirtAddr vaddr;
    bool r, w;
  };
  std::vector<Map> maps;
  std::string_view api() const override { return "type1"; }
  const DmaLimits& limits() const override { return lim; }
  Result<void> map(Iova iova, std::uint64_t size, HostVirtAddr vaddr, bool r, bool w) override {
    maps.push_back({iova, size, vaddr, r, w});
    return {};
  }
  Result<void> unmap(Iova iova, std::uint64_t size) override {
    auto it = std::find_if(maps.begin(), maps.end(), [&](const Map& m) { return m.iova == iova && m.size == size; });
    if (it == maps.end()) return fail_errno(ENOENT, "no map");
    maps.erase(it);
    return {};
  }
  // A container and a group, as type1 holds them.
  sys::UniqueFd container{::eventfd(0, EFD_CLOEXEC)}, group{::eventfd(0, EFD_CLOEXEC)};
  std::vector<int> descriptors() const override { return {container.get(), group.get()}; }
  // R41: a mapping claimed is kept (its address updated) or made again.
  std::vector<Map> claimed;
  Result<void> claim_mapping(Iova iova, std::uint64_t size, HostVirtAddr vaddr, bool r, bool w) override {
    claimed.push_back({iova, size, vaddr, r, w});
    auto it = std::find_if(maps.begin(), maps.end(), [&](const Map& m) { return m.iova == iova; });
    if (it == maps.end()) maps.push_back({iova, size, vaddr, r, w});
    else it->vaddr = vaddr;
    return {};
  }
  Result<void> unmap_within(Iova first, Iova last) override {
    std::erase_if(maps, [&](const Map& m) { return m.iova >= first && m.iova.value() + m.size - 1 <= last.value(); });
    return {};
  }
};

// 1.5 GiB of "device memory" with the MIG bug: usemem 512 MiB, resmem 1 GiB.
pciemu::Layout stand_in_layout() { return *pciemu::compute_layout({0x20000000, 0x60000000, true}); }

struct Served {
  FakeVfio* vfio = nullptr;
  FakeIommu* iommu = nullptr;
  HostFunction* host = nullptr;      // the function under the variant
  Variant* variant = nullptr;        // set with fake BARs
  std::unique_ptr<Function> dev;     // what a client is served
};

// A real function as devices/host.cpp serves one: the host function, with
// the variant over it when there are fake BARs (reset waits for readiness,
// decode turned on for the BAR0 reads).
Result<std::unique_ptr<Function>> try_serve(std::unique_ptr<FakeVfio> f, bool fake_bars, Served& s,
                                            ReadinessCheck readiness = ReadinessCheck::skip, bool mmap = true) {
  auto iommu = std::make_unique<FakeIommu>();
  s.vfio = f.get();
  s.iommu = iommu.get();
  auto fn = HostFunction::create(OpenedVfio{std::move(f), std::move(iommu)}, "0000:00:03.0");
  if (!fn) return fail(fn.error());
  s.host = fn->get();
  if (!fake_bars) return std::unique_ptr<Function>(std::move(*fn));
  VariantOptions o;
  o.name = "0000:00:03.0";
  o.device_id = 0x2342;
  o.readiness = readiness;
  o.ready = {1ms, 200ms};
  o.reset_wait = ResetWait::eager;
  o.decode_for_readiness = true;
  o.mmap_fake_bars = mmap;
  o.layout = stand_in_layout();
  o.memory = std::move(*make_memfd_backend(o.layout, "host-test"));
  auto v = Variant::create(std::move(*fn), std::move(o));
  if (!v) return fail(v.error());
  s.variant = v->get();
  return std::unique_ptr<Function>(std::move(*v));
}

Served serve(bool fake_bars = true, std::unique_ptr<FakeVfio> f = std::make_unique<FakeVfio>(),
             ReadinessCheck readiness = ReadinessCheck::skip) {
  Served s;
  auto d = try_serve(std::move(f), fake_bars, s, readiness);
  INFO((d ? std::string() : d.error().message));
  REQUIRE(d.has_value());
  s.dev = std::move(*d);
  return s;
}

std::uint32_t rd(Function& d, std::uint64_t off, std::size_t width = 4) {
  std::uint32_t v = 0;
  REQUIRE(d.read(RegionIndex{VFIO_PCI_CONFIG_REGION_INDEX}, off, std::span(reinterpret_cast<std::uint8_t*>(&v), width)).value() == width);
  return v;
}
void wr(Function& d, std::uint64_t off, std::uint32_t v, std::size_t width = 4) {
  REQUIRE(d.write(RegionIndex{VFIO_PCI_CONFIG_REGION_INDEX}, off, std::span(reinterpret_cast<const std::uint8_t*>(&v), width))
              .value() == width);
}

}  // namespace

TEST_CASE("host R26: config space is the device's except the fake BAR2/BAR4 registers, which the model owns") {
  auto s = serve();
  CHECK(rd(*s.dev, PCI_VENDOR_ID, 2) == 0x1b36);  // the device's own identity stays
  CHECK(rd(*s.dev, PCI_BASE_ADDRESS_2) == 0xC);    // 64-bit prefetchable, 0 (R12, R14)
  wr(*s.dev, PCI_BASE_ADDRESS_4, 0xFFFFFFFF);
  wr(*s.dev, PCI_BASE_ADDRESS_5, 0xFFFFFFFF);
  CHECK(rd(*s.dev, PCI_BASE_ADDRESS_4) == 0xE000000C);  // 512 MiB usemem BAR: the size mask
  CHECK(rd(*s.dev, PCI_BASE_ADDRESS_5) == 0xFFFFFFFF);
  wr(*s.dev, PCI_BASE_ADDRESS_2, 0x40000000);
  CHECK(rd(*s.dev, PCI_BASE_ADDRESS_2) == 0x4000000C);
  for (const auto& [off, len] : s.vfio->config_writes) {
    INFO("a write reached the device at " << off << "+" << len);
    CHECK((off + len <= PCI_BASE_ADDRESS_2 || off >= PCI_BASE_ADDRESS_5 + 4));
  }
  CHECK(std::all_of(s.vfio->config.begin() + PCI_BASE_ADDRESS_2, s.vfio->config.begin() + PCI_BASE_ADDRESS_5 + 4,
                    [](std::uint8_t b) { return b == 0; }));
  wr(*s.dev, PCI_COMMAND, PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER, 2);
  CHECK(s.vfio->config[PCI_COMMAND] == (PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER));  // everything else reaches it
}

TEST_CASE("host R39: an access spanning BAR1 and the fake BAR2 is BAR2's window alone, as the kernel's driver does") {
  auto s = serve();
  std::uint8_t in[8] = {0x11, 0x22, 0x33, 0x44, 0x00, 0x00, 0x00, 0x40};  // 0x14..0x1B
  // The kernel stores the window's bytes, drops the rest, and says so.
  REQUIRE(s.dev->write(RegionIndex{VFIO_PCI_CONFIG_REGION_INDEX}, PCI_BASE_ADDRESS_1, in).value() == 4);
  CHECK(s.vfio->config[PCI_BASE_ADDRESS_1] == 0);      // BAR1's bytes were dropped
  CHECK(s.vfio->config[PCI_BASE_ADDRESS_2 + 3] == 0);  // BAR2's never reach the device
  CHECK(rd(*s.dev, PCI_BASE_ADDRESS_2) == 0x4000000C);
  // A read takes the device's bytes, then the window's.
  s.vfio->config[PCI_BASE_ADDRESS_1] = 0x77;
  std::uint8_t out[8];
  REQUIRE(s.dev->read(RegionIndex{VFIO_PCI_CONFIG_REGION_INDEX}, PCI_BASE_ADDRESS_1, out).value() == 8);
  CHECK(out[0] == 0x77);
  CHECK(out[4] == 0x0C);
  CHECK(out[7] == 0x40);
  // Touching both fake windows: only BAR2's is emulated; BAR4's bytes in
  // the same access are the device's.
  REQUIRE(s.dev->write(RegionIndex{VFIO_PCI_CONFIG_REGION_INDEX}, 0x1e, std::span<const std::uint8_t>(in, 4)).value() ==
          2);
  s.vfio->config[PCI_BASE_ADDRESS_4] = 0x5a;
  REQUIRE(s.dev->read(RegionIndex{VFIO_PCI_CONFIG_REGION_INDEX}, 0x1e, std::span(out, 4)).value() == 4);
  CHECK(out[0] == 0x11);  // 0x1e, BAR2's window, as written
  CHECK(out[2] == 0x5a);  // 0x20, the device's byte, not the fake BAR4's 0x0C
}

TEST_CASE("host R27: the device's own BARs are the kernel's regions, mapped through the device fd") {
  auto s = serve();
  auto bar0 = s.dev->region_info(RegionIndex{0}).value();
  CHECK(bar0.fd == s.vfio->fd());
  CHECK(std::vector<std::uint8_t>(bar0.bytes.begin(), bar0.bytes.end()) == *s.vfio->region_info(0));
  auto d0 = decode_region_info(bar0.bytes).value();
  CHECK(d0.offset == 0);
  CHECK(d0.cap_ids == std::vector<std::uint16_t>{VFIO_REGION_INFO_CAP_MSIX_MAPPABLE});
  // REGION_READ/WRITE of BAR0 are pread/pwrite on the device fd.
  const std::uint32_t v = 0xA5A5A5A5;
  REQUIRE(s.dev->write(RegionIndex{0}, 0x100, std::span(reinterpret_cast<const std::uint8_t*>(&v), 4)).value() == 4);
  CHECK(s.vfio->bar0[0x100] == 0xA5);
  // The fake BARs replace regions 2 and 4 (R16), with the backend's fd.
  auto bar4 = s.dev->region_info(RegionIndex{4}).value();
  auto d4 = decode_region_info(bar4.bytes).value();
  CHECK(d4.region.size == 512 * MiB);
  REQUIRE(d4.region.sparse.size() == 1);
  CHECK(d4.region.sparse[0].size == 512 * MiB);
  CHECK(bar4.fd != s.vfio->fd());
  auto d2 = decode_region_info(s.dev->region_info(RegionIndex{2})->bytes).value();
  CHECK(d2.region.size == GiB);
  CHECK(decode_region_info(s.dev->region_info(RegionIndex{3})->bytes)->region.size == 0);
  CHECK(decode_region_info(s.dev->region_info(RegionIndex{5})->bytes)->region.size == 0);
  // R17 on the fake BAR: the tail of resmem's BAR reads all-ones... resmem
  // fills its 1 GiB BAR exactly; usemem fills its 512 MiB exactly too.
  std::vector<std::uint8_t> out(8);
  CHECK(s.dev->read(RegionIndex{4}, 512 * MiB, out).error().err == EINVAL);
  CHECK(s.dev->read(RegionIndex{4}, 512 * MiB - 4, out).value() == 4);
}

TEST_CASE("host R27: a device whose MSI-X table or PBA is in a BAR that a fake BAR replaces is refused") {
  Served s;
  auto in_bar4 = try_serve(std::make_unique<FakeVfio>(0x4000, 4), true, s);
  REQUIRE_FALSE(in_bar4.has_value());
  CHECK(in_bar4.error().message.find("MSI-X table is in BAR4, which the fake usemem BAR replaces (R27)") !=
        std::string::npos);
  auto in_bar3 = try_serve(std::make_unique<FakeVfio>(0x4000, 3), true, s);  // BAR2's upper half
  REQUIRE_FALSE(in_bar3.has_value());
  CHECK(in_bar3.error().message.find("BAR3, which the fake resmem BAR replaces") != std::string::npos);
  // A 64-bit BAR1 would have BAR2 as its upper half.
  auto f = std::make_unique<FakeVfio>();
  f->config[PCI_BASE_ADDRESS_0] = 0;
  f->config[PCI_BASE_ADDRESS_1] = PCI_BASE_ADDRESS_MEM_TYPE_64;
  auto straddle = try_serve(std::move(f), true, s);
  REQUIRE_FALSE(straddle.has_value());
  CHECK(straddle.error().message.find("BAR1 is a 64-bit BAR whose upper half is BAR2") != std::string::npos);
  // Without fake BARs the same device is plain passthrough (R5).
  auto plain = try_serve(std::make_unique<FakeVfio>(0x4000, 4), false, s);
  CHECK(plain.has_value());
}

TEST_CASE("host: with mmap_fake_bars off the client gets no fd for the fake BARs, only REGION_READ/WRITE") {
  Served s;
  auto d = try_serve(std::make_unique<FakeVfio>(), true, s, ReadinessCheck::skip, false).value();
  auto bar4 = d->region_info(RegionIndex{4}).value();
  CHECK(bar4.fd == -1);
  auto dec = decode_region_info(bar4.bytes).value();
  CHECK((dec.region.flags & VFIO_REGION_INFO_FLAG_MMAP) == 0);
  CHECK(dec.region.sparse.empty());
  CHECK(dec.region.size == 512 * MiB);
  const std::uint64_t v = 42;
  CHECK(d->write(RegionIndex{4}, 0x10, std::span(reinterpret_cast<const std::uint8_t*>(&v), 8)).value() == 8);
}

TEST_CASE("host R5: without fake BARs everything is the device's, BAR2/BAR4 config bytes included") {
  auto s = serve(false);
  wr(*s.dev, PCI_BASE_ADDRESS_2, 0x12345678);
  CHECK(s.vfio->config[PCI_BASE_ADDRESS_2] == 0x78);
  CHECK(decode_region_info(s.dev->region_info(RegionIndex{4})->bytes)->region.size == 0);
}

TEST_CASE("host R28: DMA maps the client's memory into this process, then into the IOMMU at the IOVA") {
  auto s = serve();
  const int memfd = ::memfd_create("client-ram", MFD_CLOEXEC);
  REQUIRE(::ftruncate(memfd, 4 * MiB) == 0);
  REQUIRE(::pwrite(memfd, "guest", 5, 2 * MiB) == 5);
  REQUIRE(s.dev->dma_map({Iova{0x100000}, 2 * MiB, memfd, 2 * MiB, true, true}).has_value());
  REQUIRE(s.iommu->maps.size() == 1);
  const auto& m = s.iommu->maps[0];
  CHECK(m.iova == Iova{0x100000});
  CHECK(m.size == 2 * MiB);
  CHECK(std::memcmp(m.vaddr.ptr(), "guest", 5) == 0);  // the mapping the IOMMU pins is the client's memory
  CHECK(s.host->dma_mappings() == 1);
  CHECK(s.dev->dma_map({Iova{0x400000}, 2 * MiB, -1, 0, true, true}).error().err == EINVAL);  // no fd (R28)
  CHECK(s.dev->dma_unmap(Iova{0x100000}, 4 * MiB).error().err == ENOENT);  // not exactly what was mapped
  REQUIRE(s.dev->dma_unmap(Iova{0x100000}, 2 * MiB).has_value());
  CHECK(s.iommu->maps.empty());
  CHECK(s.host->dma_mappings() == 0);
  ::close(memfd);
}

TEST_CASE("host R41: a successor takes the DMA table over with the client's memory, and claims each mapping") {
  auto s = serve(false);
  const int memfd = ::memfd_create("client-ram", MFD_CLOEXEC);
  REQUIRE(::ftruncate(memfd, 4 * MiB) == 0);
  REQUIRE(::pwrite(memfd, "guest", 5, 2 * MiB) == 5);
  REQUIRE(s.dev->dma_map({Iova{0x100000}, 2 * MiB, memfd, 2 * MiB, true, false}).has_value());
  ::close(memfd);  // the function keeps its own copy of the client's fd
  sys::FdTable out;
  auto saved = s.dev->save_state(out);
  REQUIRE(saved.has_value());
  CHECK((*saved)["kind"] == "vfio-host");
  CHECK((*saved)["bdf"] == "0000:00:03.0");
  CHECK((*saved)["api"] == "type1");
  REQUIRE((*saved)["iommu_fds"].size() == 2);
  CHECK(out.borrowed()[(*saved)["device_fd"].get<std::size_t>()] == s.vfio->fd());
  CHECK(out.borrowed()[(*saved)["iommu_fds"][0].get<std::size_t>()] == s.iommu->container.get());
  REQUIRE((*saved)["dma"].size() == 1);
  const auto& d = (*saved)["dma"][0];
  CHECK(d["iova"] == 0x100000);
  CHECK(d["offset"] == 2 * MiB);
  CHECK(d["writable"] == false);
  // host_state() finds it on its own and under a variant's record.
  CHECK(host_state(*saved) == &*saved);
  const nlohmann::json wrapped{{"kind", "variant"}, {"function", *saved}};
  CHECK(host_state(wrapped) == &wrapped["function"]);
  CHECK(host_state(nlohmann::json{{"kind", "emulated"}}) == nullptr);

  // The successor: the same device (here a fresh fake), every descriptor
  // arriving as a new one, as after exec.
  std::vector<sys::UniqueFd> arrived;
  for (int fd : out.borrowed()) arrived.emplace_back(::fcntl(fd, F_DUPFD_CLOEXEC, 0));
  sys::FdTable in(std::move(arrived));
  for (auto key : {"device_fd"}) REQUIRE(in.take((*saved)[key].get<std::uint64_t>()).has_value());
  for (const auto& i : (*saved)["iommu_fds"]) REQUIRE(in.take(i.get<std::uint64_t>()).has_value());
  auto next = serve(false);
  // The IOMMU as a predecessor that died mid-message can leave it: the
  // recorded mapping kept, plus two made after the last record (one in each
  // usable IOVA range).
  static const char stale[3] = {};
  next.iommu->maps.push_back({Iova{0x100000}, 2 * MiB, HostVirtAddr{stale}, true, false});
  next.iommu->maps.push_back({Iova{0x800000}, 2 * MiB, HostVirtAddr{stale + 1}, true, true});
  next.iommu->maps.push_back({Iova{0x100000000}, 4096, HostVirtAddr{stale + 2}, true, true});
  REQUIRE(next.host->restore_state(*saved, in).has_value());
  CHECK(in.untaken() == 0);
  CHECK(next.host->dma_mappings() == 1);
  CHECK(next.iommu->claimed.empty());  // only claim_state() touches the IOMMU
  REQUIRE(next.host->claim_state().has_value());
  REQUIRE(next.iommu->maps.size() == 1);  // the unrecorded ones removed
  REQUIRE(next.iommu->claimed.size() == 1);
  CHECK(next.iommu->claimed[0].iova == Iova{0x100000});
  CHECK_FALSE(next.iommu->claimed[0].w);
  CHECK(std::memcmp(next.iommu->maps[0].vaddr.ptr(), "guest", 5) == 0);  // the client's memory, mapped here
  // A recorded mapping the IOMMU lost (removed, not yet recorded) is made again.
  next.iommu->maps.clear();
  REQUIRE(next.host->claim_state().has_value());
  REQUIRE(next.iommu->maps.size() == 1);
  REQUIRE(next.dev->dma_unmap(Iova{0x100000}, 2 * MiB).has_value());
  CHECK(next.host->dma_mappings() == 0);

  // Another device's state, or a malformed one, is refused by name.
  auto other = *saved;
  other["bdf"] = "0000:00:04.0";
  sys::FdTable none;
  auto r = serve(false).host->restore_state(other, none);
  REQUIRE_FALSE(r.has_value());
  CHECK_THAT(r.error().message, Catch::Contains("0000:00:04.0"));
  auto bad = *saved;
  bad["api"] = "vfio-v3";
  std::vector<sys::UniqueFd> three;
  for (int i = 0; i < 3; ++i) three.emplace_back(::eventfd(0, EFD_CLOEXEC));
  sys::FdTable fds3(std::move(three));
  bad["device_fd"] = 0u;
  bad["iommu_fds"] = {1u, 2u};
  auto a = adopt_saved_vfio(bad, fds3);
  REQUIRE_FALSE(a.has_value());
  CHECK_THAT(a.error().message, Catch::Contains("vfio-v3"));
}

TEST_CASE("host R29: SET_IRQS hands the client's eventfds to VFIO as they are, -1 to de-assign") {
  auto s = serve();
  const int e0 = ::eventfd(0, EFD_CLOEXEC), e1 = ::eventfd(0, EFD_CLOEXEC);
  const int fds[] = {e0, e1};
  REQUIRE(s.dev->set_irqs({VFIO_IRQ_SET_DATA_EVENTFD | VFIO_IRQ_SET_ACTION_TRIGGER, VFIO_PCI_MSIX_IRQ_INDEX, 0, 2, {}, fds})
              .has_value());
  REQUIRE(s.dev->set_irqs({VFIO_IRQ_SET_DATA_EVENTFD | VFIO_IRQ_SET_ACTION_TRIGGER, VFIO_PCI_MSIX_IRQ_INDEX, 1, 1, {}, {}})
              .has_value());
  REQUIRE(s.vfio->set_irq_calls.size() == 2);
  auto head = wire::load<vfio_irq_set>(s.vfio->set_irq_calls[0], 0);
  CHECK(head.argsz == sizeof head + 8);
  CHECK(head.index == VFIO_PCI_MSIX_IRQ_INDEX);
  CHECK(head.count == 2);
  CHECK(wire::load<std::int32_t>(s.vfio->set_irq_calls[0], sizeof head) == e0);
  CHECK(wire::load<std::int32_t>(s.vfio->set_irq_calls[0], sizeof head + 4) == e1);
  CHECK(wire::load<std::int32_t>(s.vfio->set_irq_calls[1], sizeof head) == -1);
  ::close(e0);
  ::close(e1);
}

TEST_CASE("host reset: VFIO_DEVICE_RESET, fake BARs zeroed (R14), then R20 on the device's BAR0") {
  auto f = std::make_unique<FakeVfio>(0x40000);  // big enough for the R20 registers
  f->ready_after_reads = 6;
  auto s = serve(true, std::move(f), ReadinessCheck::automatic);
  CHECK(s.variant->readiness_rule().find("R20") == 0);
  wr(*s.dev, PCI_BASE_ADDRESS_4, 0x40000000);
  REQUIRE(s.dev->reset().has_value());
  CHECK(s.vfio->resets == 1);
  CHECK(rd(*s.dev, PCI_BASE_ADDRESS_4) == 0xC);  // R14
  CHECK(s.vfio->status_reads >= 6);              // it polled until both read 0xFF
  CHECK((s.vfio->config[PCI_COMMAND] & PCI_COMMAND_MEMORY) == 0);  // decode restored after the reads
  // A device that never gets ready: ETIME after the timeout (200 ms here).
  s.vfio->ready_after_reads = 1 << 30;
  auto r = s.dev->reset();
  REQUIRE_FALSE(r.has_value());
  CHECK(r.error().err == ETIME);
}

TEST_CASE("host R20: a stand-in whose BAR0 lacks the registers says so unless readiness is skipped") {
  auto s = serve(true, std::make_unique<FakeVfio>(0x4000), ReadinessCheck::automatic);
  auto r = s.dev->region_info(RegionIndex{4});
  REQUIRE_FALSE(r.has_value());
  CHECK(r.error().message.find("has no readiness registers") != std::string::npos);
  auto skip = serve(true, std::make_unique<FakeVfio>(0x4000), ReadinessCheck::skip);
  CHECK(skip.dev->region_info(RegionIndex{4}).has_value());
  CHECK(skip.variant->readiness_rule() == "skipped");
}

TEST_CASE("host R31: a device with a CXL Device DVSEC is waited for through it") {
  auto f = std::make_unique<FakeVfio>(0x4000);
  // Extended capability list: the CXL Device DVSEC at 0x100, memory valid and active.
  const std::uint32_t h0 = PCI_EXT_CAP_ID_DVSEC | 1u << 16, h1 = 0x1E98 | 1u << 16 | 0x3Cu << 20, word = 3;
  std::memcpy(&f->config[0x100], &h0, 4);
  std::memcpy(&f->config[0x104], &h1, 4);
  std::memcpy(&f->config[0x100 + 0x1C], &word, 4);
  auto s = serve(true, std::move(f), ReadinessCheck::automatic);
  CHECK(s.variant->readiness_rule() == "R31 (CXL Device DVSEC at 0x100)");
  CHECK(s.dev->region_info(RegionIndex{4}).has_value());  // BAR0 too small for R20, but R31 decides
  const std::uint32_t not_valid = 0;
  std::memcpy(&s.vfio->config[0x100 + 0x1C], &not_valid, 4);
  auto r = s.dev->reset();
  REQUIRE_FALSE(r.has_value());
  CHECK(r.error().message.find("MEM_INFO_VALID not set (R31)") != std::string::npos);
}

TEST_CASE("host: what the host says about a function, and what serving it needs") {
  namespace fs = std::filesystem;
  const fs::path root = fs::temp_directory_path() / ("nvgrace-pcihost-" + std::to_string(::getpid()));
  fs::remove_all(root);
  const fs::path sys = root / "sys", dev = root / "dev";
  auto device = [&](const std::string& bdf, const std::string& driver) {
    const fs::path d = sys / "bus/pci/devices" / bdf;
    fs::create_directories(d);
    std::ofstream(d / "vendor") << "0x1b36\n";
    std::ofstream(d / "device") << "0x0010\n";
    if (!driver.empty()) {
      fs::create_directories(sys / "bus/pci/drivers" / driver);
      fs::create_directory_symlink(sys / "bus/pci/drivers" / driver, d / "driver");
    }
    fs::create_directories(sys / "kernel/iommu_groups/7/devices");
    fs::create_directory_symlink(sys / "kernel/iommu_groups/7", d / "iommu_group");
    fs::create_directory_symlink(d, sys / "kernel/iommu_groups/7/devices" / bdf);
  };
  device("0000:00:03.0", "nvme");
  auto st = probe_pci_host(sys, dev, *Bdf::parse("0000:00:03.0")).value();
  CHECK(st.vendor == 0x1b36);
  CHECK(st.driver == "nvme");
  CHECK(st.iommu_group == 7u);
  CHECK(st.bind_advice().find("bound to nvme, not vfio-pci") != std::string::npos);
  CHECK(st.bind_advice().find("echo vfio-pci > /sys/bus/pci/devices/0000:00:03.0/driver_override") != std::string::npos);
  auto r = serve_readiness(st, dev, "mem");
  CHECK_FALSE(r.ready);
  REQUIRE(r.missing.size() == 4);  // the driver, the group (its only member is on nvme), any VFIO API, /dev/mem
  CHECK(r.missing[1].find("IOMMU group 7 is not viable") == 0);
  CHECK(r.missing[2].find("no VFIO API is usable") == 0);
  if (test::kDevmemNormal)
    CHECK(r.missing[3].find("/dev/mem is not reachable") == 0);
  else  // R40: refused for its memory type before it is even opened
    CHECK(r.missing[3].find("/dev/mem gives usemem and resmem as Device-nGnRnE here (R40)") != std::string::npos);
  // Bound to vfio-pci, with a second function of the group on another driver.
  fs::remove(sys / "bus/pci/devices/0000:00:03.0/driver");
  fs::create_directories(sys / "bus/pci/drivers/vfio-pci");
  fs::create_directory_symlink(sys / "bus/pci/drivers/vfio-pci", sys / "bus/pci/devices/0000:00:03.0/driver");
  device("0000:00:03.1", "e1000e");
  st = probe_pci_host(sys, dev, *Bdf::parse("0000:00:03.0")).value();
  CHECK_FALSE(st.group_viable());
  CHECK(st.group_members_text() == "0000:00:03.0 (vfio-pci), 0000:00:03.1 (e1000e)");
  // The nodes of the group API exist and open: ready with "group".
  fs::remove(sys / "bus/pci/devices/0000:00:03.1/driver");
  fs::create_directories(dev / "vfio");
  std::ofstream(dev / "vfio/vfio") << "";
  std::ofstream(dev / "vfio/7") << "";
  std::ofstream(dev / "mem") << "";
  st = probe_pci_host(sys, dev, *Bdf::parse("0000:00:03.0")).value();
  r = serve_readiness(st, dev, "mem");
  INFO((r.missing.empty() ? std::string() : r.missing[0]));
  CHECK(r.ready == test::kDevmemNormal);
  CHECK(r.api == "group");
  CHECK(r.missing.size() == (test::kDevmemNormal ? 0u : 1u));
  CHECK(serve_readiness(st, dev, std::nullopt).ready);  // the kernel's nvgrace-gpu bound: no /dev/mem needed
  // --host-memory's device-DAX instance instead of /dev/mem (R40): its node
  // must open, whatever /dev/mem's memory type.
  r = serve_readiness(st, dev, "dax0.0");
  REQUIRE(r.missing.size() == 1);
  CHECK(r.missing[0].find((dev / "dax0.0").string() + " is not reachable (") == 0);
  std::ofstream(dev / "dax0.0") << "";
  CHECK(serve_readiness(st, dev, "dax0.0").ready);
  fs::remove_all(root);
}
