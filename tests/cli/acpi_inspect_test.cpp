// `nvgrace inspect --acpi ... --sysfs ...`: the acceptance of the ACPI issue,
// on the iasl-compiled fixtures and a fake sysfs tree (R2-R6).
#include <catch2/catch.hpp>

#include <filesystem>
#include <fstream>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "nvgrace/vfio/host/memory_type.hpp"
#include "run_nvgrace.hpp"

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

const std::string kTables = std::string(NVGRACE_FIXTURE_DIR) + "/host-tables";

struct FakeFunction {
  const char* bdf;
  const char* vendor;
  const char* device;
  const char* acpi_path;  // nullptr: no firmware_node
  std::size_t config_size;
  bool dvsec_mig_supported;
};

// A sysfs tree with the files nvgrace reads: vendor, device, config,
// firmware_node/path (a directory instead of the kernel's symlink). One per
// test process (ctest runs test cases in parallel), removed at exit.
struct FakeSysfs {
  fs::path root = fs::path(NVGRACE_TEST_BINARY_DIR) / ("fake-sysfs-" + std::to_string(getpid()));
  ~FakeSysfs() {
    std::error_code ec;
    fs::remove_all(root, ec);
  }
};

std::string make_sysfs(const std::vector<FakeFunction>& fns) {
  static FakeSysfs tree;
  const fs::path& root = tree.root;
  fs::remove_all(root);
  for (const auto& f : fns) {
    const fs::path dir = root / "bus/pci/devices" / f.bdf;
    fs::create_directories(dir);
    std::ofstream(dir / "vendor") << f.vendor << '\n';
    std::ofstream(dir / "device") << f.device << '\n';
    if (f.acpi_path) {
      fs::create_directories(dir / "firmware_node");
      std::ofstream(dir / "firmware_node/path") << f.acpi_path << '\n';
    }
    std::vector<char> cfg(f.config_size, 0);
    if (f.config_size > 0x110) {
      // NVIDIA DVSEC 3 at 0x100, capability word at +0xA (R2).
      const unsigned char dvsec[] = {0x23, 0x00, 0x01, 0x00, 0xde, 0x10, 0x00, 0x01, 0x03, 0x00,
                                     static_cast<unsigned char>(f.dvsec_mig_supported ? 1 : 0), 0x00};
      std::copy(std::begin(dvsec), std::end(dvsec), cfg.begin() + 0x100);
    }
    std::ofstream(dir / "config", std::ios::binary).write(cfg.data(), static_cast<std::streamsize>(cfg.size()));
  }
  return root.string();
}

std::string standard_sysfs() {
  return make_sysfs({
      {"0009:01:00.0", "0x10de", "0x2342", "\\_SB_.PCI9.RP00.GPU0", 4096, true},
      {"0009:02:00.0", "0x10de", "0x2342", "\\_SB_.PCI9.RP01.GPU1", 256, false},
      {"0008:81:00.0", "0x10de", "0x2941", "\\_SB_.PCI8.RP00.GPU0", 4096, true},
      {"0007:01:00.0", "0x10de", "0x2348", "\\_SB_.PCI7.RP00.GPU0", 4096, false},
      {"0006:01:00.0", "0x10de", "0x2342", "\\_SB_.PCI6.RP00.GPU0", 4096, false},
      {"0005:00:01.0", "0x10de", "0x2342", "\\_SB_.PCI5.GPU0", 4096, false},
      {"0004:01:00.0", "0x10de", "0x2342", "\\_SB_.PCI4.RP00.GPU0", 4096, false},  // node not in the tables
      {"0000:05:00.0", "0x10de", "0x2330", "\\_SB_.PCI0.S05_", 4096, false},       // H100: not Grace
      {"0000:00:01.0", "0x8086", "0x1234", nullptr, 256, false},
  });
}

const json& by_bdf(const json& j, const std::string& bdf) {
  for (const auto& d : j["devices"])
    if (d["bdf"] == bdf) return d;
  FAIL("no device " << bdf);
  throw;
}

json run_json(std::vector<std::string> args, int expect_rc = 0) {
  auto r = run_nvgrace(args);
  INFO(r.err);
  REQUIRE(r.exit_code == expect_rc);
  return json::parse(r.out);
}

}  // namespace

TEST_CASE("ACPI acceptance: --acpi DIR --sysfs FAKE --all --json lists each GPU with its path, BDF, layout and NUMA") {
  auto j = run_json({"inspect", "--acpi", kTables, "--sysfs", standard_sysfs(), "--all", "--json"});
  CHECK(j["devices"].size() == 7);  // six GPU nodes + one sysfs GPU whose node is missing
  const auto& g0 = by_bdf(j, "0009:01:00.0");
  CHECK(g0["acpi_path"] == "\\_SB_.PCI9.RP00.GPU0");
  CHECK(g0["segment"] == 9);
  CHECK(g0["adr_chain"] == json::array({0, 0}));
  CHECK(g0["status"] == "fake-bars");
  CHECK(g0["mem_size"] == 0x17E4F00000ull);
  CHECK(g0["numa"]["pxm_start"] == 16);
  CHECK(g0["numa"]["pxm_count"] == 8);
  CHECK(g0["egm"]["base_pa"] == 0x200000000000ull);
  CHECK(g0["egm"]["pxm"] == 4);
  // Its config space has the DVSEC with bit 0 set: no MIG bug (R2), so no resmem.
  CHECK(g0["mig_hw_bug"] == false);
  CHECK(g0["mig_hw_bug_source"] == "config");
  for (const auto& b : g0["bars"]) CHECK(b["role"] != "resmem");

  const auto& g1 = by_bdf(j, "0009:02:00.0");
  CHECK(g1["acpi_path"] == "\\_SB_.PCI9.RP01.GPU1");  // from the SSDT
  CHECK(g1["mig_hw_bug_source"] == "device-id");      // 256-byte config: no extended space
  CHECK(g1["mig_hw_bug"] == true);
  CHECK(g1["numa"]["pxm_start"] == 24);

  const auto& gb = by_bdf(j, "0008:81:00.0");
  CHECK(gb["model"] == "GB200");
  CHECK(gb["status"] == "fake-bars");
  CHECK(gb["adr_chain"] == json::array({0x20000, 0}));
}

TEST_CASE("ACPI acceptance: a GPU without nvidia,gpu-mem-size is passthrough with a reason naming it (R5)") {
  auto j = run_json({"inspect", "--acpi", kTables, "--sysfs", standard_sysfs(), "--json"});
  const auto& d = by_bdf(j, "0007:01:00.0");
  CHECK(d["status"] == "passthrough");
  CHECK(d["reason"].get<std::string>().find("nvidia,gpu-mem-size is missing") != std::string::npos);
  CHECK(by_bdf(j, "0006:01:00.0")["reason"].get<std::string>().find("C2C link not up") != std::string::npos);
  CHECK(by_bdf(j, "0005:00:01.0")["reason"].get<std::string>().find("is a string") != std::string::npos);
  CHECK(by_bdf(j, "0004:01:00.0")["reason"].get<std::string>().find("not in the tables read") != std::string::npos);
  CHECK(j["acpi"]["tables"].size() == 2);
  CHECK(j["acpi"]["errors"].empty());
}

TEST_CASE("ACPI: --device picks one BDF and short BDFs get domain 0000") {
  auto j = run_json({"inspect", "--acpi", kTables, "--sysfs", standard_sysfs(), "--device", "0009:02:00.0", "--json"});
  REQUIRE(j["devices"].size() == 1);
  CHECK(j["devices"][0]["bdf"] == "0009:02:00.0");
  auto r = run_nvgrace({"inspect", "--acpi", kTables, "--sysfs", standard_sysfs(), "--device", "05:00.0"});
  CHECK(r.exit_code == 2);
  CHECK(r.err.find("--device 0000:05:00.0: 10de:2330 is not a Grace GPU") != std::string::npos);
}

TEST_CASE("ACPI offline: tables alone need --device-id and the MIG flags still apply") {
  auto r = run_nvgrace({"inspect", "--acpi", kTables});
  CHECK(r.exit_code == 2);
  CHECK(r.err.find("--device-id is needed") != std::string::npos);
  auto j = run_json({"inspect", "--acpi", kTables, "--device-id", "0x2941", "--json"});
  CHECK(j["devices"].size() == 6);
  for (const auto& d : j["devices"]) {
    CHECK(d["bdf"].is_null());
    CHECK(d["mig_hw_bug"] == false);
  }
  auto forced = run_json({"inspect", "--acpi", kTables, "--device-id", "0x2941", "--mig-bug", "--json"});
  CHECK(forced["devices"][0]["mig_hw_bug_source"] == "flag");
}

TEST_CASE("ACPI: acpidump text and .aml files give the same GPUs as the directory") {
  const std::string dir = NVGRACE_FIXTURE_DIR;
  auto a = run_json({"inspect", "--acpi", dir + "/grace_dsdt.acpidump", "--acpi", dir + "/ssdt_gpu.acpidump",
                     "--device-id", "0x2342", "--json"});
  auto b = run_json({"inspect", "--acpi", dir + "/grace_dsdt.aml", "--acpi", dir + "/ssdt_gpu.aml", "--device-id",
                     "0x2342", "--json"});
  REQUIRE(a["devices"].size() == b["devices"].size());
  for (std::size_t i = 0; i < a["devices"].size(); ++i) CHECK(a["devices"][i]["bars"] == b["devices"][i]["bars"]);
}

TEST_CASE("ACPI: bad inputs exit 2 with one line naming the flag") {
  struct Case {
    std::vector<std::string> args;
    const char* mentions;
  };
  const std::string sysfs = standard_sysfs();
  const std::vector<Case> cases{
      {{"inspect", "--acpi", "/nonexistent/tables"}, "--acpi"},
      {{"inspect", "--acpi", kTables, "--profile", "gh200"}, "--profile"},
      {{"inspect", "--acpi", kTables, "--device", "0009:01:00.0"}, "--device needs --sysfs"},
      {{"inspect", "--acpi", kTables, "--sysfs", sysfs, "--device", "zz:00.0"}, "--device"},
      {{"inspect", "--acpi", kTables, "--sysfs", sysfs, "--device", "0009:09:00.0"}, "--device"},
      {{"inspect", "--acpi", kTables, "--sysfs", sysfs, "--all", "--device", "0009:01:00.0"}, "--all"},
      {{"inspect", "--host", "--acpi", kTables}, "--host"},
      {{"inspect", "--sysfs", sysfs}, "--sysfs"},
  };
  for (const auto& c : cases) {
    auto r = run_nvgrace(c.args);
    INFO(r.err);
    CHECK(r.exit_code == 2);
    CHECK(std::count(r.err.begin(), r.err.end(), '\n') == 1);
    CHECK(r.err.find(c.mentions) != std::string::npos);
  }
}

TEST_CASE("ACPI: a GPU in the tables without a sysfs entry is reported not present, the others go on") {
  // \_SB_.PCI5.GPU0 is described by the tables but absent from this sysfs.
  const auto sysfs = make_sysfs({
      {"0009:01:00.0", "0x10de", "0x2342", "\\_SB_.PCI9.RP00.GPU0", 4096, true},
      {"0008:81:00.0", "0x10de", "0x2941", "\\_SB_.PCI8.RP00.GPU0", 4096, true},
  });
  auto r = run_nvgrace({"inspect", "--acpi", kTables, "--sysfs", sysfs, "--json"});
  INFO(r.err);
  REQUIRE(r.exit_code == 0);
  auto j = json::parse(r.out);
  const json* absent = nullptr;
  for (const auto& d : j["devices"])
    if (d["acpi_path"] == "\\_SB_.PCI5.GPU0") absent = &d;
  REQUIRE(absent != nullptr);
  CHECK((*absent)["status"] == "not-present");
  CHECK((*absent)["reason"].get<std::string>().find("has no PCI function") != std::string::npos);
  CHECK((*absent)["bars"].empty());
  CHECK(by_bdf(j, "0009:01:00.0")["status"] == "fake-bars");
  CHECK(by_bdf(j, "0008:81:00.0")["status"] == "fake-bars");
  // Only the present GPUs are planned.
  CHECK(j["guest"]["root_port_windows"].size() == 2);
  auto t = run_nvgrace({"inspect", "--acpi", kTables, "--sysfs", sysfs});
  CHECK(t.exit_code == 0);
  CHECK(t.out.find("status not-present") != std::string::npos);
}

TEST_CASE("ACPI: --device given twice is refused") {
  auto r = run_nvgrace({"inspect", "--acpi", kTables, "--sysfs", standard_sysfs(), "--device", "0009:01:00.0",
                        "--device", "0009:01:00.0"});
  CHECK(r.exit_code == 2);
  CHECK(std::count(r.err.begin(), r.err.end(), '\n') == 1);
  CHECK(r.err.find("--device 0009:01:00.0 is given twice") != std::string::npos);
}

TEST_CASE("ACPI: the table output names the source, the node and the NUMA partitions") {
  auto r = run_nvgrace({"inspect", "--acpi", kTables, "--sysfs", standard_sysfs(), "--device", "0009:01:00.0"});
  REQUIRE(r.exit_code == 0);
  CHECK(r.out.find("ACPI: 2 table(s) read (DSDT, SSDT1); 0 reader error(s), 0 warning(s)") != std::string::npos);
  CHECK(r.out.find("  acpi   \\_SB_.PCI9.RP00.GPU0 (segment 9, _ADR 0.0/0.0)") != std::string::npos);
  CHECK(r.out.find("  pci    0009:01:00.0") != std::string::npos);
  CHECK(r.out.find("  numa   PXM 16..23 (8 memory partitions)") != std::string::npos);
  CHECK(r.out.find("MIG bug: no (from config)") != std::string::npos);
}

TEST_CASE("R40: inspect --sysfs --dev names the device-DAX instance that holds a GPU's usemem, and what it gives here") {
  const fs::path sys = standard_sysfs();
  const std::string bdf = "0009:01:00.0";  // GH200 whose DVSEC says no MIG bug: usemem only
  // Where its usemem is, as inspect lays it out.
  const auto plain = run_json({"inspect", "--acpi", kTables, "--sysfs", sys.string(), "--device", bdf, "--json"});
  std::uint64_t base = 0, length = 0;
  for (const auto& b : by_bdf(plain, bdf)["bars"])
    if (b["role"] == "usemem") {
      base = b["host_base"].get<std::uint64_t>();
      length = b["length"].get<std::uint64_t>();
    }
  REQUIRE(length > 0);
  // Bound to vfio-pci, alone in IOMMU group 5, with the group API's nodes.
  const fs::path fn = sys / "bus/pci/devices" / bdf;
  fs::create_directories(sys / "bus/pci/drivers/vfio-pci");
  fs::create_directory_symlink(sys / "bus/pci/drivers/vfio-pci", fn / "driver");
  fs::create_directories(sys / "kernel/iommu_groups/5/devices");
  fs::create_directory_symlink(sys / "kernel/iommu_groups/5", fn / "iommu_group");
  fs::create_directory_symlink(fn, sys / "kernel/iommu_groups/5/devices" / bdf);
  const fs::path dev = sys / "dev-root";
  fs::create_directories(dev / "vfio");
  for (const char* node : {"vfio/vfio", "vfio/5", "mem", "dax1.0"}) std::ofstream(dev / node) << "";
  // Two instances: dax0.0 elsewhere, dax1.0 from 2 MiB below usemem to past its end.
  auto instance = [&](const char* name, std::uint64_t start, std::uint64_t size) {
    const fs::path d = sys / "bus/dax/devices" / name;
    fs::create_directories(d);
    std::ofstream(d / "resource") << fmt::format("{:#x}\n", start);
    std::ofstream(d / "size") << size << "\n";
    std::ofstream(d / "align") << 4096 << "\n";  // usemem's length is not a 2 MiB multiple
  };
  instance("dax0.0", 0x100000000, 1ull << 30);
  instance("dax1.0", base - (2ull << 20), length + (4ull << 20));

  auto j = run_json({"inspect", "--acpi", kTables, "--sysfs", sys.string(), "--dev", dev.string(), "--device", bdf,
                     "--json"});
  const auto& serve = by_bdf(j, bdf)["serve"];
  INFO(serve.dump());
  // What this kernel's KVM makes of device-DAX memory, and of /dev/mem's, on
  // the architecture of this build (the answers have their own tests).
  const bool dax_ok =
      nvgrace::vfio::host::dax_memory_type(nvgrace::vfio::host::running_kernel_release()).usable;
  const bool devmem_ok = nvgrace::vfio::host::devmem_memory_type().usable;
  const auto& hm = serve["host_memory"];
  CHECK(hm["path"] == (dev / "dax1.0").string());
  CHECK(hm["usable"] == dax_ok);
  CHECK(hm["needed"] == (dax_ok && !devmem_ok));
  CHECK(hm["usemem"] == (dax_ok ? json("write-back") : json(nullptr)));
  CHECK(hm["why"].is_null() == dax_ok);
  CHECK(serve["ready"] == (devmem_ok || dax_ok));
  CHECK(serve["memory"]["path"] == (dev / "mem").string());
  auto t = run_nvgrace({"inspect", "--acpi", kTables, "--sysfs", sys.string(), "--dev", dev.string(), "--device", bdf});
  REQUIRE(t.exit_code == 0);
  // The table wraps long lines at 80 columns under their lead: joined here.
  for (std::size_t at; (at = t.out.find("\n                ")) != std::string::npos;)
    t.out.replace(at, t.out.find_first_not_of(' ', at + 1) - at, " ");
  INFO(t.out);
  if (dax_ok)
    CHECK(t.out.find("serve  memory: --host-memory " + (dev / "dax1.0").string() + ": usemem write-back (R40)") !=
          std::string::npos);
  else
    CHECK(t.out.find("serve  memory: --host-memory " + (dev / "dax1.0").string() + ": refused:") != std::string::npos);
  CHECK((t.out.find(", with --host-memory " + (dev / "dax1.0").string()) != std::string::npos) == (dax_ok && !devmem_ok));

  // The instance's node missing under --dev: named, when serving needs it.
  fs::remove(dev / "dax1.0");
  j = run_json({"inspect", "--acpi", kTables, "--sysfs", sys.string(), "--dev", dev.string(), "--device", bdf,
                "--json"});
  if (dax_ok && !devmem_ok) {
    CHECK(by_bdf(j, bdf)["serve"]["ready"] == false);
    CHECK(by_bdf(j, bdf)["serve"]["missing"].dump().find((dev / "dax1.0").string() + " is not reachable") !=
          std::string::npos);
  }
  // No instance holds it: no host_memory.
  fs::remove_all(sys / "bus/dax/devices/dax1.0");
  j = run_json({"inspect", "--acpi", kTables, "--sysfs", sys.string(), "--dev", dev.string(), "--device", bdf,
                "--json"});
  CHECK(by_bdf(j, bdf)["serve"]["host_memory"].is_null());
}
