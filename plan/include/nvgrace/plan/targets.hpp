// The guest plan (guest_plan.hpp) written the way each VMM or orchestrator
// takes it, verbatim: QEMU's arm `virt` and x86 `q35` machines, a libvirt
// domain XML fragment, cloud-hypervisor arguments (nvgrace-model.md R25).
// Pure text: nothing here runs a VMM or touches a device.
//
// Each target is one descriptor in one file, plan/src/targets/<name>.cpp,
// which defines `const Target kTarget_<name>`; the build finds the files and
// lists them (a new target, say Firecracker or crosvm, is one new file). What
// the rest of nvgrace needs to know of a target - its name, whether QEMU's
// limits apply, whether it attaches the GPUs itself, how its plan reads - is
// in the descriptor (only the --libvirt-* options name the target they go
// with).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <span>

#include "nvgrace/common/checked.hpp"
#include "nvgrace/common/result.hpp"
#include "nvgrace/common/types.hpp"
#include "nvgrace/plan/guest_plan.hpp"

namespace nvgrace::plan {

struct Target;

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
  std::optional<Bdf> host_bdf;          // bound to vfio-pci on this host
};

struct TargetRequest {
  const Target* target = nullptr;  // nullptr: the default target (default_target())
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

// How the plan's 64-bit MMIO window reaches the VMM.
enum class WindowKind {
  highmem_mmio_size,  // QEMU virt's highmem-mmio-size (GuestPlan::highmem_mmio_size)
  pci_hole64_size,    // q35's pci-hole64-size (see kQ35DefaultHole64)
  vmm_chosen,         // the VMM sizes it itself (cloud-hypervisor: from the guest's physical address bits)
};

struct TargetPlan {
  const Target* target = nullptr;
  std::vector<std::string> args;           // qemu-*, cloud-hypervisor: the argv words
  std::optional<LibvirtFragment> libvirt;  // libvirt
  std::vector<GpuAttachment> gpus;
  // The 64-bit MMIO window the target is given, and how (0 when the VMM
  // chooses it).
  std::uint64_t window = 0;
  WindowKind window_kind = WindowKind::highmem_mmio_size;
  unsigned numa_nodes = 0;  // every NUMA node id the guest gets: 0..numa_nodes-1
};

// One VMM or orchestrator the plan can be written for.
struct Target {
  std::string_view name;        // "qemu-virt": what --target takes
  unsigned order = 0;           // where it is listed (help, completion)
  std::string_view args_title;  // "QEMU arguments", "cloud-hypervisor arguments"; "" for XML
  bool qemu_limits = false;     // QEMU's 128 NUMA node ids apply (QEMU itself, libvirt)
  bool attaches_gpus = false;   // it attaches each GPU itself: it needs a socket or host PCI address per GPU
  bool segments = false;        // GPUs on PCI segments 1.. rather than behind root ports
  std::string_view id_prefix;   // of device ids and ports: "" (dev0, rp0) or "ua-" (libvirt's user aliases)
  // Fills `out` (GPU ids, ports, GI nodes and the window already set) with
  // the target's own text, or fails naming the limit it cannot meet.
  Result<TargetPlan> (*write)(const GuestPlan& plan, const TargetRequest& req, TargetPlan out) = nullptr;
  // The window the target gives the guest and how.
  struct Window {
    std::uint64_t size = 0;
    WindowKind kind = WindowKind::highmem_mmio_size;
  };
  Result<Window> (*window)(const GuestPlan& plan, const TargetRequest& req) = nullptr;
};

// Every target, in `order`.
[[nodiscard]] std::span<const Target* const> all_targets();
[[nodiscard]] const Target* find_target(std::string_view name);
[[nodiscard]] const Target& default_target();  // qemu-virt
[[nodiscard]] const std::vector<std::string>& target_names();

// Fails, naming the limit, where the target cannot hold the plan: QEMU's
// 128 NUMA node ids (QEMU targets and libvirt), cloud-hypervisor's 96 PCI
// segments, a libvirt older than 8.2, a GPU that libvirt or
// cloud-hypervisor cannot attach because its source is unknown.
[[nodiscard]] Result<TargetPlan> plan_target(const GuestPlan& plan, const TargetRequest& req);

// "1-8", "1-3,5": a node list as libvirt and sysfs write it.
[[nodiscard]] std::string format_node_list(const std::vector<unsigned>& nodes);

// Shared by the targets' files: text escapes and QEMU's way of attaching a
// GPU whose source is known.
namespace detail {
[[nodiscard]] std::string xml_attr(std::string_view s);
[[nodiscard]] std::string json_string(std::string_view s);
[[nodiscard]] std::string qemu_device(const GpuSource& src, const GpuAttachment& g);
[[nodiscard]] Result<TargetPlan> write_qemu(const GuestPlan& plan, const TargetRequest& req, TargetPlan out,
                                            std::vector<std::string> machine_args);
}  // namespace detail

}  // namespace nvgrace::plan
