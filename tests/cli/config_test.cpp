// `nvgrace config --dump` read back by the real lspci (pciutils): R11-R15.
#include <catch2/catch.hpp>

#include <cstdio>
#include <fstream>
#include <regex>

#include <unistd.h>

#include "run_nvgrace.hpp"

namespace {

std::string run_shell(const std::string& cmd) {
  std::string out;
  FILE* p = popen(cmd.c_str(), "r");
  REQUIRE(p != nullptr);
  char buf[4096];
  while (std::size_t n = fread(buf, 1, sizeof buf, p)) out.append(buf, n);
  pclose(p);
  return out;
}

std::string lspci_decode(const std::string& dump) {
  if (run_shell("command -v lspci").empty()) FAIL("lspci (pciutils) is not installed: run scripts/setup");
  // One file per test process: ctest runs test cases in parallel.
  const std::string path = std::string(NVGRACE_TEST_BINARY_DIR) + "/lspci-dump-" + std::to_string(getpid()) + ".txt";
  std::ofstream(path) << dump;
  auto text = run_shell("lspci -F " + path + " -vvv 2>/dev/null");
  std::remove(path.c_str());
  return text;
}

// Firmware-style placement: BAR0 at 0x90_0000_0000, BAR2 at 0x80_0000_0000,
// BAR4 at 0x100_0000_0000, memory decode and bus master on.
const std::vector<std::string> kPlaced{"config", "--profile", "gh200",
                                       "--write", "0x10:4=0",  "--write", "0x14:4=0x90",
                                       "--write", "0x18:4=0",  "--write", "0x1c:4=0x80",
                                       "--write", "0x20:4=0",  "--write", "0x24:4=0x100",
                                       "--write", "0x04:2=0x6", "--dump"};

}  // namespace

TEST_CASE("config: the dump has lspci's device line and 256 hex lines of 16 bytes") {
  auto r = run_nvgrace({"config", "--profile", "gh200", "--dump"});
  REQUIRE(r.exit_code == 0);
  CHECK(r.out.rfind("01:00.0 3D controller: NVIDIA Corporation", 0) == 0);
  CHECK(r.out.find("\n00: de 10 42 23 00 00 10 00 a1 00 02 03 00 00 00 00\n") != std::string::npos);
  CHECK(r.out.find("\nff0: ") != std::string::npos);
  CHECK(std::count(r.out.begin(), r.out.end(), '\n') == 1 + 256 + 1);
}

TEST_CASE("config: all-ones to 0x20 and 0x24 shows 0x0000000C and 0xFFFFFFE0 (R12 acceptance)") {
  auto r = run_nvgrace({"config", "--profile", "gh200", "--write", "0x20:4=0xffffffff", "--write",
                        "0x24:4=0xffffffff", "--read", "0x20:4", "--read", "0x24:4", "--dump"});
  REQUIRE(r.exit_code == 0);
  CHECK(r.out.find("0x020:4 = 0x0000000c\n0x024:4 = 0xffffffe0\n") == 0);
  CHECK(r.out.find("\n20: 0c 00 00 00 e0 ff ff ff ") != std::string::npos);
}

TEST_CASE("config: the real lspci decodes placed BAR2 and BAR4 as 64-bit prefetchable (R11)") {
  auto r = run_nvgrace(kPlaced);
  REQUIRE(r.exit_code == 0);
  const auto text = lspci_decode(r.out);
  INFO(text);
  CHECK(text.find("Region 0: Memory at 9000000000 (64-bit, prefetchable)") != std::string::npos);
  CHECK(text.find("Region 2: Memory at 8000000000 (64-bit, prefetchable)") != std::string::npos);
  CHECK(text.find("Region 4: Memory at 10000000000 (64-bit, prefetchable)") != std::string::npos);
  CHECK(text.find("[disabled]") == std::string::npos);
  CHECK(text.find("Control: I/O- Mem+ BusMaster+") != std::string::npos);
  CHECK(text.find("Capabilities: [60] Power Management version 3") != std::string::npos);
  CHECK(text.find("Capabilities: [68] MSI-X: Enable- Count=6") != std::string::npos);
  CHECK(text.find("Express (v2) Endpoint") != std::string::npos);
  CHECK(text.find("Capabilities: [100 v2] Advanced Error Reporting") != std::string::npos);
  CHECK(text.find("Designated Vendor-Specific: Vendor=10de ID=0003") != std::string::npos);
  // pci.ids may or may not name 10de:2342; either way lspci must resolve the vendor.
  CHECK(std::regex_search(text, std::regex("^01:00\\.0 3D controller: NVIDIA Corporation (Device 2342|.*GH\\d+.*)")));
  CHECK(text.find("Subsystem: NVIDIA Corporation") != std::string::npos);
}

TEST_CASE("config: lspci sees decode off as disabled and W1C status cleared") {
  auto r = run_nvgrace({"config", "--profile", "gb200", "--write", "0x20:4=0", "--write", "0x24:4=0x400",
                        "--write", "0x06:2=0xffff", "--dump"});
  REQUIRE(r.exit_code == 0);
  const auto text = lspci_decode(r.out);
  INFO(text);
  CHECK(text.find("Region 4: Memory at 40000000000 (64-bit, prefetchable) [disabled]") != std::string::npos);
  CHECK(text.find("Status: Cap+") != std::string::npos);
  CHECK(text.find("Designated Vendor-Specific: Vendor=10de ID=0003") != std::string::npos);
}

TEST_CASE("config: bad --write and --read specs exit 2 naming the flag") {
  for (const auto& spec : {"0x20", "0x20:3=1", "0x20:4", "0x1000:1=0", "0xffe:4=0", "0x20:1=0x100", "x:4=1"}) {
    auto r = run_nvgrace({"config", "--write", spec});
    INFO(spec << ": " << r.err);
    CHECK(r.exit_code == 2);
    CHECK(r.err.find("--write") != std::string::npos);
  }
  auto r = run_nvgrace({"config", "--read", "0x20:4=5"});
  CHECK(r.exit_code == 2);
  CHECK(r.err.find("--read") != std::string::npos);
}
