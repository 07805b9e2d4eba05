// Benchmark: nvgrace's AML reader against `iasl -d` (ACPICA's disassembler)
// on the same generated ~1 MiB DSDT, measured in one run. Prints both times
// and their ratio. Not a test: run it with scripts/bench.
#include <sys/wait.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

#include <fmt/format.h>

#include "nvgrace/acpi/aml.hpp"
#include "nvgrace/acpi/gpu.hpp"
#include "nvgrace/acpi/sources.hpp"

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

namespace {

// A Grace-style DSDT with `count` root ports, each with a GPU carrying a
// _DSD, plus the usual noise (a method with If/While, a region and a field).
// Three base-36 characters: unique 4-character ACPI names for 46,656 devices.
std::string b36(int i) {
  const char* digits = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ";
  return {digits[i / 1296 % 36], digits[i / 36 % 36], digits[i % 36]};
}

std::string generate_asl(int count) {
  std::string asl = "DefinitionBlock (\"\", \"DSDT\", 2, \"NVIDIA\", \"BENCH\", 1)\n{\n Scope (\\_SB)\n {\n";
  asl += "  Device (PCI0)\n  {\n   Name (_HID, EisaId (\"PNP0A08\"))\n   Name (_SEG, 9)\n";
  for (int i = 0; i < count; ++i) {
    asl += fmt::format(
        "   Device (R{0})\n   {{\n    Name (_ADR, 0x{4:04X}0000)\n"
        "    OperationRegion (O{0}, SystemMemory, 0x{1:X}, 0x100)\n"
        "    Field (O{0}, DWordAcc, NoLock, Preserve) {{ F{0}, 32 }}\n"
        "    Method (M{0}, 1, Serialized) {{\n     Local0 = Zero\n"
        "     While (Local0 < Arg0) {{ If (Local0 == 3) {{ Break }} Local0++ }}\n     Return (Local0)\n    }}\n"
        "    Device (GPU0)\n    {{\n     Name (_ADR, Zero)\n     Name (_DSD, Package () {{\n"
        "      ToUUID (\"daffd814-6eba-4d8c-8a91-bc9bbf4aa301\"),\n      Package () {{\n"
        "       Package () {{ \"nvidia,gpu-mem-base-pa\", 0x{2:X} }},\n"
        "       Package () {{ \"nvidia,gpu-mem-pxm-start\", 0x{3:X} }},\n"
        "       Package () {{ \"nvidia,gpu-mem-pxm-count\", 8 }},\n"
        "       Package () {{ \"nvidia,gpu-mem-size\", 0x17E4F00000 }}\n      }}\n     }})\n    }}\n   }}\n",
        b36(i), 0x10000000 + i * 0x1000, 0x400000000000ull + static_cast<unsigned long long>(i) * 0x10000000000ull,
        16 + 8 * i, i & 0xFFFF);
  }
  asl += "  }\n }\n}\n";
  return asl;
}

double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

int run(const std::string& cmd) {
  const int rc = std::system(cmd.c_str());
  return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

}  // namespace

int main(int argc, char** argv) {
  const int devices = argc > 1 ? std::atoi(argv[1]) : 4200;
  const fs::path dir = fs::temp_directory_path() / "nvgrace-acpi-bench";
  fs::create_directories(dir);
  std::ofstream(dir / "bench.asl") << generate_asl(devices);
  if (run(fmt::format("iasl -p {0}/bench {0}/bench.asl > {0}/iasl.log 2>&1", dir.string())) != 0) {
    fmt::print(stderr, "iasl failed to compile the generated table; see {}/iasl.log\n", dir.string());
    return 1;
  }
  auto tables = nvgrace::acpi::load_tables({dir / "bench.aml"});
  if (!tables) {
    fmt::print(stderr, "{}\n", tables.error().message);
    return 1;
  }
  const auto size = tables->tables[0].bytes.size();

  // nvgrace: best of 5 (in-process; includes finding the GPU nodes).
  double ours = 1e9;
  std::size_t gpus = 0;
  for (int i = 0; i < 5; ++i) {
    const auto t0 = Clock::now();
    auto ns = nvgrace::acpi::read_namespace(tables->tables);
    gpus = nvgrace::acpi::find_gpus(ns).size();
    ours = std::min(ours, seconds_since(t0));
    if (!ns.errors.empty()) fmt::print(stderr, "reader error: {}\n", ns.errors[0].to_string());
  }
  // iasl -d: best of 3 (a process each; includes writing the .dsl).
  double theirs = 1e9;
  for (int i = 0; i < 3; ++i) {
    const auto t0 = Clock::now();
    if (run(fmt::format("iasl -d -p {0}/dis {0}/bench.aml > {0}/iasl-d.log 2>&1", dir.string())) != 0) {
      fmt::print(stderr, "iasl -d failed; see {}/iasl-d.log\n", dir.string());
      return 1;
    }
    theirs = std::min(theirs, seconds_since(t0));
  }
  fmt::print("table: {} bytes of AML, {} GPU nodes found\n", size, gpus);
  fmt::print("nvgrace read_namespace + find_gpus: {:8.2f} ms\n", ours * 1e3);
  fmt::print("iasl -d (disassemble to .dsl):      {:8.2f} ms\n", theirs * 1e3);
  fmt::print("ratio iasl -d / nvgrace:            {:8.1f}x\n", theirs / ours);
  return gpus == static_cast<std::size_t>(devices) ? 0 : 1;
}
