// The memory-type probe (R40) over functions built in the test: the
// emulated GPU's memfd-backed fake BARs behave as Normal memory; a mapping
// with no memory behind it faults and is reported, not fatal; the verdict
// follows the kinds of access that faulted.
#include <catch2/catch.hpp>

#include <sys/mman.h>

#include "nvgrace/probe/memory_type.hpp"
#include "nvgrace/sys/memfd.hpp"
#include "vfio/device_util.hpp"

namespace {

using namespace nvgrace;
using probe::AccessKind;
using probe::AccessOutcome;
using probe::RegionMemoryType;

// The probe's Target over a function of the test's; `fd`, when set, is
// handed out for every region instead of the function's own.
class TestTarget final : public probe::Target {
 public:
  explicit TestTarget(vfio::Function& f, int fd = -1) : f_(f), fd_(fd) {}
  vfio::Function& function() override { return fd_ < 0 ? f_ : swapped_; }
  std::string describe() const override { return "test"; }
  Result<std::vector<std::uint8_t>> region_info_raw(unsigned, std::uint32_t) override { return fail("not asked"); }
  std::optional<Result<void>> ioeventfd(std::uint64_t, std::uint32_t, std::uint64_t, int) override {
    return std::nullopt;
  }

 private:
  // The same function with every region mapped through `fd`.
  class Swapped final : public vfio::Function {
   public:
    explicit Swapped(TestTarget& t) : t_(t) {}
    vfio::DeviceInfo info() const override { return t_.f_.info(); }
    Result<vfio::RegionInfoView> region_info(RegionIndex i) override {
      auto v = t_.f_.region_info(i);
      if (v && v->fd >= 0) v->fd = t_.fd_;
      return v;
    }
    Result<vfio::IrqInfo> irq(unsigned i) const override { return t_.f_.irq(i); }
    Result<std::size_t> read(RegionIndex i, std::uint64_t o, std::span<std::uint8_t> out) override {
      return t_.f_.read(i, o, out);
    }
    Result<std::size_t> write(RegionIndex i, std::uint64_t o, std::span<const std::uint8_t> in) override {
      return t_.f_.write(i, o, in);
    }
    Result<void> reset() override { return t_.f_.reset(); }
    const vfio::DmaLimits& dma_limits() const override { return t_.f_.dma_limits(); }
    Result<void> dma_map(const vfio::DmaMapping& m) override { return t_.f_.dma_map(m); }
    Result<void> dma_unmap(Iova iova, std::uint64_t size) override { return t_.f_.dma_unmap(iova, size); }
    Result<void> set_irqs(const vfio::IrqSet& s) override { return t_.f_.set_irqs(s); }

   private:
    TestTarget& t_;
  };
  vfio::Function& f_;
  int fd_;
  Swapped swapped_{*this};
};

std::uint64_t read_u64(vfio::Function& f, unsigned region, std::uint64_t off) {
  std::array<std::uint8_t, 8> b{};
  REQUIRE(f.read(RegionIndex{region}, off, b).value() == 8);
  std::uint64_t v = 0;
  std::memcpy(&v, b.data(), 8);
  return v;
}

}  // namespace

TEST_CASE("R40: the emulated GPU's fake BARs behave as Normal memory, and the probe puts their bytes back") {
  auto dev = test::make_device("gh200");
  test::decode_on(*dev);
  const std::uint64_t mark = 0x5a5a00ff12345678ull;
  std::array<std::uint8_t, 8> b{};
  std::memcpy(b.data(), &mark, 8);
  for (unsigned r : {2u, 4u}) REQUIRE(dev->write(RegionIndex{r}, 0, b).value() == 8);
  TestTarget t(*dev);
  auto regions = probe::probe_memory_types(t);
  REQUIRE(regions.has_value());
  REQUIRE(regions->size() == 2);
  CHECK((*regions)[0].index == 2);
  CHECK((*regions)[1].index == 4);
  for (const auto& r : *regions) {
    INFO(probe::format_memory_types({r}));
    CHECK(r.verdict() == RegionMemoryType::Verdict::normal);
    CHECK(r.accesses.size() == 5);
    CHECK(read_u64(*dev, r.index, 0) == mark);
  }
  const auto text = probe::format_memory_types(*regions);
  CHECK(text.find("memory-type region 4: aligned 8-byte store and load ok; unaligned") != std::string::npos);
  CHECK(text.find("behaves as Normal memory\n") != std::string::npos);
}

TEST_CASE("R40: a mapping with no memory behind it faults on every access: reported, the process goes on") {
  auto dev = test::make_device("gh200");
  auto empty = sys::make_memfd("nvgrace-empty", 0);
  REQUIRE(empty.has_value());
  TestTarget t(*dev, empty->get());
  auto regions = probe::probe_memory_types(t);
  REQUIRE(regions.has_value());
  REQUIRE(regions->size() == 2);
  for (const auto& r : *regions) {
    CHECK(r.verdict() == RegionMemoryType::Verdict::faulting);
    // Every access that touches memory faulted (one that does not apply
    // here - DC ZVA where DCZID_EL0 prohibits it - touches none).
    for (const auto& a : r.accesses)
      CHECK((a.result == AccessOutcome::Result::faulted || (a.kind == AccessKind::other &&
                                                             a.result == AccessOutcome::Result::not_applicable)));
  }
  CHECK(probe::format_memory_types(*regions).find("FAULTED (SIGBUS)") != std::string::npos);
  // The probe turned memory decode on first, as a driver does (R20).
  CHECK((vfio::config_read(*dev, ConfigOffset{0x04}, 2).value() & 0x2) == 0x2);
}

TEST_CASE("R40: the verdict follows the kinds of access that faulted") {
  using R = AccessOutcome::Result;
  using V = RegionMemoryType::Verdict;
  auto region = [](R aligned, R unaligned, R other) {
    RegionMemoryType r;
    r.accesses = {{"aligned", AccessKind::aligned, aligned, {}},
                  {"unaligned", AccessKind::unaligned, unaligned, {}},
                  {"other", AccessKind::other, other, {}}};
    return r;
  };
  CHECK(region(R::ok, R::ok, R::ok).verdict() == V::normal);
  CHECK(region(R::ok, R::ok, R::not_applicable).verdict() == V::normal);
  CHECK(region(R::ok, R::faulted, R::ok).verdict() == V::device);
  CHECK(region(R::ok, R::faulted, R::faulted).verdict() == V::device);
  CHECK(region(R::faulted, R::faulted, R::faulted).verdict() == V::faulting);
  CHECK(region(R::ok, R::ok, R::faulted).verdict() == V::other_faulted);
  CHECK(region(R::ok, R::wrong, R::ok).verdict() == V::wrong);
  RegionMemoryType skipped;
  skipped.skipped = "not mappable";
  CHECK(skipped.verdict() == V::skipped);
}
