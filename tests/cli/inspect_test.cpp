// `nvgrace inspect` as a user runs it: the acceptance examples of the
// foundation issue, the JSON contract, and the usage errors.
#include <catch2/catch.hpp>

#include <unistd.h>

#include <filesystem>
#include <fstream>

#include <nlohmann/json.hpp>

#include "columns.hpp"
#include "run_nvgrace.hpp"

using nlohmann::json;

namespace {
json inspect_json(std::vector<std::string> args) {
  args.insert(args.begin(), {"inspect", "--json"});
  auto r = run_nvgrace(args);
  INFO(r.err);
  REQUIRE(r.exit_code == 0);
  return json::parse(r.out);
}
const json& bar(const json& dev, unsigned index) {
  for (const auto& b : dev["bars"])
    if (b["index"] == index) return b;
  FAIL("no BAR " << index);
  throw;
}
std::size_t lines(const std::string& s) { return static_cast<std::size_t>(std::count(s.begin(), s.end(), '\n')); }
}  // namespace

TEST_CASE("inspect: acceptance example 0x17E4F00000 with the MIG bug (R9)") {
  auto j = inspect_json({"--device-id", "0x2342", "--mem-base", "0x400000000000", "--mem-size", "0x17E4F00000",
                         "--mig-bug"});
  const auto& d = j["devices"].at(0);
  CHECK(d["status"] == "fake-bars");
  CHECK(d["device_id"] == "0x2342");
  CHECK(d["model"] == "GH200 120GB");
  CHECK(d["mig_hw_bug"] == true);
  CHECK(d["mig_hw_bug_source"] == "flag");
  const auto& b4 = bar(d, 4);
  CHECK(b4["role"] == "usemem");
  CHECK(b4["host_base"] == 0x400000000000ull);
  CHECK(b4["length"] == 0x17A0000000ull);
  CHECK(b4["size"] == 0x2000000000ull);
  CHECK(b4["cache"] == "write-back");
  CHECK(b4["prefetchable"] == true);
  const auto& b2 = bar(d, 2);
  CHECK(b2["role"] == "resmem");
  CHECK(b2["host_base"] == 0x4017A0000000ull);
  CHECK(b2["length"] == 0x44F00000ull);
  CHECK(b2["size"] == 0x80000000ull);
  CHECK(b2["cache"] == "write-combined");
  const auto& b0 = bar(d, 0);
  CHECK(b0["role"] == "device");
  CHECK(b0["host_base"].is_null());
  CHECK(b0["cache"] == "uncached");
}

TEST_CASE("inspect: GB200 186GiB without the bug has one 256 GiB BAR4 and no resmem (R10)") {
  auto j = inspect_json({"--device-id", "0x2941", "--mem-base", "0x400000000000", "--mem-size", "186GiB",
                         "--no-mig-bug"});
  const auto& d = j["devices"].at(0);
  CHECK(d["mig_hw_bug"] == false);
  CHECK(bar(d, 4)["size"] == 256ull << 30);
  CHECK(bar(d, 4)["length"] == 186ull << 30);
  for (const auto& b : d["bars"]) CHECK(b["role"] != "resmem");
  CHECK(bar(d, 2)["role"] == "device");
  CHECK(bar(d, 2)["size"] == 256ull << 30);
}

TEST_CASE("inspect: the MIG bug follows the device id when no flag is given (R2)") {
  auto hopper = inspect_json({"--device-id", "0x2348", "--mem-base", "0", "--mem-size", "144GiB"});
  CHECK(hopper["devices"][0]["mig_hw_bug"] == true);
  CHECK(hopper["devices"][0]["mig_hw_bug_source"] == "device-id");
  auto blackwell = inspect_json({"--device-id", "0x31c2", "--mem-base", "0", "--mem-size", "288GiB"});
  CHECK(blackwell["devices"][0]["mig_hw_bug"] == false);
}

TEST_CASE("inspect: profiles with --count and repeated --profile") {
  auto j = inspect_json({"--profile", "gh200", "--count", "2"});
  REQUIRE(j["devices"].size() == 2);
  CHECK(j["devices"][0]["name"] == "gpu0");
  CHECK(j["devices"][1]["profile"] == "gh200");
  CHECK(j["devices"][1]["mem_base"] == 0x400000000000ull + (4ull << 40));
  CHECK(bar(j["devices"][1], 4)["host_base"] == j["devices"][1]["mem_base"]);
  CHECK(j["guest"]["mmio64_bytes"] == (256ull << 30) + (129ull << 30) + (16ull << 20));
  CHECK(j["guest"]["highmem_mmio_size"] == 512ull << 30);

  auto mixed = inspect_json({"--profile", "gh200", "--profile", "gb200", "--profile", "gb300"});
  REQUIRE(mixed["devices"].size() == 3);
  CHECK(bar(mixed["devices"][2], 4)["size"] == 512ull << 30);
  CHECK(mixed["guest"]["root_port_windows"].size() == 3);
}

TEST_CASE("inspect: the guest plan numbers GI nodes after --guest-numa-nodes (R25)") {
  auto j = inspect_json({"--profile", "gh200", "--guest-numa-nodes", "2"});
  const auto& args = j["guest"]["args"];
  CHECK(j["guest"]["target"] == "qemu-virt");
  CHECK(std::find(args.begin(), args.end(), "node,nodeid=2") != args.end());
  CHECK(std::find(args.begin(), args.end(), "acpi-generic-initiator,id=gi7,pci-dev=dev0,node=9") != args.end());
  CHECK(j["guest"]["gpus"][0]["gi_nodes"] == json::array({2, 3, 4, 5, 6, 7, 8, 9}));
  CHECK(j["guest"]["numa_nodes"] == 10);
  auto four = inspect_json({"--profile", "gh200", "--count", "4"});
  CHECK(four["guest"]["highmem_mmio_size"] == 1ull << 40);
}

TEST_CASE("inspect: size 0 is passthrough with a reason (R5)") {
  auto j = inspect_json({"--device-id", "0x2342", "--mem-base", "0x400000000000", "--mem-size", "0"});
  const auto& d = j["devices"][0];
  CHECK(d["status"] == "passthrough");
  CHECK(d["reason"].get<std::string>().find("C2C link not up") != std::string::npos);
  CHECK(bar(d, 4)["role"] == "device");
}

TEST_CASE("inspect: a device the driver would refuse is reported as unusable, exit 1") {
  auto r = run_nvgrace({"inspect", "--json", "--device-id", "0x2342", "--mem-base", "0", "--mem-size",
                        "0x5FFFFFFF", "--mig-bug"});
  CHECK(r.exit_code == 1);
  auto j = json::parse(r.out);
  CHECK(j["devices"][0]["status"] == "unusable");
  CHECK(j["devices"][0]["reason"].get<std::string>().find("rounds down to 0") != std::string::npos);
  CHECK(j["guest"]["root_port_windows"].empty());
}

TEST_CASE("inspect: the table fits 80 columns and names every BAR") {
  auto r = run_nvgrace({"inspect", "--profile", "gh200", "--count", "2"});
  REQUIRE(r.exit_code == 0);
  CHECK(wider_than(r.out, 80).empty());
  CHECK(r.out.find("usemem  0x400000000000   95 GiB     128 GiB   33 GiB    write-back") != std::string::npos);
  CHECK(r.out.find("resmem  0x4017c0000000   1 GiB      1 GiB     0         write-combined") != std::string::npos);
  CHECK(r.out.find("highmem-mmio-size:  512G") != std::string::npos);
  CHECK(r.err.empty());
}

TEST_CASE("inspect --target: the report fits 80 columns for every target, but for verbatim arguments and XML") {
  for (const auto& target : {"qemu-virt", "qemu-q35", "libvirt", "cloud-hypervisor"}) {
    auto r = run_nvgrace({"inspect", "--profile", "gb200", "--count", "3", "--target", target, "--socket",
                          "/run/nvgrace/gpu0/gpu.sock"});
    REQUIRE(r.exit_code == 0);
    std::size_t start = 0;
    bool xml = false;
    while (start < r.out.size()) {
      const auto end = r.out.find('\n', start);
      const auto line = r.out.substr(start, end - start);
      start = end + 1;
      if (line == "  libvirt domain XML:") xml = true;
      if (xml || line.starts_with("    -")) continue;
      INFO(target << ": " << line);
      CHECK(line.size() <= 80);
    }
  }
}

TEST_CASE("inspect: bad input exits 2 with one line naming the flag") {
  struct Case {
    std::vector<std::string> args;
    const char* mentions;
  };
  const std::vector<Case> cases{
      {{"inspect", "--profile", "h100"}, "--profile"},
      {{"inspect", "--device-id", "0x2342", "--mem-base", "0", "--mem-size", "lots"}, "--mem-size"},
      {{"inspect", "--device-id", "0x2342", "--mem-base", "0x", "--mem-size", "1G"}, "--mem-base"},
      {{"inspect", "--device-id", "0x2342", "--mem-size", "1G"}, "--mem-base"},
      {{"inspect", "--device-id", "0xzz", "--mem-base", "0", "--mem-size", "1G"}, "--device-id"},
      {{"inspect", "--device-id", "0x2330", "--mem-base", "0", "--mem-size", "1G"}, "--device-id"},
      {{"inspect", "--profile", "gh200", "--device-id", "0x2342"}, "--profile"},
      {{"inspect", "--profile", "gh200", "--mig-bug", "--no-mig-bug"}, "--mig-bug"},
      {{"inspect", "--profile", "gh200", "--profile", "gb200", "--count", "2"}, "--count"},
      {{"inspect", "--profile", "gh200", "--count", "0"}, "--count"},
      {{"inspect"}, "--profile"},
      {{"inspect", "--profile", "gh200", "--log-level", "loud"}, "--log-level"},
      {{"inspect", "--frobnicate"}, "--frobnicate"},
      {{}, "no command given"},
  };
  for (const auto& c : cases) {
    auto r = run_nvgrace(c.args);
    INFO(r.err);
    CHECK(r.exit_code == 2);
    CHECK(lines(r.err) == 1);
    CHECK(r.err.find(c.mentions) != std::string::npos);
    CHECK(r.out.empty());
  }
}

TEST_CASE("inspect: -v logs to stderr and leaves stdout JSON intact") {
  auto r = run_nvgrace({"inspect", "--json", "--device-id", "0x2342", "--mem-base", "0", "--mem-size", "0", "-vv"});
  REQUIRE(r.exit_code == 0);
  CHECK(r.err.find("passthrough") != std::string::npos);
  CHECK_NOTHROW(json::parse(r.out));
}

TEST_CASE("--help exits 0 and lists the inspect command") {
  auto r = run_nvgrace({"--help"});
  CHECK(r.exit_code == 0);
  CHECK(r.out.find("inspect") != std::string::npos);
}

TEST_CASE("inspect --target: the plan for each VMM, with the GPU ids and GI nodes the arguments use") {
  auto virt = inspect_json({"--profile", "gh200", "--count", "2"});
  const auto& g = virt["guest"];
  CHECK(g["target"] == "qemu-virt");
  CHECK(g["window"] == 512ull << 30);
  CHECK(g["libvirt"].is_null());
  REQUIRE(g["gpus"].size() == 2);
  CHECK(g["gpus"][1] == json::parse(R"({"device":"gpu1","id":"dev1","port":"rp1","segment":0,)"
                                    R"("gi_nodes":[9,10,11,12,13,14,15,16],"attach":null})"));
  CHECK(g["args"][0] == "-machine");
  CHECK(g["args"][1] == "virt,highmem-mmio-size=512G");

  auto q35 = inspect_json({"--profile", "gh200", "--count", "2", "--target", "qemu-q35"});
  CHECK(q35["guest"]["args"][1] == "q35");
  CHECK(q35["guest"]["args"][3] == "q35-pcihost.pci-hole64-size=512G");

  auto lv = inspect_json({"--profile", "gh200", "--target", "libvirt", "--socket", "/run/nvgrace/gpu0.sock"});
  CHECK(lv["guest"]["args"].empty());
  CHECK(lv["guest"]["libvirt"]["version"] == "11.3");
  CHECK(lv["guest"]["libvirt"]["machine"] == "virt");
  CHECK(lv["guest"]["gpus"][0]["id"] == "ua-dev0");
  CHECK(lv["guest"]["gpus"][0]["attach"] == "vfio-user");
  // One GPU: the socket is serve's PATH itself, not PATH.0.
  CHECK(lv["guest"]["libvirt"]["qemu_commandline"].get<std::string>().find(R"("path":"/run/nvgrace/gpu0.sock"})") !=
        std::string::npos);

  auto ch = inspect_json({"--profile", "gh200", "--count", "2", "--target", "cloud-hypervisor", "--socket", "/s"});
  const auto& a = ch["guest"]["args"];
  CHECK(std::find(a.begin(), a.end(), "socket=/s.1,id=dev1,pci_segment=1") != a.end());
  CHECK(std::find(a.begin(), a.end(), "guest_numa_id=16,device_id=dev1") != a.end());
}

TEST_CASE("inspect --target libvirt: the table ends with the fragment, each part after a comment saying where") {
  auto r = run_nvgrace({"inspect", "--profile", "gh200", "--target", "libvirt", "--libvirt-machine", "q35",
                        "--socket", "/run/nvgrace/gpu0.sock"});
  REQUIRE(r.exit_code == 0);
  CHECK(r.out.find("<!-- in <devices>: -->\n<controller type='pci' index='0' model='pcie-root'>\n"
                   "  <pcihole64 unit='KiB'>268435456</pcihole64>") != std::string::npos);
  CHECK(r.out.find("pci-hole64-size:    256G") != std::string::npos);
}

TEST_CASE("inspect --target libvirt with host GPUs from ACPI and sysfs: each is a <hostdev> at its PCI address") {
  // A sysfs tree with one GH200 whose ACPI node is in the fixture tables.
  const auto root = std::filesystem::path(NVGRACE_TEST_BINARY_DIR) / ("target-sysfs-" + std::to_string(getpid()));
  const auto dir = root / "bus/pci/devices/0009:01:00.0";
  std::filesystem::create_directories(dir / "firmware_node");
  std::ofstream(dir / "vendor") << "0x10de\n";
  std::ofstream(dir / "device") << "0x2342\n";
  std::ofstream(dir / "firmware_node/path") << "\\_SB_.PCI9.RP00.GPU0\n";
  std::ofstream(dir / "config", std::ios::binary) << std::string(256, '\0');
  auto j = inspect_json({"--acpi", std::string(NVGRACE_FIXTURE_DIR) + "/host-tables", "--sysfs", root.string(),
                         "--device", "0009:01:00.0", "--target", "libvirt", "--libvirt-version", "11.8.0"});
  std::filesystem::remove_all(root);
  const auto& lv = j["guest"]["libvirt"];
  CHECK(lv["version"] == "11.8");
  const auto devices = lv["devices"].get<std::string>();
  CHECK(devices.find("<address domain='0x0009' bus='0x01' slot='0x00' function='0x0'/>") != std::string::npos);
  CHECK(devices.find("<acpi nodeset='1-8'/>") != std::string::npos);
  CHECK(j["guest"]["gpus"][0]["attach"] == "vfio-pci");
}

TEST_CASE("inspect: 16 GH200 exceed QEMU's NUMA node ids: the report is printed, the plan names the limit, exit 1") {
  auto r = run_nvgrace({"inspect", "--json", "--profile", "gh200", "--count", "16"});
  CHECK(r.exit_code == 1);
  auto j = json::parse(r.out);
  CHECK(j["devices"].size() == 16);
  CHECK(j["guest"]["error"].get<std::string>().find("QEMU accepts NUMA node ids 0..127") != std::string::npos);
  CHECK(j["guest"]["args"].empty());
  CHECK(lines(r.err) == 1);
  // cloud-hypervisor has no such limit.
  auto ch = run_nvgrace({"inspect", "--json", "--profile", "gh200", "--count", "16", "--target", "cloud-hypervisor",
                         "--socket", "/s"});
  CHECK(ch.exit_code == 0);
  CHECK(json::parse(ch.out)["guest"]["numa_nodes"] == 129);
}
