// `nvgrace inspect --regions` and `nvgrace region`: the acceptance of the
// region-model issue (R14, R16-R20).
#include <catch2/catch.hpp>

#include <nlohmann/json.hpp>

#include "run_nvgrace.hpp"

using nlohmann::json;

TEST_CASE("inspect --regions --json: region 4 is 0x2000000000 with one sparse area of 0x17C0000000 (R16)") {
  auto r = run_nvgrace({"inspect", "--profile", "gh200", "--regions", "--json"});
  REQUIRE(r.exit_code == 0);
  auto regions = json::parse(r.out)["devices"][0]["regions"];
  REQUIRE(regions.size() == 9);
  CHECK(regions[4]["size"] == 0x2000000000ull);
  CHECK(regions[4]["flags"] == json::array({"read", "write", "mmap"}));
  CHECK(regions[4]["sparse_mmap"] == json::parse(R"([{"offset":0,"size":102005473280}])"));
  CHECK(regions[4]["cache"] == "write-back");
  CHECK(regions[2]["size"] == 0x40000000);
  CHECK(regions[2]["cache"] == "write-combined");
  CHECK(regions[3]["size"] == 0);
  CHECK(regions[5]["size"] == 0);
  CHECK(regions[7]["size"] == 4096);
  CHECK(regions[4]["offset"] == 4ull << 40);
}

TEST_CASE("inspect --regions prints the region table") {
  auto r = run_nvgrace({"inspect", "--profile", "gb200", "--regions"});
  REQUIRE(r.exit_code == 0);
  CHECK(r.out.find("  4   BAR4    0x4000000000   read,write,mmap  0x0+0x2e80000000 WB") != std::string::npos);
  CHECK(r.out.find("  2   BAR2    0x4000000000   read,write       -") != std::string::npos);
}

TEST_CASE("region: the last bytes of usemem are followed by 0xFF bytes of tail (R17)") {
  auto r = run_nvgrace({"region", "--profile", "gh200", "--write", "4:0x17BFFFFFF8=0102030405060708", "--read",
                        "4:0x17BFFFFFF8:16"});
  REQUIRE(r.exit_code == 0);
  CHECK(r.out.find("  0x0017bffffff8: 01 02 03 04 05 06 07 08 ff ff ff ff ff ff ff ff\n") != std::string::npos);
}

TEST_CASE("region: steps run in command-line order, writes past the BAR are cut short, reset clears") {
  // BAR2 (1 GiB resmem) at config 0x18: its low dword carries address bits 30-31.
  auto r = run_nvgrace({"region", "--read", "7:0x18:4", "--write", "7:0x18=ffffffff", "--read", "7:0x18:4",
                        "--write", "2:0x3ffffffe=aabbccdd", "--reset", "--read", "7:0x18:4"});
  REQUIRE(r.exit_code == 0);
  const auto before = r.out.find("0x000000000018: 0c 00 00 00");
  const auto sized = r.out.find("0x000000000018: 0c 00 00 c0");
  const auto cut = r.out.find("write 2:0x3ffffffe: 2 of 4 bytes");
  const auto reset = r.out.find("reset\n");
  const auto after = r.out.find("0x000000000018: 0c 00 00 00", reset);
  REQUIRE(before != std::string::npos);
  REQUIRE(sized != std::string::npos);
  REQUIRE(cut != std::string::npos);
  REQUIRE(reset != std::string::npos);
  REQUIRE(after != std::string::npos);
  CHECK(before < sized);
  CHECK(sized < cut);
  CHECK(cut < reset);
  CHECK(reset < after);
}

TEST_CASE("region: refused accesses exit 1 with the errno name") {
  auto past = run_nvgrace({"region", "--read", "4:0x2000000000:4"});
  CHECK(past.exit_code == 1);
  CHECK(past.err.find("EINVAL") != std::string::npos);
  auto empty = run_nvgrace({"region", "--read", "3:0:4"});
  CHECK(empty.exit_code == 1);
  CHECK(empty.err.find("EINVAL: region 3 has size 0") != std::string::npos);
  auto notready = run_nvgrace({"region", "--ready-after", "100000", "--ready-timeout", "50", "--ready-poll", "10",
                               "--read", "4:0:4"});
  CHECK(notready.exit_code == 1);
  CHECK(notready.err.find("ETIME: GPU not ready after") != std::string::npos);
}

TEST_CASE("region: malformed steps exit 2 naming the flag") {
  for (const auto& args : std::vector<std::vector<std::string>>{
           {"region", "--write", "4:0x10=abc"},
           {"region", "--write", "9:0x10=ab"},
           {"region", "--write", "4:0x10"},
           {"region", "--read", "4:0x10"},
           {"region", "--read", "4:0x10:1MiB"},
           {"region"}}) {
    auto r = run_nvgrace(args);
    INFO(r.err);
    CHECK(r.exit_code == 2);
    CHECK((r.err.find("--write") != std::string::npos || r.err.find("--read") != std::string::npos));
  }
}
