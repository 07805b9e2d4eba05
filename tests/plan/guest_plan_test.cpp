// Guest BARs and plan: nvgrace-model.md R1, R10, R11, R25.
#include <catch2/catch.hpp>

#include <algorithm>

#include "nvgrace/plan/guest_plan.hpp"
#include "nvgrace/pciemu/identity.hpp"
#include "nvgrace/pciemu/layout.hpp"

using namespace nvgrace;
using namespace nvgrace::pciemu;
using namespace nvgrace::plan;

namespace {
std::vector<GuestBar> bars_for(std::uint16_t id, std::uint64_t size, bool bug) {
  auto l = compute_layout({0x400000000000, size, bug});
  REQUIRE(l.has_value());
  return visible_bars(*find_identity(id), *l);
}
std::vector<unsigned> range(unsigned first, unsigned last) {
  std::vector<unsigned> v;
  for (unsigned n = first; n <= last; ++n) v.push_back(n);
  return v;
}
}  // namespace

TEST_CASE("R11: GH200 guest sees BAR0 real, BAR2 resmem and BAR4 usemem") {
  auto bars = bars_for(0x2342, 96 * GiB, true);
  REQUIRE(bars.size() == 3);
  CHECK(bars[0].index == BarIndex{0});
  CHECK(bars[0].role == BarRole::device);
  CHECK(bars[0].size == 16 * MiB);
  CHECK(bars[1].index == BarIndex{2});
  CHECK(bars[1].role == BarRole::resmem);
  CHECK(bars[1].size == 1 * GiB);
  CHECK(bars[2].index == BarIndex{4});
  CHECK(bars[2].role == BarRole::usemem);
  CHECK(bars[2].size == 128 * GiB);  // the real 32 MiB BAR4 is hidden
}

TEST_CASE("R10: GB200 keeps its real 256 GiB BAR2 next to the fake BAR4") {
  auto bars = bars_for(0x2941, 186 * GiB, false);
  REQUIRE(bars.size() == 3);
  CHECK(bars[1].index == BarIndex{2});
  CHECK(bars[1].role == BarRole::device);
  CHECK(bars[1].size == 256 * GiB);
  CHECK(bars[2].role == BarRole::usemem);
  CHECK(bars[2].size == 256 * GiB);
}

TEST_CASE("R5: a passthrough device shows only its real BARs") {
  auto l = compute_layout({0, 0, true});
  auto bars = visible_bars(*find_identity(0x2342), *l);
  REQUIRE(bars.size() == 3);
  CHECK(bars[2].index == BarIndex{4});
  CHECK(bars[2].size == 32 * MiB);
  CHECK(bars[2].role == BarRole::device);
}

TEST_CASE("R25 public configuration: one GH200 fits QEMU's 512G default with GI nodes 2..9 after two memory nodes") {
  std::vector<std::vector<GuestBar>> gpus{bars_for(0x2342, 96 * GiB, true)};
  auto plan = plan_guest(gpus, 2);
  REQUIRE(plan.has_value());
  CHECK(plan->windows[0].size == 129 * GiB + 16 * MiB);
  CHECK(plan->windows[0].align == 128 * GiB);
  CHECK(plan->mmio64_bytes == 129 * GiB + 16 * MiB);
  // The public configuration used 4T: more than needed, consistent with the model.
  CHECK(plan->highmem_mmio_size == 512 * GiB);
  CHECK(plan->highmem_mmio_size <= 4 * TiB);
  REQUIRE(plan->gi_nodes.size() == 1);
  CHECK(plan->gi_nodes[0] == range(2, 9));
  CHECK(plan->guest_numa_nodes == 2);
}

TEST_CASE("R25 public configuration: two GB200 need 2T, as the working setup used") {
  auto one = bars_for(0x2941, 186 * GiB, false);
  std::vector<std::vector<GuestBar>> gpus{one, one};
  auto plan = plan_guest(gpus, 1);
  REQUIRE(plan.has_value());
  // Per port: 256 GiB real BAR2 + 256 GiB fake BAR4 + 64 MiB BAR0.
  CHECK(plan->windows[0].size == 512 * GiB + 64 * MiB);
  CHECK(plan->windows[0].align == 256 * GiB);
  CHECK(plan->windows[1].offset == 768 * GiB);
  CHECK(plan->mmio64_bytes == 1280 * GiB + 64 * MiB);
  CHECK(plan->highmem_mmio_size == 2 * TiB);
  CHECK(plan->gi_nodes[0] == range(1, 8));
  CHECK(plan->gi_nodes[1] == range(9, 16));
}

TEST_CASE("R25: four GH200 overflow QEMU's 512G default window") {
  auto one = bars_for(0x2342, 96 * GiB, true);
  std::vector<std::vector<GuestBar>> gpus{one, one, one, one};
  auto plan = plan_guest(gpus, 1);
  REQUIRE(plan.has_value());
  CHECK(plan->mmio64_bytes > kQemuDefaultHighmemMmio);
  CHECK(plan->highmem_mmio_size == 1 * TiB);
  CHECK(plan->windows[3].offset == 3 * 256 * GiB);  // each 129G window aligned to 128G
}

TEST_CASE("R25: windows are placed largest alignment first") {
  auto small = bars_for(0x2342, 2 * GiB, true);  // BAR4 1 GiB... window 2 GiB + 16 MiB
  auto big = bars_for(0x2941, 186 * GiB, false);
  std::vector<std::vector<GuestBar>> gpus{small, big};
  auto plan = plan_guest(gpus, 1);
  REQUIRE(plan.has_value());
  CHECK(plan->windows[1].offset == 0);
  CHECK(plan->windows[0].offset == 513 * GiB);  // 512G + 64M, aligned up to its 1 GiB BAR
}

TEST_CASE("R25: BARs that cannot fit the address space are an error, not a wrap") {
  std::vector<GuestBar> huge{{BarIndex{0}, BarRole::device, 1ull << 63, std::nullopt},
                             {BarIndex{2}, BarRole::device, 1ull << 63, std::nullopt},
                             {BarIndex{4}, BarRole::device, 1ull << 63, std::nullopt}};
  std::vector<std::vector<GuestBar>> gpus{huge};
  auto plan = plan_guest(gpus, 1);
  REQUIRE_FALSE(plan.has_value());
  CHECK(plan.error().message.find("overflow") != std::string::npos);
}
