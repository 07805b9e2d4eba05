// The guest plan (guest_plan.hpp) written the way each VMM or orchestrator
// takes it, verbatim: QEMU's arm `virt` and x86 `q35` machines, a libvirt
// domain XML fragment, cloud-hypervisor arguments (nvgrace-model.md R25).
// Pure text: nothing here runs a VMM or touches a device.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "nvgrace/common/result.hpp"
#include "nvgrace/pciemu/guest_plan.hpp"

namespace nvgrace::pciemu {

enum class VmmTarget { qemu_virt, qemu_q35, libvirt, cloud_hypervisor };

[[nodiscard]] std::string_view to_string(VmmTarget t);
// "qemu-virt", "qemu-q35", "libvirt", "cloud-hypervisor".
[[nodiscard]] std::optional<VmmTarget> parse_vmm_target(std::string_view name);
[[nodiscard]] const std::vector<std::string>& vmm_target_names();

// The machine a libvirt domain uses: it decides how the 64-bit MMIO window
// is written (q35: <pcihole64>; virt: QEMU's highmem-mmio-size).
enum class Machine { virt, q35 };
[[nodiscard]] std::string_view to_string(Machine m);
[[nodiscard]] std::optional<Machine> parse_machine(std::string_view name);

struct LibvirtVersion {
  unsigned major = 0;
  unsigned minor = 0;
  friend constexpr auto operator<=>(const LibvirtVersion&, const LibvirtVersion&) = default;
};
// "11.3" or "11.3.0" (the micro number does not change the XML).
[[nodiscard]] Result<LibvirtVersion> parse_libvirt_version(std::string_view text);
[[nodiscard]] std::string to_string(LibvirtVersion v);

// libvirt 11.8.0 added <hostdev><acpi nodeset='...'/> (it then creates
// QEMU's acpi-generic-initiator objects itself).
inline constexpr LibvirtVersion kLibvirtAcpiNodeset{11, 8};
// <qemu:override> (needed for pref64-reserve, which libvirt has no element
// for) exists since libvirt 8.2.0.
inline constexpr LibvirtVersion kLibvirtQemuOverride{8, 2};
// The default: the libvirt whose schema virt-xml-validate checks here
// (Debian trixie's libvirt-clients).
inline constexpr LibvirtVersion kLibvirtDefault{11, 3};

// q35's default pci-hole64-size (Q35_PCI_HOST_HOLE64_SIZE_DEFAULT). nvgrace
// gives q35 the smallest power of two that holds the plan's windows and is
// at least this: the value is the least the firmware reports to the guest,
// and the power of two leaves the firmware room to align the first window.
inline constexpr std::uint64_t kQ35DefaultHole64 = 32 * GiB;
// QEMU accepts NUMA node ids 0..127 (MAX_NODES in include/system/numa.h).
inline constexpr unsigned kQemuMaxNumaNodes = 128;
// The most --guest-numa-nodes can be so that one GPU still fits QEMU.
inline constexpr unsigned kMaxGuestNumaNodes = kQemuMaxNumaNodes - kGiNodesPerGpu;
// A PCIe root bus (QEMU's pcie.0) has 32 device slots. q35 keeps 00.0 (host
// bridge) and 1f.x (ICH9) for itself, virt 00.0: at least 30 stay free for
// root ports. Eight GI nodes per GPU exhaust QEMU's 128 node ids at 16 GPUs,
// before the root ports run out of slots, so only the node limit can be
// reached (checked at compile time here, refused with its number at run
// time); one pxb-pcie expander per GPU would take a pcie.0 slot each as
// well and would not lift either limit.
inline constexpr unsigned kPcieRootSlotsFree = 32 - 2;
static_assert((kQemuMaxNumaNodes - 1) / kGiNodesPerGpu <= kPcieRootSlotsFree,
              "the root ports of the most GPUs QEMU's NUMA ids allow must fit pcie.0");
// cloud-hypervisor: a PCI segment has 32 device slots; segment 0 keeps
// device 0 for its root and holds the VM's other devices, so GPUs go on
// segments 1.. (`--platform num_pci_segments`), 32 per segment, at most 96
// segments (MAX_NUM_PCI_SEGMENTS in vmm/src/config.rs).
inline constexpr unsigned kChSlotsPerSegment = 32;
inline constexpr unsigned kChMaxSegments = 96;

// Where a GPU comes from, for targets that attach it. Neither set: the
// output names the id and port the GPU must be given, and the user attaches
// it (QEMU targets only).
struct GpuSource {
  std::optional<std::string> socket;    // served over vfio-user (nvgrace serve)
  std::optional<std::string> host_bdf;  // bound to vfio-pci on this host, "0009:01:00.0"
};

struct TargetRequest {
  VmmTarget target = VmmTarget::qemu_virt;
  Machine libvirt_machine = Machine::virt;
  LibvirtVersion libvirt_version = kLibvirtDefault;
  std::vector<GpuSource> sources;  // one per GPU of the plan, or empty
};

// How GPU i of the plan is attached.
struct GpuAttachment {
  std::string id;    // the VMM's device id: dev0 (QEMU, cloud-hypervisor), ua-dev0 (libvirt alias)
  std::string port;  // its root port: rp0 / ua-rp0; empty for cloud-hypervisor
  unsigned segment = 0;  // PCI segment (cloud-hypervisor puts GPUs on 1..)
  std::vector<unsigned> gi_nodes;
  std::string attach;  // "vfio-user", "vfio-pci" or "" (attached by the user)
};

// A libvirt domain XML fragment, in the parts that go to different places
// of a domain. Each part is empty when nothing goes there.
struct LibvirtFragment {
  Machine machine = Machine::virt;
  LibvirtVersion version = kLibvirtDefault;
  unsigned memory_cells = 1;     // the domain's own cells 0..memory_cells-1
  std::string features;          // children of <features>
  std::string numa_cells;        // children of <cpu><numa>, after the memory cells
  std::string memory_backing;    // a child of <domain>
  std::string devices;           // children of <devices>
  std::string qemu_commandline;  // the <qemu:commandline> element
  std::string qemu_override;     // the <qemu:override> element
  // Every part, each after a comment saying where it goes.
  [[nodiscard]] std::string text() const;
};

inline constexpr std::string_view kLibvirtQemuNamespace = "http://libvirt.org/schemas/domain/qemu/1.0";

struct TargetPlan {
  VmmTarget target = VmmTarget::qemu_virt;
  std::vector<std::string> args;           // qemu-*, cloud-hypervisor: the argv words
  std::optional<LibvirtFragment> libvirt;  // libvirt
  std::vector<GpuAttachment> gpus;
  // The 64-bit MMIO window the target is given: highmem-mmio-size (virt:
  // GuestPlan::highmem_mmio_size), pci-hole64-size (q35: see
  // kQ35DefaultHole64); 0 for cloud-hypervisor, which sizes it from the
  // guest's physical address bits.
  std::uint64_t window = 0;
  unsigned numa_nodes = 0;  // every NUMA node id the guest gets: 0..numa_nodes-1
};

// Fails, naming the limit, where the target cannot hold the plan: QEMU's
// 128 NUMA node ids (QEMU targets and libvirt), cloud-hypervisor's 96 PCI
// segments, a libvirt older than 8.2, a GPU that libvirt or
// cloud-hypervisor cannot attach because its source is unknown.
[[nodiscard]] Result<TargetPlan> plan_target(const GuestPlan& plan, const TargetRequest& req);

// "1-8", "1-3,5": a node list as libvirt and sysfs write it.
[[nodiscard]] std::string format_node_list(const std::vector<unsigned>& nodes);

}  // namespace nvgrace::pciemu
