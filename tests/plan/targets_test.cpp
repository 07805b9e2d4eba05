// The guest plan written for each VMM (nvgrace-model.md R25): QEMU virt and
// q35, libvirt, cloud-hypervisor, and the limits each one has.
#include <catch2/catch.hpp>

#include <algorithm>

#include "nvgrace/plan/guest_plan.hpp"
#include "nvgrace/plan/targets.hpp"
#include "nvgrace/pciemu/identity.hpp"
#include "nvgrace/pciemu/layout.hpp"

using namespace nvgrace;
using namespace nvgrace::pciemu;
using namespace nvgrace::plan;

namespace {

const Target* target_named(std::string_view name) {
  const auto* t = find_target(name);
  REQUIRE(t != nullptr);
  return t;
}

GuestPlan plan_for(unsigned gh200s, unsigned memory_nodes = 1) {
  auto l = compute_layout({0x400000000000, 96 * GiB, true});
  REQUIRE(l.has_value());
  std::vector<std::vector<GuestBar>> gpus(gh200s, visible_bars(*find_identity(0x2342), *l));
  auto plan = plan_guest(gpus, memory_nodes);
  REQUIRE(plan.has_value());
  return *plan;
}

TargetPlan target(const GuestPlan& plan, const Target* t, std::vector<GpuSource> sources = {}) {
  TargetRequest req;
  req.target = t;
  req.sources = std::move(sources);
  auto out = plan_target(plan, req);
  INFO((out ? std::string() : out.error().message));
  REQUIRE(out.has_value());
  return *out;
}

bool has(const std::vector<std::string>& args, const std::string& a) {
  return std::find(args.begin(), args.end(), a) != args.end();
}

std::size_t count(const std::string& text, const std::string& what) {
  std::size_t n = 0;
  for (auto at = text.find(what); at != std::string::npos; at = text.find(what, at + 1)) ++n;
  return n;
}

std::vector<GpuSource> sockets(unsigned n) {
  std::vector<GpuSource> v(n);
  for (unsigned i = 0; i < n; ++i) v[i].socket = "/run/nvgrace/gpu.sock." + std::to_string(i);
  return v;
}

}  // namespace

TEST_CASE("qemu-virt: highmem-mmio-size, a root port with pref64-reserve per GPU, a -numa node and a GI object per node") {
  auto t = target(plan_for(2), target_named("qemu-virt"));
  CHECK(t.window == 512 * GiB);
  CHECK(t.numa_nodes == 17);
  CHECK(has(t.args, "virt,highmem-mmio-size=512G"));
  CHECK(has(t.args, "pcie-root-port,id=rp0,chassis=1,pref64-reserve=132112M"));
  CHECK(has(t.args, "pcie-root-port,id=rp1,chassis=2,pref64-reserve=132112M"));
  CHECK(has(t.args, "node,nodeid=1"));
  CHECK(has(t.args, "node,nodeid=16"));
  CHECK_FALSE(has(t.args, "node,nodeid=0"));  // the guest's memory node is the user's
  CHECK_FALSE(has(t.args, "node,nodeid=17"));
  CHECK(has(t.args, "acpi-generic-initiator,id=gi0,pci-dev=dev0,node=1"));
  CHECK(has(t.args, "acpi-generic-initiator,id=gi15,pci-dev=dev1,node=16"));
  CHECK(std::count(t.args.begin(), t.args.end(), "-object") == 16);
  REQUIRE(t.gpus.size() == 2);
  CHECK(t.gpus[1].id == "dev1");
  CHECK(t.gpus[1].port == "rp1");
  CHECK(t.gpus[1].gi_nodes == std::vector<unsigned>{9, 10, 11, 12, 13, 14, 15, 16});
  CHECK(t.gpus[0].attach.empty());
  // Without a source the GPUs themselves are the user's: only root ports.
  CHECK(std::count(t.args.begin(), t.args.end(), "-device") == 2);
}

TEST_CASE("qemu-q35: pci-hole64-size on q35-pcihost instead of highmem-mmio-size, GI nodes as on virt") {
  auto one = target(plan_for(1), target_named("qemu-q35"));
  CHECK(one.window == 256 * GiB);  // 129 GiB + 16 MiB, next power of two; q35's own default is 32 GiB
  CHECK(has(one.args, "q35"));
  CHECK(has(one.args, "q35-pcihost.pci-hole64-size=256G"));
  for (const auto& a : one.args) CHECK(a.find("highmem") == std::string::npos);
  auto two = target(plan_for(2), target_named("qemu-q35"));
  CHECK(has(two.args, "q35-pcihost.pci-hole64-size=512G"));
  CHECK(has(two.args, "acpi-generic-initiator,id=gi8,pci-dev=dev1,node=9"));
}

TEST_CASE("qemu: a known source attaches the GPU on its root port: vfio-user by socket, vfio-pci by host address") {
  std::vector<GpuSource> src(2);
  src[0].socket = "/run/nvgrace/a b.sock";
  src[1].host_bdf = *Bdf::parse("0009:01:00.0");
  auto t = target(plan_for(2), target_named("qemu-virt"), src);
  CHECK(has(t.args, R"({"driver":"vfio-user-pci","socket":{"type":"unix","path":"/run/nvgrace/a b.sock"},)"
                    R"("id":"dev0","bus":"rp0"})"));
  CHECK(has(t.args, "vfio-pci,host=0009:01:00.0,id=dev1,bus=rp1"));
  CHECK(t.gpus[0].attach == "vfio-user");
  CHECK(t.gpus[1].attach == "vfio-pci");
}

TEST_CASE("QEMU's 128 NUMA node ids: 15 GPUs fit after one memory node, 16 are refused with the limit named") {
  auto fifteen = target(plan_for(15), target_named("qemu-virt"));
  CHECK(fifteen.numa_nodes == 121);
  TargetRequest req;
  req.target = target_named("qemu-q35");
  auto sixteen = plan_target(plan_for(16), req);
  REQUIRE_FALSE(sixteen.has_value());
  CHECK(sixteen.error().message.find("NUMA node ids 0..127") != std::string::npos);
  CHECK(sixteen.error().message.find("up to 128") != std::string::npos);
  // The same bound holds for the guest's own memory nodes.
  auto most = target(plan_for(1, kMaxGuestNumaNodes), target_named("qemu-virt"));
  CHECK(most.numa_nodes == 128);
  req.target = target_named("libvirt");
  req.sources = sockets(1);
  CHECK_FALSE(plan_target(plan_for(1, kMaxGuestNumaNodes + 1), req).has_value());
}

TEST_CASE("cloud-hypervisor has no 128-node limit: 33 GPUs get 264 GI nodes, 32 per PCI segment") {
  std::vector<GpuSource> src = sockets(33);
  auto t = target(plan_for(33), target_named("cloud-hypervisor"), src);
  CHECK(t.numa_nodes == 1 + 33 * 8);
  CHECK(has(t.args, "num_pci_segments=3"));  // segment 0 stays the VM's; 32 GPUs on 1, one on 2
  CHECK(t.gpus[31].segment == 1);
  CHECK(t.gpus[32].segment == 2);
  CHECK(has(t.args, "socket=/run/nvgrace/gpu.sock.32,id=dev32,pci_segment=2"));
  CHECK(has(t.args, "guest_numa_id=264,device_id=dev32"));
  CHECK(t.window == 0);
}

TEST_CASE("cloud-hypervisor: --platform, one --user-device or --device per GPU, one --numa with device_id per GI node") {
  std::vector<GpuSource> src(2);
  src[0].socket = "/run/nvgrace/gpu.sock.0";
  src[1].host_bdf = *Bdf::parse("0009:01:00.0");
  auto t = target(plan_for(2), target_named("cloud-hypervisor"), src);
  const std::vector<std::string> head{"--platform", "num_pci_segments=2", "--user-device",
                                      "socket=/run/nvgrace/gpu.sock.0,id=dev0,pci_segment=1", "--device",
                                      "path=/sys/bus/pci/devices/0009:01:00.0,id=dev1,pci_segment=1"};
  REQUIRE(t.args.size() == head.size() + 2 * 16);
  CHECK(std::equal(head.begin(), head.end(), t.args.begin()));
  CHECK(has(t.args, "guest_numa_id=1,device_id=dev0"));
  CHECK(has(t.args, "guest_numa_id=16,device_id=dev1"));
  CHECK(t.gpus[0].port.empty());
}

TEST_CASE("cloud-hypervisor and libvirt refuse a GPU whose source they cannot name") {
  TargetRequest req;
  req.target = target_named("cloud-hypervisor");
  auto r = plan_target(plan_for(1), req);
  REQUIRE_FALSE(r.has_value());
  CHECK(r.error().message.find("cloud-hypervisor must attach it") != std::string::npos);
  req.target = target_named("libvirt");
  CHECK_FALSE(plan_target(plan_for(1), req).has_value());
}

TEST_CASE("libvirt 11.3, virt: GI nodes and objects in <qemu:commandline>, pref64-reserve by <qemu:override>") {
  auto t = target(plan_for(2), target_named("libvirt"), sockets(2));
  REQUIRE(t.libvirt.has_value());
  const auto& f = *t.libvirt;
  CHECK(f.version == kLibvirtDefault);
  CHECK(f.features == "<acpi/>\n");
  // 11.3 starts a memory='0' cell with a zero-size memory backend that QEMU
  // refuses: no cells, QEMU's own -numa instead.
  CHECK(f.numa_cells.empty());
  CHECK(count(f.qemu_commandline, "<qemu:arg value='node,nodeid=") == 16);
  CHECK(count(f.qemu_commandline, "acpi-generic-initiator") == 16);
  CHECK(f.qemu_commandline.find("pci-dev=ua-dev1,node=16") != std::string::npos);
  CHECK(f.qemu_commandline.find("highmem-mmio-size=512G") != std::string::npos);
  CHECK(f.devices.find("pcihole64") == std::string::npos);  // libvirt refuses it on virt
  CHECK(f.devices.find("<alias name='ua-rp1'/>") != std::string::npos);
  // 132112 MiB in bytes, base 10, as type='unsigned' wants it.
  CHECK(f.qemu_override.find("<qemu:device alias='ua-rp0'>") != std::string::npos);
  CHECK(f.qemu_override.find("value='138529472512'") != std::string::npos);
  // vfio-user: QEMU's own device on our root port, and shared memory.
  CHECK(f.qemu_commandline.find(R"("path":"/run/nvgrace/gpu.sock.1"},"id":"ua-dev1","bus":"ua-rp1"})") !=
        std::string::npos);
  CHECK(f.memory_backing.find("<access mode='shared'/>") != std::string::npos);
  CHECK(f.text().find("xmlns:qemu='http://libvirt.org/schemas/domain/qemu/1.0'") != std::string::npos);
}

TEST_CASE("libvirt, q35: <pcihole64> in KiB on pcie-root instead of highmem-mmio-size") {
  TargetRequest req;
  req.target = target_named("libvirt");
  req.libvirt_machine = Machine::q35;
  req.sources = sockets(2);
  auto t = plan_target(plan_for(2), req);
  REQUIRE(t.has_value());
  CHECK(t->libvirt->devices.find("<pcihole64 unit='KiB'>536870912</pcihole64>") != std::string::npos);
  CHECK(t->libvirt->qemu_commandline.find("highmem") == std::string::npos);
}

TEST_CASE("libvirt: a host GPU is a <hostdev> on its root port, and 11.8 ties its GI nodes natively with <acpi nodeset>") {
  std::vector<GpuSource> src(2);
  src[0].host_bdf = *Bdf::parse("0009:01:00.0");
  src[1].socket = "/run/nvgrace/gpu.sock.1";
  TargetRequest req;
  req.target = target_named("libvirt");
  req.sources = src;
  auto old = plan_target(plan_for(2), req);
  REQUIRE(old.has_value());
  const auto& o = *old->libvirt;
  CHECK(o.devices.find("<address domain='0x0009' bus='0x01' slot='0x00' function='0x0'/>") != std::string::npos);
  CHECK(o.devices.find("<alias name='ua-dev0'/>") != std::string::npos);
  CHECK(o.devices.find("<address type='pci' domain='0x0000' bus='0x01' slot='0x00' function='0x0'/>") !=
        std::string::npos);
  CHECK(o.devices.find("nodeset") == std::string::npos);
  CHECK(o.qemu_commandline.find("pci-dev=ua-dev0,node=1'") != std::string::npos);

  req.libvirt_version = kLibvirtAcpiNodeset;
  auto native = plan_target(plan_for(2), req);
  REQUIRE(native.has_value());
  const auto& n = *native->libvirt;
  CHECK(n.devices.find("<acpi nodeset='1-8'/>") != std::string::npos);
  CHECK(count(n.numa_cells, "memory='0'") == 16);
  CHECK(n.numa_cells.find("<cell id='16' memory='0' unit='KiB'/>") != std::string::npos);
  CHECK(n.qemu_commandline.find("nodeid") == std::string::npos);
  CHECK(n.qemu_commandline.find("pci-dev=ua-dev0") == std::string::npos);  // libvirt makes those
  CHECK(n.qemu_commandline.find("pci-dev=ua-dev1,node=9") != std::string::npos);  // vfio-user: still ours

  req.libvirt_version = {8, 1};
  req.sources = sockets(1);
  auto too_old = plan_target(plan_for(1), req);
  REQUIRE_FALSE(too_old.has_value());
  CHECK(too_old.error().message.find("8.2") != std::string::npos);
}

TEST_CASE("libvirt: XML special characters in a socket path are escaped") {
  std::vector<GpuSource> src(1);
  src[0].socket = "/run/a&b'<c>.sock";
  auto t = target(plan_for(1), target_named("libvirt"), src);
  CHECK(t.libvirt->qemu_commandline.find("/run/a&amp;b&apos;&lt;c>.sock") != std::string::npos);
}

TEST_CASE("names: targets, machines, libvirt versions and node lists") {
  for (const auto& n : target_names()) CHECK(find_target(n)->name == n);
  CHECK(target_names() == std::vector<std::string>{"qemu-virt", "qemu-q35", "libvirt", "cloud-hypervisor"});
  CHECK_FALSE(find_target("qemu"));
  CHECK(parse_machine("q35") == Machine::q35);
  CHECK_FALSE(parse_machine("pc"));
  CHECK(*parse_libvirt_version("11.8.0") == LibvirtVersion{11, 8});
  CHECK(*parse_libvirt_version("12.5") == LibvirtVersion{12, 5});
  for (const char* bad : {"", "11", "11.", ".3", "11.3.0.1", "eleven", "11.x", "-1.2"})
    CHECK_FALSE(parse_libvirt_version(bad).has_value());
  CHECK(format_node_list({1, 2, 3, 4, 5, 6, 7, 8}) == "1-8");
  CHECK(format_node_list({9, 3, 1, 2}) == "1-3,9");
  CHECK(format_node_list({}).empty());
}
