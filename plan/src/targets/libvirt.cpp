// A libvirt domain XML fragment (libvirt 8.2+; 11.8+ ties host GPUs' GI
// nodes natively with <acpi nodeset>), for a virt or q35 domain (R25).
#include <algorithm>

#include <fmt/format.h>

#include "nvgrace/common/size.hpp"
#include "nvgrace/plan/targets.hpp"

namespace nvgrace::plan {
namespace {

Result<Target::Window> window(const GuestPlan& plan, const TargetRequest& req) {
  if (req.libvirt_machine != Machine::q35) return Target::Window{plan.highmem_mmio_size, WindowKind::highmem_mmio_size};
  auto w = next_pow2(std::max(plan.mmio64_bytes, kQ35DefaultHole64));
  if (!w) return fail("64-bit MMIO need {:#x} has no power-of-two window", plan.mmio64_bytes);
  return Target::Window{*w, WindowKind::pci_hole64_size};
}

Result<TargetPlan> write(const GuestPlan& plan, const TargetRequest& req, TargetPlan out) {
  const auto v = req.libvirt_version;
  if (v < kLibvirtQemuOverride)
    return fail("libvirt {} is too old: the root ports' pref64-reserve needs <qemu:override>, which libvirt has "
                "since {}",
                to_string(v), to_string(kLibvirtQemuOverride));
  const bool native_gi = v >= kLibvirtAcpiNodeset;
  LibvirtFragment f;
  f.machine = req.libvirt_machine;
  f.version = v;
  f.memory_cells = plan.guest_numa_nodes;
  // Without ACPI a libvirt aarch64 guest gets acpi=off: no SRAT at all.
  f.features = "<acpi/>\n";

  std::vector<std::string> args;  // for <qemu:commandline>
  auto arg = [&](std::string s) { args.push_back(std::move(s)); };
  std::string devices;
  if (f.machine == Machine::q35) {
    // libvirt writes -global q35-pcihost.pci-hole64-size=<KiB>K for this.
    devices += fmt::format(
        "<controller type='pci' index='0' model='pcie-root'>\n  <pcihole64 unit='KiB'>{}</pcihole64>\n"
        "</controller>\n",
        out.window / KiB);
  } else {
    // libvirt up to at least 12.5 refuses <pcihole64> on virt; QEMU merges
    // a second -machine into the first.
    arg("-machine");
    arg(fmt::format("highmem-mmio-size={}", format_qemu_size(out.window)));
  }
  std::string override_devices;
  for (std::size_t i = 0; i < out.gpus.size(); ++i) {
    const auto& g = out.gpus[i];
    // Controller index = the bus number libvirt addresses devices with.
    const auto index = i + 1;
    devices += fmt::format("<controller type='pci' index='{}' model='pcie-root-port'>\n  <alias name='{}'/>\n"
                           "</controller>\n",
                           index, g.port);
    override_devices += fmt::format(
        "  <qemu:device alias='{}'>\n    <qemu:frontend>\n"
        "      <qemu:property name='pref64-reserve' type='unsigned' value='{}'/>\n"
        "    </qemu:frontend>\n  </qemu:device>\n",
        g.port, plan.windows[i].size);
  }
  bool any_vfio_user = false;
  for (std::size_t i = 0; i < out.gpus.size(); ++i) {
    const auto& g = out.gpus[i];
    const auto& src = req.sources[i];
    if (src.socket) {
      // libvirt has no vfio-user device: QEMU's own -device, on our port.
      any_vfio_user = true;
      arg("-device");
      arg(detail::qemu_device(src, g));
    } else {
      const Bdf& bdf = *src.host_bdf;
      devices += fmt::format(
          "<hostdev mode='subsystem' type='pci' managed='yes'>\n"
          "  <source>\n    <address domain='{:#06x}' bus='{:#04x}' slot='{:#04x}' function='{:#x}'/>\n  </source>\n"
          "  <alias name='{}'/>\n"
          "  <address type='pci' domain='0x0000' bus='{:#04x}' slot='0x00' function='0x0'/>\n",
          bdf.segment(), bdf.bus(), bdf.device(), bdf.function(), g.id, i + 1);
      if (native_gi) devices += fmt::format("  <acpi nodeset='{}'/>\n", format_node_list(g.gi_nodes));
      devices += "</hostdev>\n";
    }
  }
  // The GI nodes: memory-less cells where libvirt can start them (11.8+:
  // before, libvirt backs a cell with memory='0' by a zero-size memory
  // backend, which QEMU refuses), else QEMU's own -numa.
  unsigned gi = 0;
  for (std::size_t i = 0; i < out.gpus.size(); ++i) {
    const auto& g = out.gpus[i];
    const bool libvirt_ties = native_gi && !req.sources[i].socket;
    for (auto node : g.gi_nodes) {
      if (native_gi) {
        f.numa_cells += fmt::format("<cell id='{}' memory='0' unit='KiB'/>\n", node);
      } else {
        arg("-numa");
        arg(fmt::format("node,nodeid={}", node));
      }
      if (!libvirt_ties) {
        arg("-object");
        arg(fmt::format("acpi-generic-initiator,id=gi{},pci-dev={},node={}", gi, g.id, node));
      }
      ++gi;
    }
  }
  // vfio-user needs guest memory the server can map.
  if (any_vfio_user) f.memory_backing = "<memoryBacking>\n  <source type='memfd'/>\n  <access mode='shared'/>\n</memoryBacking>\n";
  f.devices = std::move(devices);
  if (!args.empty()) {
    f.qemu_commandline = "<qemu:commandline>\n";
    for (const auto& s : args) f.qemu_commandline += fmt::format("  <qemu:arg value='{}'/>\n", detail::xml_attr(s));
    f.qemu_commandline += "</qemu:commandline>\n";
  }
  f.qemu_override = "<qemu:override>\n" + override_devices + "</qemu:override>\n";
  out.libvirt = std::move(f);
  return out;
}

}  // namespace

extern const Target kTarget_libvirt{"libvirt", 30, "", true, true, false, "ua-", write, window};

}  // namespace nvgrace::plan
