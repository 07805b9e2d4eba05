// `nvgrace firmware`: the emulated Grace host's firmware description (R3,
// R38), read back by nvgrace's own reader as a guest's would read it: the
// SSDT through iasl and `inspect --acpi`, the device-tree fragment through
// dtc and a sysfs of_node (R6).
#include <catch2/catch.hpp>

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "nvgrace/pciemu/profiles.hpp"
#include "run_nvgrace.hpp"

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

// One scratch folder per test process, removed at exit.
struct Scratch {
  fs::path dir = fs::path(NVGRACE_TEST_BINARY_DIR) / ("firmware-test-" + std::to_string(getpid()));
  ~Scratch() {
    std::error_code ec;
    fs::remove_all(dir, ec);
  }
};

fs::path scratch(const std::string& name) {
  static Scratch s;
  fs::create_directories(s.dir);
  return s.dir / name;
}

std::string slurp(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  std::ostringstream s;
  s << f.rdbuf();
  return s.str();
}

int sh(const std::string& cmd) { return std::system(cmd.c_str()); }

}  // namespace

TEST_CASE("firmware: the SSDT of every profile reads back through iasl and inspect --acpi with its numbers") {
  for (const auto& p : nvgrace::pciemu::all_profiles()) {
    const std::string name(p.name);
    INFO(name);
    const auto aml = scratch(name + ".aml");
    // A Grace host's numbers, for a VMM whose DSDT is revision 2 (64-bit
    // integers); the SSDT read on its own is read with 64 bits too.
    auto r = run_nvgrace({"firmware", "--profile", name, "--mem-base", "0x400000000000", "--dsdt-revision", "2",
                          "--format", "aml", "-o", aml.string()});
    INFO(r.err);
    REQUIRE(r.exit_code == 0);
    auto i = run_nvgrace({"inspect", "--acpi", aml.string(), "--device-id", fmt::format("{:#x}", p.device_id),
                          "--json"});
    INFO(i.err);
    REQUIRE(i.exit_code == 0);
    const auto j = json::parse(i.out);
    REQUIRE(j["devices"].size() == 1);
    const auto& d = j["devices"][0];
    CHECK(d["acpi_path"] == "\\_SB_.PCI0.S18_");  // q35's slot 3 device
    CHECK(d["mem_base"] == 0x400000000000ull);
    CHECK(d["mem_size"] == p.mem_size);
    CHECK(d["numa"]["pxm_start"] == 16);
    CHECK(d["numa"]["pxm_count"] == 8);
    CHECK(d["status"] == "fake-bars");
  }
}

TEST_CASE("firmware: the _DSD lists the properties in edk2-nvidia's order, EGM last when asked (R38)") {
  auto r = run_nvgrace({"firmware", "--mem-base", "0x20000000", "--mem-size", "0x60000000", "--slot", "4.1",
                        "--egm-base", "0x100000000", "--egm-size", "0x40000000", "--egm-pxm", "2", "--dsdt-revision",
                        "2"});
  REQUIRE(r.exit_code == 0);
  const auto& t = r.out;
  std::vector<std::string> order{"gpu-mem-base-pa", "gpu-mem-pxm-start", "gpu-mem-pxm-count", "gpu-mem-size",
                                 "egm-base-pa", "egm-size", "egm-pxm"};
  std::size_t at = 0;
  for (const auto& name : order) {
    INFO(name);
    const auto pos = t.find("\"nvidia," + name + "\"");
    REQUIRE(pos != std::string::npos);
    CHECK(pos >= at);
    at = pos;
  }
  CHECK(t.find("Scope (\\_SB_.PCI0.S21)") != std::string::npos);  // devfn 4 << 3 | 1
  CHECK(t.find("memmap=0x60000000$0x20000000") != std::string::npos);
  CHECK(t.find("DefinitionBlock (\"\", \"SSDT\", 2,") != std::string::npos);  // 64-bit integers

  // And through iasl and the reader: the EGM numbers come back.
  const auto aml = scratch("egm.aml");
  REQUIRE(run_nvgrace({"firmware", "--mem-base", "0x20000000", "--mem-size", "0x60000000", "--egm-base",
                       "0x100000000", "--egm-size", "0x40000000", "--egm-pxm", "2", "--dsdt-revision", "2", "--format",
                       "aml", "-o", aml.string()})
              .exit_code == 0);
  auto i = run_nvgrace({"inspect", "--acpi", aml.string(), "--device-id", "0x2342", "--json"});
  REQUIRE(i.exit_code == 0);
  const auto d = json::parse(i.out)["devices"][0];
  CHECK(d["egm"]["base_pa"] == 0x100000000ull);
  CHECK(d["egm"]["size"] == 0x40000000ull);
  CHECK(d["egm"]["pxm"] == 2);
}

TEST_CASE("firmware: the device-tree fragment compiles with dtc into the VMM's tree, node and no-map range in place") {
  const auto frag = scratch("gpu.dtsi");
  auto r = run_nvgrace({"firmware", "--mem-base", "0xa0000000", "--mem-size", "0x60000000", "--format", "dts",
                        "--slot", "3", "-o", frag.string()});
  INFO(r.err);
  REQUIRE(r.exit_code == 0);
  // A stand-in for QEMU virt's dumped tree: the root's cells and the PCIe
  // host bridge node the fragment refers to by path.
  const auto dts = scratch("virt.dts");
  {
    std::ofstream f(dts);
    f << "/dts-v1/;\n/ {\n\t#address-cells = <2>;\n\t#size-cells = <2>;\n"
         "\tpcie@10000000 {\n\t\tcompatible = \"pci-host-ecam-generic\";\n\t\tdevice_type = \"pci\";\n"
         "\t\t#address-cells = <3>;\n\t\t#size-cells = <2>;\n\t};\n};\n"
      << slurp(frag);
  }
  const auto dtb = scratch("virt.dtb"), back = scratch("back.dts");
  REQUIRE(sh(fmt::format("dtc -q -I dts -O dtb -o {} {}", dtb.string(), dts.string())) == 0);
  REQUIRE(sh(fmt::format("dtc -q -I dtb -O dts -o {} {}", back.string(), dtb.string())) == 0);
  const auto text = slurp(back);
  INFO(text);
  CHECK(text.find("gpu@3 {") != std::string::npos);
  CHECK(text.find("reg = <0x1800 0x00 0x00 0x00 0x00>;") != std::string::npos);
  CHECK(text.find("nvidia,gpu-mem-base-pa = <0x00 0xa0000000>;") != std::string::npos);
  CHECK(text.find("nvidia,gpu-mem-size = <0x00 0x60000000>;") != std::string::npos);
  CHECK(text.find("nvgrace-gpu-memory@a0000000 {") != std::string::npos);
  CHECK(text.find("no-map;") != std::string::npos);
}

TEST_CASE("firmware: a device-tree node in sysfs (of_node) describes the GPU as the _DSD does (R6, R38)") {
  const fs::path root = scratch("sysfs");
  fs::remove_all(root);
  const fs::path node = root / "firmware/devicetree/base/pcie@10000000/gpu@3";
  fs::create_directories(node);
  auto put64 = [&](const char* name, std::uint64_t v, std::size_t bytes = 8) {
    std::string b;
    for (std::size_t i = 0; i < bytes; ++i) b.push_back(static_cast<char>(v >> (8 * (bytes - 1 - i))));
    std::ofstream(node / name, std::ios::binary) << b;
  };
  put64("nvidia,gpu-mem-base-pa", 0xa0000000);
  put64("nvidia,gpu-mem-size", 0x60000000);
  put64("nvidia,gpu-mem-pxm-start", 16);
  const fs::path dev = root / "bus/pci/devices/0000:00:03.0";
  fs::create_directories(dev);
  std::ofstream(dev / "vendor") << "0x10de\n";
  std::ofstream(dev / "device") << "0x2342\n";
  std::ofstream(dev / "config", std::ios::binary) << std::string(256, '\0');
  fs::create_directory_symlink("../../../../firmware/devicetree/base/pcie@10000000/gpu@3", dev / "of_node");

  // --acpi none: a host booted with a device tree has no ACPI tables.
  auto i = run_nvgrace({"inspect", "--acpi", "none", "--sysfs", root.string(), "--json"});
  INFO(i.err);
  REQUIRE(i.exit_code == 0);
  auto d = json::parse(i.out)["devices"][0];
  CHECK(d["dt_node"] == "/pcie@10000000/gpu@3");
  CHECK(d["mem_base"] == 0xa0000000ull);
  CHECK(d["mem_size"] == 0x60000000ull);
  CHECK(d["status"] == "fake-bars");

  // A property of one cell: Linux's device_property_read_u64 cannot read it,
  // and neither does nvgrace - the GPU is passthrough, with the reason (R5).
  put64("nvidia,gpu-mem-size", 0x60000000, 4);
  i = run_nvgrace({"inspect", "--acpi", "none", "--sysfs", root.string(), "--json"});
  REQUIRE(i.exit_code == 0);
  d = json::parse(i.out)["devices"][0];
  CHECK(d["status"] == "passthrough");
  CHECK(d["reason"].get<std::string>().find("nvidia,gpu-mem-size is 4 bytes") != std::string::npos);
}

TEST_CASE("firmware: bad input is one line and exit 2") {
  struct Case {
    std::vector<std::string> args;
    std::string says;
  };
  const std::vector<Case> cases{
      {{"firmware"}, "--mem-base is required"},
      {{"firmware", "--mem-base", "zz"}, "--mem-base"},
      {{"firmware", "--mem-base", "0x20000000", "--slot", "20"}, "--slot: '20' is not DEV or DEV.FN"},
      {{"firmware", "--mem-base", "0x20000000", "--slot", "3.8"}, "--slot"},
      {{"firmware", "--mem-base", "0x20000000", "--mem-size", "0x1000"}, "--mem-base/--mem-size"},
      {{"firmware", "--mem-base", "0x20000000", "--egm-size", "0x1000"}, "--egm-base and --egm-size go together"},
      {{"firmware", "--mem-base", "0x20000000", "--host-bridge", "/pcie@1"}, "--host-bridge goes with dts"},
      {{"firmware", "--mem-base", "0x20000000", "--format", "dts", "--acpi-device", "\\_SB.X"},
       "--acpi-device goes with asl or aml"},
      {{"firmware", "--mem-base", "0x20000000", "--format", "dts", "--host-bridge", "pcie"},
       "not a device-tree node path"},
      {{"firmware", "--mem-base", "0x20000000", "--acpi-device", "\\_SB.pci0"}, "not an ACPI name segment"},
      {{"firmware", "--mem-base", "0x20000000", "--format", "xml"}, "--format"},
      // QEMU's q35 DSDT is revision 1: Linux would read these as 32 bits.
      {{"firmware", "--mem-base", "0x20000000"},
       "--mem-size 0x1800000000 does not fit 32 bits, and a VMM whose DSDT is revision 1 (QEMU's q35: 1) has Linux "
       "read every AML integer as 32 bits (ACPICA takes the width from the DSDT): the driver would see 0x0"},
      {{"firmware", "--mem-base", "0x60000000000", "--mem-size", "0x68000000"},
       "--mem-base 0x60000000000 does not fit 32 bits"},
      {{"firmware", "--mem-base", "0x20000000", "--dsdt-revision", "0"}, "--dsdt-revision"},
  };
  for (const auto& c : cases) {
    INFO(c.args.back());
    auto r = run_nvgrace(c.args);
    CHECK(r.exit_code == 2);
    CHECK(r.err.find(c.says) != std::string::npos);
    CHECK(std::count(r.err.begin(), r.err.end(), '\n') == 1);
  }
}
