// `nvgrace probe --memory-type` from the command line (R40): on the emulated
// server's fake BARs and, with --map, on one mapping of a file; the exit
// code says whether everything behaved as Normal memory.
#include <catch2/catch.hpp>

#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "run_nvgrace.hpp"
#include "serve_process.hpp"

namespace fs = std::filesystem;

namespace {

fs::path scratch_file(std::size_t bytes) {
  const auto p = fs::temp_directory_path() / ("nvgrace-probe-test-" + std::to_string(::getpid()));
  std::ofstream(p, std::ios::binary | std::ios::trunc) << std::string(bytes, '\x5a');
  return p;
}

}  // namespace

TEST_CASE("probe --memory-type: the emulated server's BAR2 and BAR4 behave as Normal memory, exit 0") {
  const auto sock = test::temp_path("probe-sock");
  test::ServeProcess serve({"--profile", "gh200", "--socket", sock});
  REQUIRE(serve.wait_socket(sock));
  const auto r = run_nvgrace({"probe", "--memory-type", "--socket", sock});
  INFO(r.out << r.err);
  CHECK(r.exit_code == 0);
  CHECK(r.out.find("memory-type region 2: aligned 8-byte store and load ok; unaligned") != std::string::npos);
  CHECK(r.out.find("memory-type region 4: aligned 8-byte store and load ok; unaligned") != std::string::npos);
}

TEST_CASE("probe --memory-type --map: a file's page is Normal memory and keeps its bytes, past its end nothing is") {
  const auto file = scratch_file(8192);
  auto r = run_nvgrace({"probe", "--memory-type", "--map", file.string() + "@0x1000"});
  INFO(r.out << r.err);
  CHECK(r.exit_code == 0);
  CHECK(r.out.find("@0x1000: aligned 8-byte store and load ok;") != std::string::npos);
  CHECK(r.out.find("behaves as Normal memory") != std::string::npos);
  {
    std::ifstream f(file, std::ios::binary);
    const std::string back((std::istreambuf_iterator<char>(f)), {});
    CHECK(back == std::string(8192, '\x5a'));  // put back as it was
  }
  r = run_nvgrace({"probe", "--memory-type", "--map", file.string() + "@0x2000"});
  CHECK(r.exit_code == 1);
  CHECK(r.out.find("no usable memory: even an aligned access faults") != std::string::npos);
  CHECK(r.err.find("does not behave as Normal memory (R40)") != std::string::npos);
  r = run_nvgrace({"probe", "--map", file.string()});
  CHECK(r.exit_code == 2);
  CHECK(r.err.find("--map requires --memory-type") != std::string::npos);
  r = run_nvgrace({"probe", "--memory-type", "--map", file.string() + "@lots"});
  CHECK(r.exit_code == 2);
  fs::remove(file);
}
