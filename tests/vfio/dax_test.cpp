// The device-DAX memory source of serve --host (R40): usemem at its host
// address through an instance whose offset 0 is at `start`; what it refuses.
// A memfd stands in for the instance's fd (the kernel's part - its pages and
// what KVM makes of them - is the arm64 host e2e's, run-host.sh aarch64).
#include <catch2/catch.hpp>

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "arch.hpp"
#include "nvgrace/pciemu/layout.hpp"
#include "nvgrace/sys/memfd.hpp"
#include "nvgrace/vfio/host/dax.hpp"
#include "nvgrace/vfio/host/memory_type.hpp"

using namespace nvgrace;
using vfio::host::DaxExtent;

namespace {

constexpr std::uint64_t kMiB = 1ull << 20;

pciemu::Layout layout(std::uint64_t base, std::uint64_t size, bool mig_hw_bug) {
  auto l = pciemu::compute_layout({base, size, mig_hw_bug, 64});
  REQUIRE(l.has_value());
  REQUIRE(l->usemem.has_value());
  return *l;
}

sys::UniqueFd instance(std::uint64_t size) {
  auto fd = sys::make_memfd("nvgrace-dax-test", size);
  REQUIRE(fd.has_value());
  return std::move(*fd);
}

}  // namespace

TEST_CASE("R40: device-DAX backs usemem at offset host_base - start, and the bytes land there") {
  // The instance starts 2 MiB into a pmem region (its info block), as the
  // kernel lays it out; usemem starts 2 MiB further in.
  const DaxExtent e{0x100200000, 1024 * kMiB, 2 * kMiB};
  const auto l = layout(e.start + 2 * kMiB, 512 * kMiB, false);
  auto fd = instance(e.size);
  const int raw = fd.get();
  auto b = vfio::host::make_dax_backend(l, std::move(fd), e, "/dev/dax0.0");
  REQUIRE(b.has_value());
  CHECK((*b)->kind() == "dax");
  CHECK((*b)->describe().find("/dev/dax0.0 (0x100200000+0x40000000, write-back) at offset 0x200000") !=
        std::string::npos);
  const auto use = (*b)->range(pciemu::MemRole::usemem);
  REQUIRE(use.has_value());
  CHECK(use->fd_offset == 2 * kMiB);
  CHECK(use->size == l.usemem->length);
  CHECK(use->cache == vfio::CacheMode::write_back);
  CHECK_FALSE((*b)->range(pciemu::MemRole::resmem).has_value());
  const std::uint64_t v = 0x0badc0ffee0dd00dull;
  std::memcpy(use->data + 0x1000, &v, 8);
  std::uint64_t back = 0;
  REQUIRE(::pread(raw, &back, 8, static_cast<off_t>(2 * kMiB + 0x1000)) == 8);
  CHECK(back == v);
}

TEST_CASE("R40: device-DAX refuses resmem (write-back only), memory outside the instance and off its granule") {
  const DaxExtent e{0x100200000, 1024 * kMiB, 2 * kMiB};
  SECTION("a layout with resmem (GH200 with the MIG bug)") {
    auto b = vfio::host::make_dax_backend(layout(e.start, 2048 * kMiB, true), instance(e.size), e, "/dev/dax0.0");
    REQUIRE_FALSE(b.has_value());
    CHECK(b.error().err == EPERM);
    CHECK(b.error().message.find("resmem (BAR2, 1 GiB) must be Normal non-cacheable") != std::string::npos);
  }
  SECTION("usemem starting before the instance") {
    auto b = vfio::host::make_dax_backend(layout(e.start - 2 * kMiB, 512 * kMiB, false), instance(e.size), e,
                                          "/dev/dax0.0");
    REQUIRE_FALSE(b.has_value());
    CHECK(b.error().err == ERANGE);
    CHECK(b.error().message == "/dev/dax0.0 holds 0x100200000..0x140200000; the GPU memory's usemem is "
                               "0x100000000..0x120000000");
  }
  SECTION("usemem running past the instance's end") {
    auto b = vfio::host::make_dax_backend(layout(e.start + 768 * kMiB, 512 * kMiB, false), instance(e.size), e,
                                          "/dev/dax0.0");
    REQUIRE_FALSE(b.has_value());
    CHECK(b.error().err == ERANGE);
  }
  SECTION("usemem off the instance's 2 MiB granule") {
    auto b = vfio::host::make_dax_backend(layout(e.start + kMiB, 512 * kMiB, false), instance(e.size), e,
                                          "/dev/dax0.0");
    REQUIRE_FALSE(b.has_value());
    CHECK(b.error().err == EINVAL);
    CHECK(b.error().message.find("maps in 2 MiB units") != std::string::npos);
  }
}

TEST_CASE("R40: a file that is not a device-DAX instance is refused by name") {
  auto fd = instance(4096);
  auto e = vfio::host::dax_extent(fd.get(), "/sys");
  REQUIRE_FALSE(e.has_value());
  CHECK(e.error().message == "not a character device, so not a device-DAX instance");
  sys::UniqueFd null(::open("/dev/null", O_RDWR | O_CLOEXEC));
  REQUIRE(null);
  e = vfio::host::dax_extent(null.get(), "/sys");
  REQUIRE_FALSE(e.has_value());
  CHECK(e.error().message.find("is a mem device, not a device-DAX instance") != std::string::npos);
}

TEST_CASE("R40: device-DAX memory is Normal in a KVM guest on x86, and on arm64 only with a KVM from Linux 6.17") {
  using vfio::host::dax_memory_type;
  for (const char* release : {"6.17.0", "6.17.0-rc1", "7.3.4+deb13-cloud-arm64", "10.0.0"}) {
    INFO(release);
    CHECK(dax_memory_type(release).usable);
  }
  // The kernels before the stage-2 change: Device memory on arm64 (measured
  // on Debian's 6.12 in the arm64 host e2e's nested guest).
  for (const char* release : {"6.12.117+deb13-cloud-arm64", "6.16.9", "5.15.0-91-generic"}) {
    INFO(release);
    const auto t = dax_memory_type(release);
    CHECK(t.usable == !test::kArm64);
    if (test::kArm64) {
      CHECK(t.why.find(std::string("KVM in Linux ") + release + " (before 6.17) maps memory outside the kernel's "
                       "linear map as Device memory at stage 2") == 0);
      CHECK(t.instead.find("run Linux 6.17 or later") == 0);
    }
  }
  // A release that says no version: not trusted on arm64.
  const auto odd = dax_memory_type("custom");
  CHECK(odd.usable == !test::kArm64);
  if (test::kArm64) CHECK(odd.why.find("the kernel release 'custom' is not MAJOR.MINOR") == 0);
  CHECK_FALSE(vfio::host::running_kernel_release().empty());
}

TEST_CASE("R40: the device-DAX instances come from sysfs's dax bus, each with its extent") {
  namespace fs = std::filesystem;
  const fs::path sys = fs::temp_directory_path() / ("nvgrace-dax-sysfs-" + std::to_string(::getpid()));
  fs::remove_all(sys);
  // No dax bus (no dax driver loaded): no instances, not an error.
  auto none = vfio::host::dax_instances(sys);
  REQUIRE(none.has_value());
  CHECK(none->empty());
  auto instance_dir = [&](const std::string& name, const char* start, const char* size, const char* align) {
    const fs::path d = sys / "bus/dax/devices" / name;
    fs::create_directories(d);
    std::ofstream(d / "resource") << start << "\n";
    std::ofstream(d / "size") << size << "\n";
    if (align) std::ofstream(d / "align") << align << "\n";
  };
  instance_dir("dax1.0", "0x240200000", "1071644672", "2097152");
  instance_dir("dax0.0", "0x100200000", "1073741824", "2097152");
  auto found = vfio::host::dax_instances(sys);
  REQUIRE(found.has_value());
  REQUIRE(found->size() == 2);
  CHECK((*found)[0].name == "dax0.0");
  CHECK((*found)[0].extent.start == 0x100200000);
  CHECK((*found)[0].extent.size == 1024 * kMiB);
  CHECK((*found)[0].extent.align == 2 * kMiB);
  CHECK((*found)[1].name == "dax1.0");
  CHECK((*found)[1].extent.start == 0x240200000);
  // An instance whose node lacks an attribute: named, not skipped.
  instance_dir("dax2.0", "0x300000000", "4096", nullptr);
  auto broken = vfio::host::dax_instances(sys);
  REQUIRE_FALSE(broken.has_value());
  CHECK(broken.error().message == "cannot read " + (sys / "bus/dax/devices/dax2.0/align").string());
  fs::remove_all(sys);
}

TEST_CASE("R40: inspect's device-DAX route: the instance holding usemem, usable where KVM keeps it Normal") {
  using vfio::host::DaxInstance;
  const std::vector<DaxInstance> instances{{"dax0.0", {0x100200000, 1024 * kMiB, 2 * kMiB}},
                                           {"dax1.0", {0x240200000, 1024 * kMiB, 2 * kMiB}}};
  // A GB200-like GPU (usemem only) in the second instance.
  const auto gb = layout(0x240200000 + 2 * kMiB, 512 * kMiB, false);
  auto r = vfio::host::find_dax_route(gb, instances, "7.3.0");
  REQUIRE(r.has_value());
  CHECK(r->name == "dax1.0");
  CHECK(r->usable);
  CHECK(r->why.empty());
  // Before 6.17 its KVM makes the memory Device at stage 2 on arm64.
  r = vfio::host::find_dax_route(gb, instances, "6.12.117+deb13-cloud-arm64");
  REQUIRE(r.has_value());
  CHECK(r->name == "dax1.0");
  CHECK(r->usable == !test::kArm64);
  if (test::kArm64) {
    CHECK(r->why.find("KVM in Linux 6.12.117+deb13-cloud-arm64 (before 6.17)") == 0);
    CHECK(r->why.find("; instead, run Linux 6.17 or later") != std::string::npos);
  }
  // A GH200 with the MIG bug has resmem, which device-DAX cannot give.
  const auto gh = layout(0x100200000, 2048 * kMiB, true);
  REQUIRE(gh.resmem.has_value());
  r = vfio::host::find_dax_route(gh, instances, "7.3.0");
  REQUIRE(r.has_value());
  CHECK(r->name == "dax0.0");
  CHECK_FALSE(r->usable);
  CHECK(r->why.find("dax0.0: device-DAX maps write-back only, and resmem (BAR2,") == 0);
  // Off the instance's 2 MiB granule: named, not usable.
  r = vfio::host::find_dax_route(layout(0x100200000 + kMiB, 512 * kMiB, false), instances, "7.3.0");
  REQUIRE(r.has_value());
  CHECK_FALSE(r->usable);
  CHECK(r->why.find("dax0.0 maps in 2 MiB units (its align); usemem at offset 0x100000") == 0);
  CHECK(r->why.find("give the instance an align it is on (4096 always is)") != std::string::npos);
  // Memory no instance holds: no route.
  CHECK_FALSE(vfio::host::find_dax_route(layout(0x400000000, 512 * kMiB, false), instances, "7.3.0").has_value());
}
