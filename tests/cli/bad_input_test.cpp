// Bad input to every command, as a new user types it: each case exits 2
// (usage) or 1 (refused operation) with exactly one line on stderr that
// names what is wrong, and never hangs. One table; one row per case.
#include <catch2/catch.hpp>

#include <sys/stat.h>

#include <filesystem>
#include <fstream>

#include <nlohmann/json.hpp>

#include "inspect.hpp"
#include "nvgrace/common/size.hpp"
#include "columns.hpp"
#include "run_nvgrace.hpp"
#include "nvgrace/runner/runner.hpp"

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

std::size_t lines(const std::string& s) { return static_cast<std::size_t>(std::count(s.begin(), s.end(), '\n')); }

// A scratch directory per test process, removed at exit.
struct Scratch {
  fs::path dir = fs::path(NVGRACE_TEST_BINARY_DIR) / ("bad-input-" + std::to_string(getpid()));
  Scratch() { fs::create_directories(dir); }
  ~Scratch() {
    std::error_code ec;
    fs::remove_all(dir, ec);
  }
};
Scratch& scratch() {
  static Scratch s;
  return s;
}

// A "table" of random-looking bytes whose signature holds a newline and whose
// length field claims more than the file has.
std::string random_aml() {
  const auto path = scratch().dir / "random.aml";
  std::ofstream out(path, std::ios::binary);
  const unsigned char bytes[] = {'D', 'S', '\n', 'T', 0xff, 0xff, 0, 0, 2, 0x1b, '[', '3', '1', 'm',
                                 0x01, 0x02, 0x80, 0x90, 0xa0, 0xb0, 0xc0, 0xd0, 0xe0, 0xf0, 0x00, 0x11,
                                 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88, 0x99, 0xaa, 0xbb, 0xcc, 0xdd};
  out.write(reinterpret_cast<const char*>(bytes), sizeof bytes);
  return path.string();
}

// The victim of --memory-file: a text file of 983 bytes.
std::string victim() {
  const auto path = scratch().dir / "victim.txt";
  std::ofstream(path) << std::string(982, 'x') << '\n';
  return path.string();
}

// A FIFO: neither a new file nor a regular one.
std::string fifo() {
  const auto path = scratch().dir / "fifo";
  ::mkfifo(path.c_str(), 0600);
  return path.string();
}

}  // namespace

TEST_CASE("bad input: every case exits 2 or 1 with one line naming the problem") {
  struct Case {
    std::vector<std::string> args;
    int exit_code;
    std::string fragment;
  };
  const std::string victim_path = victim();
  const auto mem = nvgrace::runner::guest_mem_limits();
  const std::string mem_range =
      nvgrace::format_size(mem.min) + ".." + nvgrace::format_size(mem.max);
  std::vector<Case> cases{
      // Table input that is not a table.
      {{"inspect", "--acpi", "/dev/zero"}, 2, "/dev/zero is not a regular file or a directory"},
      {{"inspect", "--acpi", "/proc/self/mem"}, 2, "cannot read /proc/self/mem"},
      {{"inspect", "--acpi", random_aml()}, 2, "(DS\\x0aT): truncated"},
      // Slots, durations, sizes, counts, ids.
      {{"config", "--slot", "notaslot"}, 2, "--slot: 'notaslot' is not a PCI slot"},
      {{"config", "--slot", "01:20.0"}, 2, "--slot"},
      {{"region", "--read", "4:0:8", "--ready-timeout", "-1"}, 2, "--ready-timeout: -1 is outside 1..3600000"},
      {{"region", "--read", "4:0:8", "--ready-poll", "-100"}, 2, "--ready-poll: -100 is outside 1..3600000"},
      {{"region", "--read", "4:0:8", "--ready-poll", "0"}, 2, "--ready-poll: 0 is outside"},
      {{"region", "--read", "4:0:8", "--ready-after", "-5"}, 2, "--ready-after"},
      {{"region", "--read", "4:0:8", "--ready-timeout", "soon"}, 2, "--ready-timeout: 'soon' is not a number"},
      {{"region", "--read", "4:0:8", "--memory-file", victim_path}, 1, "refusing to grow or overwrite it"},
      {{"region", "--read", "4:0:8", "--memory-file", fifo()}, 1, "fifo is not a regular file"},
      {{"run", "--guest-mem", "1MiB"}, 2, "--guest-mem: 1 MiB is not a multiple of 2 MiB in " + mem_range},
      {{"run", "--guest-mem", "33MiB"}, 2, "--guest-mem"},
      {{"run", "--guest-mem", "3GiB"}, 2, "--guest-mem"},
      // CPU models (R36): names, fields and values are checked before anything runs.
      {{"run", "--cpu", "bogus"}, 2, "--cpu: unknown CPU model 'bogus' (known: host, neoverse-v2-v1, grace-v1)"},
      {{"run", "--cpu", "grace-v1,feat_NOPE=1"}, 2, "--cpu:"},
      {{"run", "--cpu", "grace-v1,feat_SME=1"}, 2, "--cpu:"},
      {{"cpu", "--model", "bogus"}, 2, "--model: unknown CPU model 'bogus'"},
      {{"cpu", "--model", "grace-v1,sve=100"}, 2, "--model:"},
      {{"run", "--bench", "--bench-mib", "64", "--guest-mem", "64MiB"}, 2, "too small for a 64 MiB benchmark"},
      {{"run", "--timeout", "0"}, 2, "--timeout: 0 is outside 1..3600"},
      {{"serve", "--socket", "/tmp/never-bound.sock", "--mem-size", "1GiB"}, 2, "--mem-size"},
      {{"serve", "--socket", "/tmp/never-bound.sock", "--socket-mode", "999"}, 2, "--socket-mode"},
      {{"serve", "--socket", "/tmp/never-bound.sock", "--socket-group", "no-such-group-here"}, 2, "--socket-group"},
      {{"serve", "--socket", "/tmp/never-bound.sock", "--count", "abc"}, 2, "--count: 'abc' is not a number"},
      // The options of --host, given without it, say so.
      {{"serve", "--socket", "/tmp/never-bound.sock", "--host-memory", "/dev/dax0.0"}, 2, "--host-memory goes with --host"},
      {{"serve", "--socket", "/tmp/never-bound.sock", "--assume-device-id", "0x2941"}, 2,
       "--assume-device-id goes with --host"},
      {{"serve", "--socket", "/tmp/never-bound.sock", "--no-mig-bug"}, 2, "--no-mig-bug goes with --host"},
      {{"serve", "--socket", "/tmp/never-bound.sock", "--host", "0000:00:03.0", "--no-mig-bug"}, 2,
       "--no-mig-bug goes with --assume-device-id: a Grace GPU's own DVSEC says whether it has the MIG bug (R2)"},
      {{"serve", "--socket", "/tmp/never-bound.sock", "--mig-bug", "--no-mig-bug"}, 2, "--mig-bug excludes --no-mig-bug"},
      {{"inspect", "--profile", "gh200", "--count", "abc"}, 2, "--count: 'abc' is not a number"},
      {{"inspect", "--profile", "gh200", "--count", "65"}, 2, "--count: 65 is outside 1..64"},
      {{"run", "--count", "abc"}, 2, "--count: 'abc' is not a number"},
      {{"inspect", "--device-id", "2342", "--mem-base", "0", "--mem-size", "96GiB"}, 2, "did you mean 0x2342?"},
      {{"inspect", "--device-id", "0x10000", "--mem-base", "0", "--mem-size", "96GiB"}, 2, "larger than 0xffff"},
      // Guest plan targets and their limits (R25).
      {{"inspect", "--profile", "gh200", "--target", "qemu"}, 2, "--target: qemu not in {qemu-virt,qemu-q35,libvirt,"},
      {{"inspect", "--profile", "gh200", "--guest-numa-nodes", "121"}, 2, "--guest-numa-nodes: 121 is outside 1..120"},
      {{"inspect", "--profile", "gh200", "--count", "16"}, 1, "QEMU accepts NUMA node ids 0..127"},
      {{"inspect", "--profile", "gh200", "--guest-numa-nodes", "113", "--count", "2", "--target", "qemu-q35"}, 1,
       "need ids up to 128"},
      {{"inspect", "--profile", "gh200", "--libvirt-version", "11.3"}, 2, "--libvirt-version goes with --target libvirt"},
      {{"inspect", "--profile", "gh200", "--libvirt-machine", "q35"}, 2, "--libvirt-machine goes with --target libvirt"},
      {{"inspect", "--profile", "gh200", "--target", "libvirt", "--socket", "/s", "--libvirt-version", "eleven"}, 2,
       "--libvirt-version: 'eleven' is not a libvirt version"},
      {{"inspect", "--profile", "gh200", "--target", "libvirt", "--socket", "/s", "--libvirt-version", "8.1"}, 2,
       "--libvirt-version: 8.1 is older than 8.2"},
      {{"inspect", "--profile", "gh200", "--target", "libvirt", "--socket", "/s", "--libvirt-machine", "pc"}, 2,
       "--libvirt-machine: pc not in {virt,q35}"},
      {{"inspect", "--profile", "gh200", "--target", "libvirt"}, 2, "--target libvirt attaches the GPUs: give --socket"},
      {{"inspect", "--profile", "gh200", "--target", "cloud-hypervisor"}, 2, "give --socket"},
      {{"inspect", "--profile", "gh200", "--socket", ""}, 2, "--socket: the path is empty"},
      // Commands and help.
      {{"frobnicate"}, 2, "unknown command 'frobnicate': the commands are inspect, config, region, run, serve, cpu"},
      {{"help", "frobnicate"}, 2, "help: unknown command 'frobnicate'"},
      {{}, 2, "no command given"},
  };
  if (nvgrace::runner::arch_name() == "x86_64") {
    // CPU models are arm64's; an x86 host cannot run or check one.
    cases.push_back({{"run", "--cpu", "grace-v1"}, 2, "--cpu grace-v1: CPU models are for arm64 guests (R36)"});
    cases.push_back({{"cpu", "--check", "--model", "grace-v1"}, 1, "checking grace-v1 needs an arm64 KVM host"});
  }
  for (const auto& c : cases) {
    std::string cmdline;
    for (const auto& a : c.args) cmdline += a + " ";
    INFO("nvgrace " << cmdline);
    auto r = run_nvgrace(c.args);
    INFO("stderr: " << r.err);
    CHECK(r.exit_code == c.exit_code);
    CHECK(lines(r.err) == 1);
    CHECK(r.err.find(c.fragment) != std::string::npos);
  }
  // The victim file is untouched.
  CHECK(fs::file_size(victim_path) == 983);
}

TEST_CASE("bad input: --device-id takes decimal or 0x-hex and JSON prints ids as hex strings") {
  for (const char* id : {"9026", "0x2342", "0X2342"}) {
    auto r = run_nvgrace({"inspect", "--json", "--device-id", id, "--mem-base", "0", "--mem-size", "96GiB"});
    INFO(id << ": " << r.err);
    REQUIRE(r.exit_code == 0);
    CHECK(json::parse(r.out)["devices"][0]["device_id"] == "0x2342");
  }
}

TEST_CASE("bad input: a huge valid memory size is reported as unusable, exit 1, with the report (R25)") {
  auto r = run_nvgrace({"inspect", "--json", "--device-id", "0x2342", "--mem-base", "0", "--mem-size",
                        "0x8000000000000000"});
  INFO(r.err);
  CHECK(r.exit_code == 1);
  auto j = json::parse(r.out);
  CHECK(j["devices"][0]["status"] == "unusable");
  CHECK(j["devices"][0]["reason"].get<std::string>().find("no guest can hold its BARs") != std::string::npos);
  CHECK(j["devices"][0]["bars"].size() == 3);
  auto t = run_nvgrace({"inspect", "--device-id", "0x2342", "--mem-base", "0", "--mem-size", "0x8000000000000000"});
  CHECK(t.exit_code == 1);
  CHECK(t.out.find("status unusable") != std::string::npos);
}

TEST_CASE("bad input: GPUs that fit no guest together leave the plan empty with the reason (R25)") {
  // A GB200 with 2^62 bytes fits a guest alone (BAR4 2^62 + its 256 GiB BAR2:
  // a 2^63 window); two need more than any power-of-two window.
  nvgrace::cli::DeviceSpec spec;
  spec.device_id = 0x2941;
  spec.mem_size = std::uint64_t{1} << 62;
  spec.mig_hw_bug_source = "flag";
  spec.name = "gpu0";
  auto one = nvgrace::devices::build_report({spec}, {}).value();
  CHECK_FALSE(one.plan_error.has_value());
  CHECK_FALSE(one.any_unusable());
  auto spec2 = spec;
  spec2.name = "gpu1";
  auto two = nvgrace::devices::build_report({spec, spec2}, {}).value();
  REQUIRE(two.plan_error.has_value());
  CHECK(two.plan_error->find("the 2 usable GPUs fit no guest together") != std::string::npos);
  CHECK(two.any_unusable());
  CHECK(two.plan.windows.empty());
  CHECK(nvgrace::cli::to_json(two)["guest"]["error"] == *two.plan_error);
  CHECK(nvgrace::cli::to_table(two).find("guest plan: none:") != std::string::npos);
}

TEST_CASE("help: --version, help, help COMMAND, and every help line fits 80 columns and the usage says nvgrace") {
  auto v = run_nvgrace({"--version"});
  CHECK(v.exit_code == 0);
  CHECK(v.out.starts_with("nvgrace "));
  for (const std::vector<std::string>& args :
       std::vector<std::vector<std::string>>{{"help"}, {"--help"}, {"help", "inspect"}, {"help", "config"},
                                             {"help", "region"}, {"help", "run"}, {"help", "serve"}, {"help", "cpu"},
                                             {"serve", "--help"}, {"inspect", "--help"}}) {
    auto r = run_nvgrace(args);
    INFO(args.back() << "\n" << r.out);
    CHECK(r.exit_code == 0);
    CHECK(r.err.empty());
    CHECK(r.out.find("Usage: nvgrace") != std::string::npos);
    CHECK(r.out.find(NVGRACE_BIN) == std::string::npos);
    CHECK(wider_than(r.out, 80).empty());
  }
  auto run_help = run_nvgrace({"help", "run"});
  CHECK(run_help.out.find("(default: 60)") != std::string::npos);
  CHECK(run_help.out.find(nvgrace::format_size(nvgrace::runner::guest_mem_limits().min) + "..") != std::string::npos);
}
