// The device-DAX memory source of serve --host (R40): usemem at its host
// address through an instance whose offset 0 is at `start`; what it refuses.
// A memfd stands in for the instance's fd (the kernel's part - its pages and
// what KVM makes of them - is the arm64 host e2e's, run-host.sh aarch64).
#include <catch2/catch.hpp>

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

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
