// Identity table: nvgrace-model.md R1; profiles.
#include <catch2/catch.hpp>

#include "nvgrace/common/checked.hpp"
#include "nvgrace/pciemu/identity.hpp"
#include "nvgrace/pciemu/profiles.hpp"

using namespace nvgrace;
using namespace nvgrace::pciemu;

TEST_CASE("R1: every Grace device id is known with its generation") {
  for (int id : {0x2342, 0x2345, 0x2348}) CHECK(find_identity(static_cast<std::uint16_t>(id))->generation == Generation::hopper);
  for (int id : {0x2941, 0x31C2}) CHECK(find_identity(static_cast<std::uint16_t>(id))->generation == Generation::blackwell);
  CHECK(find_identity(0x2342)->model == "GH200 120GB");
  CHECK_FALSE(find_identity(0x2330));  // H100 SXM: not a Grace part
  CHECK(all_identities().size() == 5);
}

TEST_CASE("R1: real BARs as seen on hosts") {
  auto gh = find_identity(0x2342)->real_bars;
  REQUIRE(gh.size() == 3);
  CHECK(gh[0].size == 16 * MiB);
  CHECK(gh[1].size == 128 * GiB);
  CHECK(gh[2].size == 32 * MiB);
  auto gb = find_identity(0x2941)->real_bars;
  REQUIRE(gb.size() == 2);
  CHECK(gb[0].size == 64 * MiB);
  CHECK(gb[1].index == BarIndex{2});
  CHECK(gb[1].size == 256 * GiB);
}

TEST_CASE("built-in profiles match the foundation issue") {
  CHECK(find_profile("gh200")->device_id == 0x2342);
  CHECK(find_profile("gh200")->mem_size == 96 * GiB);
  CHECK(find_profile("gh200")->subsystem_id == 0x16eb);
  CHECK(find_profile("gh200-144g")->device_id == 0x2348);
  CHECK(find_profile("gh200-144g")->mem_size == 144 * GiB);
  CHECK(find_profile("gb200")->device_id == 0x2941);
  CHECK(find_profile("gb200")->mem_size == 186 * GiB);
  CHECK(find_profile("gb300")->device_id == 0x31C2);
  CHECK(find_profile("gb300")->mem_size == 288 * GiB);
  CHECK_FALSE(find_profile("h100"));
  for (const auto& p : all_profiles()) CHECK(find_identity(p.device_id));
  CHECK(emulated_mem_base(0) == 0x400000000000);
  CHECK(emulated_mem_base(1) == 0x400000000000 + 4 * TiB);
}
