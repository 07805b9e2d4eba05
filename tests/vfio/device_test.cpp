// The variant device's VFIO semantics: nvgrace-model.md R14, R16-R20.
#include <catch2/catch.hpp>

#include <linux/vfio.h>

#include <chrono>
#include <cstring>
#include <thread>

#include "device_util.hpp"
#include "nvgrace/pciemu/capabilities.hpp"
#include "nvgrace/vfio/region_info.hpp"

using namespace nvgrace;
using namespace nvgrace::vfio;
using namespace std::chrono_literals;

namespace {
constexpr std::uint64_t kUse = 95 * GiB;   // gh200 usemem length
constexpr std::uint64_t kBar4 = 128 * GiB;
std::vector<std::uint8_t> bytes(std::initializer_list<int> v) {
  std::vector<std::uint8_t> b;
  for (int x : v) b.push_back(static_cast<std::uint8_t>(x));
  return b;
}
}  // namespace

TEST_CASE("device info: PCI and RESET, 9 regions, 5 IRQ indexes") {
  auto d = test::make_device("gh200");
  CHECK(d->info().flags == (VFIO_DEVICE_FLAGS_PCI | VFIO_DEVICE_FLAGS_RESET));
  CHECK(d->info().num_regions == VFIO_PCI_NUM_REGIONS);
  CHECK(d->info().num_irqs == VFIO_PCI_NUM_IRQS);
  CHECK(d->irq(VFIO_PCI_MSIX_IRQ_INDEX)->count == 6);
  CHECK(d->irq(9).error().err == EINVAL);
}

TEST_CASE("R16: region 4 is 128 GiB with one 95 GiB sparse area, region 2 is 1 GiB, 3 and 5 are empty") {
  auto d = test::make_device("gh200");
  auto r4 = d->region(RegionIndex{4}).value();
  CHECK(r4.size == 0x2000000000);
  CHECK(r4.flags == (VFIO_REGION_INFO_FLAG_READ | VFIO_REGION_INFO_FLAG_WRITE | VFIO_REGION_INFO_FLAG_MMAP));
  REQUIRE(r4.sparse.size() == 1);
  CHECK(r4.sparse[0].offset == 0);
  CHECK(r4.sparse[0].size == 0x17C0000000);
  CHECK(d->region(RegionIndex{2})->size == 0x40000000);
  CHECK(d->region(RegionIndex{2})->write_combined);
  CHECK(d->region(RegionIndex{3})->size == 0);
  CHECK(d->region(RegionIndex{5})->size == 0);
  CHECK(d->region(RegionIndex{7})->size == 4096);
  CHECK(d->region(RegionIndex{9}).error().err == EINVAL);
}

TEST_CASE("R16: region info bytes follow struct vfio_region_info and the sparse-mmap capability") {
  auto d = test::make_device("gh200");
  const auto r4 = d->region(RegionIndex{4}).value();
  // Too small for the capability: the bare struct, CAPS set, argsz raised, cap_offset 0.
  auto small = encode_region_info(r4, sizeof(vfio_region_info));
  REQUIRE(small.size() == sizeof(vfio_region_info));
  vfio_region_info info{};
  std::memcpy(&info, small.data(), sizeof info);
  CHECK(info.argsz == sizeof(vfio_region_info) + sizeof(vfio_region_info_cap_sparse_mmap) +
                          sizeof(vfio_region_sparse_mmap_area));
  CHECK((info.flags & VFIO_REGION_INFO_FLAG_CAPS) != 0);
  CHECK(info.cap_offset == 0);
  CHECK(info.size == kBar4);
  CHECK(info.offset == region_offset(RegionIndex{4}));
  // vfio-user's convention: the same short reply, CAPS clear, argsz still raised.
  auto short_user = encode_region_info(r4, sizeof(vfio_region_info), std::nullopt, ShortReply::caps_flag_clear);
  vfio_region_info user_info{};
  std::memcpy(&user_info, short_user.data(), sizeof user_info);
  CHECK((user_info.flags & VFIO_REGION_INFO_FLAG_CAPS) == 0);
  CHECK(user_info.argsz == info.argsz);
  CHECK(user_info.cap_offset == 0);
  CHECK(encode_region_info(r4, info.argsz, std::nullopt, ShortReply::caps_flag_clear) ==
        encode_region_info(r4, info.argsz));  // full replies do not differ
  // Room enough: the capability chain follows the struct.
  auto full = encode_region_info(r4, info.argsz);
  REQUIRE(full.size() == info.argsz);
  std::memcpy(&info, full.data(), sizeof info);
  CHECK(info.cap_offset == sizeof(vfio_region_info));
  vfio_region_info_cap_sparse_mmap cap{};
  std::memcpy(&cap, full.data() + info.cap_offset, sizeof cap);
  CHECK(cap.header.id == VFIO_REGION_INFO_CAP_SPARSE_MMAP);
  CHECK(cap.header.version == 1);
  CHECK(cap.header.next == 0);
  CHECK(cap.nr_areas == 1);
  auto back = decode_region_info(full).value();
  CHECK(back.region.size == kBar4);
  CHECK(back.region.sparse.at(0).size == kUse);
  CHECK(back.cap_ids == std::vector<std::uint16_t>{VFIO_REGION_INFO_CAP_SPARSE_MMAP});
  // A region without areas has no capability at all.
  auto cfg = encode_region_info(d->region(RegionIndex{7}).value(), 1024);
  CHECK(cfg.size() == sizeof(vfio_region_info));
  std::memcpy(&info, cfg.data(), sizeof info);
  CHECK((info.flags & VFIO_REGION_INFO_FLAG_CAPS) == 0);
}

TEST_CASE("R17: reads and writes land in the backing memory at the right offsets") {
  auto d = test::make_device("gh200");
  auto pattern = bytes({0xDE, 0xAD, 0xBE, 0xEF});
  REQUIRE(d->write(RegionIndex{4}, 0x1000, pattern).value() == 4);
  REQUIRE(d->write(RegionIndex{2}, 0x10, pattern).value() == 4);
  const auto use = d->memory().range(pciemu::MemRole::usemem).value();
  const auto res = d->memory().range(pciemu::MemRole::resmem).value();
  CHECK(std::memcmp(use.data + 0x1000, pattern.data(), 4) == 0);
  CHECK(std::memcmp(res.data + 0x10, pattern.data(), 4) == 0);
  CHECK(res.fd == use.fd);
  CHECK(res.fd_offset == kUse);  // resmem follows usemem in one memfd, as on the host (R9)
  std::vector<std::uint8_t> out(4);
  REQUIRE(d->read(RegionIndex{4}, 0x1000, out).value() == 4);
  CHECK(out == pattern);
}

TEST_CASE("R17: an access straddling the memory length reads memory then 0xFF, and drops the tail of a write") {
  auto d = test::make_device("gh200");
  REQUIRE(d->write(RegionIndex{4}, kUse - 4, bytes({1, 2, 3, 4, 5, 6, 7, 8})).value() == 8);
  CHECK(d->dropped_writes() == 4);
  std::vector<std::uint8_t> out(8);
  REQUIRE(d->read(RegionIndex{4}, kUse - 4, out).value() == 8);
  CHECK(out == bytes({1, 2, 3, 4, 0xFF, 0xFF, 0xFF, 0xFF}));
  std::vector<std::uint8_t> tail(16);
  REQUIRE(d->read(RegionIndex{4}, kUse + 0x1234, tail).value() == 16);
  for (auto b : tail) CHECK(b == 0xFF);
}

TEST_CASE("R17: offset at or past the BAR size is EINVAL and an access past it is cut short") {
  auto d = test::make_device("gh200");
  std::vector<std::uint8_t> out(16);
  CHECK(d->read(RegionIndex{4}, kBar4, out).error().err == EINVAL);
  CHECK(d->read(RegionIndex{4}, ~0ull, out).error().err == EINVAL);
  CHECK(d->read(RegionIndex{4}, ~0ull - 7, out).error().err == EINVAL);
  CHECK(d->write(RegionIndex{4}, kBar4 + 1, out).error().err == EINVAL);
  CHECK(d->read(RegionIndex{4}, kBar4 - 4, out).value() == 4);
  CHECK(d->write(RegionIndex{2}, GiB - 2, out).value() == 2);
  CHECK(d->read(RegionIndex{3}, 0, out).error().err == EINVAL);  // size-0 regions
  CHECK(d->read(RegionIndex{5}, 0, out).error().err == EINVAL);
  CHECK(d->read(RegionIndex{6}, 0, out).error().err == EINVAL);
  CHECK(d->read(RegionIndex{9}, 0, out).error().err == EINVAL);
}

TEST_CASE("R17: zero-length accesses succeed with 0 inside a region and fail past it") {
  auto d = test::make_device("gh200");
  std::vector<std::uint8_t> none;
  CHECK(d->read(RegionIndex{4}, 0, none).value() == 0);
  CHECK(d->write(RegionIndex{4}, kBar4 - 1, none).value() == 0);
  CHECK(d->read(RegionIndex{4}, kBar4, none).error().err == EINVAL);
}

TEST_CASE("R18: mmap is limited to the memory length and overflow-checked") {
  auto d = test::make_device("gh200");
  auto ok = d->mmap(RegionIndex{4}, 0, kUse).value();
  CHECK(ok.fd >= 0);
  CHECK(ok.fd_offset == 0);
  CHECK(ok.cache == CacheMode::write_back);
  auto res = d->mmap(RegionIndex{2}, 0x1000, 0x1000).value();
  CHECK(res.fd_offset == kUse + 0x1000);
  CHECK(res.cache == CacheMode::write_combined);  // R19
  CHECK(d->mmap(RegionIndex{4}, 0, kUse + 1).error().err == EINVAL);
  CHECK(d->mmap(RegionIndex{4}, kUse, 0x1000).error().err == EINVAL);
  CHECK(d->mmap(RegionIndex{4}, 0x1000, ~0ull).error().err == EINVAL);  // offset + length wraps
  CHECK(d->mmap(RegionIndex{4}, ~0ull, 2).error().err == EINVAL);
  CHECK(d->mmap(RegionIndex{4}, 0, 0).error().err == EINVAL);
  CHECK(d->mmap(RegionIndex{0}, 0, 0x1000).error().err == EINVAL);
  CHECK(d->mmap(RegionIndex{7}, 0, 0x100).error().err == EINVAL);
}

TEST_CASE("R10: a GB200 has no resmem and its real BAR2 is trapped and reads all-ones") {
  auto d = test::make_device("gb200");
  CHECK_FALSE(d->memory().range(pciemu::MemRole::resmem));
  CHECK(d->region(RegionIndex{2})->sparse.empty());
  CHECK(d->mmap(RegionIndex{2}, 0, 0x1000).error().err == EINVAL);
  std::vector<std::uint8_t> out(4);
  CHECK(d->read(RegionIndex{2}, 0, out).value() == 4);
  CHECK(out == bytes({0xFF, 0xFF, 0xFF, 0xFF}));
  CHECK(d->region(RegionIndex{4})->sparse.at(0).size == 186 * GiB);
}

TEST_CASE("the config region is the emulated config space, reset zeroes the fake BARs (R14) and keeps the rest (R39)") {
  auto d = test::make_device("gh200");
  std::vector<std::uint8_t> out(8);
  REQUIRE(d->read(RegionIndex{7}, 0, out).value() == 8);
  CHECK(out == bytes({0xde, 0x10, 0x42, 0x23, 0x00, 0x00, 0x10, 0x00}));
  REQUIRE(d->write(RegionIndex{7}, 0x20, bytes({0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF})).value() == 8);
  REQUIRE(d->read(RegionIndex{7}, 0x20, out).value() == 8);
  CHECK(out == bytes({0x0C, 0x00, 0x00, 0x00, 0xE0, 0xFF, 0xFF, 0xFF}));
  REQUIRE(d->write(RegionIndex{7}, 0x24, bytes({0x00, 0x01, 0x00, 0x00})).value() == 4);
  REQUIRE(d->write(RegionIndex{7}, 0x04, bytes({0x02, 0x00})).value() == 2);
  CHECK(d->memory_decode());
  CHECK(d->bar_states()[2].address == 0x10000000000ull);
  // A 3-byte access splits into 2 + 1 and crosses nothing it should not.
  std::vector<std::uint8_t> three(3);
  REQUIRE(d->read(RegionIndex{7}, 0x00, three).value() == 3);
  CHECK(three == bytes({0xde, 0x10, 0x42}));
  CHECK(d->read(RegionIndex{7}, 4095, out).value() == 1);  // clipped at 4 KiB
  REQUIRE(d->write(RegionIndex{7}, 0x10, bytes({0x00, 0x00, 0x00, 0xf0, 0x01, 0x00, 0x00, 0x00})).value() == 8);
  d->reset();
  REQUIRE(d->read(RegionIndex{7}, 0x20, out).value() == 8);
  CHECK(out == bytes({0x0C, 0, 0, 0, 0, 0, 0, 0}));
  // R39: as the kernel's driver over vfio-pci, whose reset restores the
  // function's config state: COMMAND and the device's own BAR0 keep their values.
  CHECK(d->memory_decode());
  REQUIRE(d->read(RegionIndex{7}, 0x10, out).value() == 8);
  CHECK(out == bytes({0x0C, 0x00, 0x00, 0xf0, 0x01, 0x00, 0x00, 0x00}));
}

TEST_CASE("R20: BAR0 status registers read 0xFF once ready and other BAR0 registers store writes until reset") {
  auto d = test::make_device("gh200");
  std::vector<std::uint8_t> out(4);
  REQUIRE(d->read(RegionIndex{0}, kC2cLinkStatusReg, out).value() == 4);
  CHECK(out == bytes({0xFF, 0, 0, 0}));
  REQUIRE(d->read(RegionIndex{0}, kHbmTrainingStatusReg, out).value() == 4);
  CHECK(out == bytes({0xFF, 0, 0, 0}));
  REQUIRE(d->write(RegionIndex{0}, 0x100, bytes({1, 2, 3, 4})).value() == 4);
  REQUIRE(d->read(RegionIndex{0}, 0x100, out).value() == 4);
  CHECK(out == bytes({1, 2, 3, 4}));
  d->reset();
  REQUIRE(d->read(RegionIndex{0}, 0x100, out).value() == 4);
  CHECK(out == bytes({0, 0, 0, 0}));
}

TEST_CASE("R20: the first memory access waits for readiness, polling") {
  auto d = test::make_device("gh200", {500ms, 10ms, 5000ms});
  test::decode_on(*d);
  d->reset();  // the 500 ms count from here, however long creating the device took
  const auto t0 = std::chrono::steady_clock::now();
  std::vector<std::uint8_t> out(4);
  REQUIRE(d->read(RegionIndex{0}, kC2cLinkStatusReg, out).value() == 4);
  CHECK(out[0] == 0);  // not ready yet
  REQUIRE(d->read(RegionIndex{4}, 0, out).value() == 4);
  const auto waited = std::chrono::steady_clock::now() - t0;
  CHECK(waited >= 450ms);
  CHECK(waited < 4000ms);
  const auto t1 = std::chrono::steady_clock::now();
  REQUIRE(d->read(RegionIndex{4}, 0, out).value() == 4);  // checked once, not again
  CHECK(std::chrono::steady_clock::now() - t1 < 100ms);
}

TEST_CASE("R20: a GPU that never gets ready fails the access with ETIME and a clear message") {
  auto d = test::make_device("gh200", {std::chrono::hours(1), 20ms, 100ms});
  std::vector<std::uint8_t> out(4);
  auto r = d->read(RegionIndex{4}, 0, out);
  REQUIRE_FALSE(r.has_value());
  CHECK(r.error().err == ETIME);
  CHECK(r.error().message.find("GPU not ready after") == 0);
  CHECK(r.error().message.find("BAR0+0x1498 (C2C link) = 0x0") != std::string::npos);
  CHECK(d->mmap(RegionIndex{4}, 0, 4096).error().err == ETIME);
  // Config space and BAR0 do not wait.
  CHECK(d->read(RegionIndex{7}, 0, out).value() == 4);
}

TEST_CASE("R20: reset re-arms the readiness check, and the first access after it needs memory decode on") {
  auto d = test::make_device("gh200", {500ms, 10ms, 5000ms});
  std::vector<std::uint8_t> out(4);
  REQUIRE(d->read(RegionIndex{4}, 0, out).has_value());  // before any reset, decode off is no matter
  d->reset();
  const auto t0 = std::chrono::steady_clock::now();
  // R39: as 7.3's driver (nvgrace_gpu_check_device_ready): EIO while memory
  // decode is off, and the check stays pending.
  for (int i = 0; i < 2; ++i) {
    auto r = d->read(RegionIndex{4}, 0, out);
    REQUIRE_FALSE(r.has_value());
    CHECK(r.error().err == EIO);
    CHECK(d->write(RegionIndex{2}, 0, out).error().err == EIO);
  }
  test::decode_on(*d);
  REQUIRE(d->read(RegionIndex{4}, 0, out).has_value());
  CHECK(std::chrono::steady_clock::now() - t0 >= 400ms);  // and then waited for readiness
  d->reset();
  CHECK(d->read(RegionIndex{4}, 0, out).has_value());  // decode stayed on across the reset
}

namespace {
// A GB300 whose config space has a CXL Device DVSEC (R31), Memory_Active_Timeout code `code`.
std::unique_ptr<Variant> make_cxl_device(test::Readiness r, std::uint8_t code = 0) {
  auto gpu = pciemu::make_emulated_gpu("gb300", 0);
  REQUIRE(gpu.has_value());
  auto params = gpu->host;
  params.cxl_active_timeout = code;
  auto fn = emulated::EmulatedFunction::create(params, {r.ready_after, r.active_after});
  REQUIRE(fn.has_value());
  auto backend = make_memfd_backend(gpu->layout, "cxl");
  REQUIRE(backend.has_value());
  VariantOptions o;
  o.layout = gpu->layout;
  o.memory = std::move(*backend);
  o.device_id = gpu->profile.device_id;
  o.ready = {r.poll_interval, r.timeout};
  auto d = Variant::create(std::move(*fn), std::move(o));
  REQUIRE(d.has_value());
  test::decode_on(**d);
  return std::move(*d);
}
std::uint32_t cxl_word(Variant& d) {
  std::vector<std::uint8_t> w(4);
  REQUIRE(d.read(kConfigRegion, pciemu::cfg::kCxlDvsecCap + pciemu::kCxlRange1SizeLow, w).value() == 4);
  return static_cast<std::uint32_t>(w[0] | w[1] << 8 | w[2] << 16 | w[3] << 24);
}
}  // namespace

TEST_CASE("R31: with a CXL Device DVSEC, readiness is MEM_INFO_VALID then MEM_ACTIVE, not the BAR0 registers") {
  // MEM_INFO_VALID 600 ms after reset, MEM_ACTIVE 400 ms later: wide enough that the first look, right
  // after the reset, sees neither bit even under QEMU user mode on a loaded machine.
  auto d = make_cxl_device({600ms, 10ms, 30000ms, 400ms}, 2);
  CHECK(pciemu::decode_cxl_range_size_low(cxl_word(*d)).active_timeout == 16s);
  d->reset();
  const auto t0 = std::chrono::steady_clock::now();
  CHECK((cxl_word(*d) & 3) == 0);
  std::vector<std::uint8_t> out(4);
  REQUIRE(d->read(RegionIndex{4}, 0, out).has_value());
  CHECK(std::chrono::steady_clock::now() - t0 >= 900ms);  // waited for both bits, not only the first
  CHECK((cxl_word(*d) & 3) == 3);
  d->reset();  // re-armed, like R20
  CHECK((cxl_word(*d) & 3) == 0);
}

TEST_CASE("R31: MEM_INFO_VALID must come within 1 s, MEM_ACTIVE within the timeout the word encodes") {
  auto late_valid = make_cxl_device({1500ms, 10ms, 30000ms, 0ms}, 4);
  std::vector<std::uint8_t> out(4);
  late_valid->reset();  // the 1 s counts from here
  const auto t0 = std::chrono::steady_clock::now();
  auto r = late_valid->read(RegionIndex{4}, 0, out);
  REQUIRE_FALSE(r.has_value());
  CHECK(r.error().err == ETIME);
  CHECK(r.error().message.find("MEM_INFO_VALID not set (R31)") != std::string::npos);
  const auto gave_up = std::chrono::steady_clock::now() - t0;
  CHECK(gave_up >= 900ms);  // waited the 1 s of R31
  CHECK(gave_up < 10s);     // and gave up then, not at the 30 s of R20
  auto late_active = make_cxl_device({0ms, 10ms, 30000ms, 3000ms}, 0);  // code 0: 1 s
  late_active->reset();  // MEM_ACTIVE 3 s from here, 2 s after the timeout
  auto a = late_active->read(RegionIndex{4}, 0, out);
  REQUIRE_FALSE(a.has_value());
  CHECK(a.error().message.find("MEM_ACTIVE not set (R31)") != std::string::npos);
}
