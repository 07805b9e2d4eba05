#include "nvgrace/pciemu/guest_targets.hpp"

#include <algorithm>
#include <charconv>

#include <fmt/format.h>

#include "nvgrace/common/size.hpp"

namespace nvgrace::pciemu {

std::string_view to_string(VmmTarget t) {
  switch (t) {
    case VmmTarget::qemu_q35: return "qemu-q35";
    case VmmTarget::libvirt: return "libvirt";
    case VmmTarget::cloud_hypervisor: return "cloud-hypervisor";
    case VmmTarget::qemu_virt: break;
  }
  return "qemu-virt";
}

const std::vector<std::string>& vmm_target_names() {
  static const std::vector<std::string> names{"qemu-virt", "qemu-q35", "libvirt", "cloud-hypervisor"};
  return names;
}

std::optional<VmmTarget> parse_vmm_target(std::string_view name) {
  for (auto t : {VmmTarget::qemu_virt, VmmTarget::qemu_q35, VmmTarget::libvirt, VmmTarget::cloud_hypervisor})
    if (to_string(t) == name) return t;
  return std::nullopt;
}

std::string_view to_string(Machine m) { return m == Machine::q35 ? "q35" : "virt"; }

std::optional<Machine> parse_machine(std::string_view name) {
  if (name == "virt") return Machine::virt;
  if (name == "q35") return Machine::q35;
  return std::nullopt;
}

Result<LibvirtVersion> parse_libvirt_version(std::string_view text) {
  auto bad = [&] { return fail("'{}' is not a libvirt version (give MAJOR.MINOR, e.g. 11.3 or 11.8.0)", text); };
  unsigned parts[3] = {0, 0, 0};
  std::size_t n = 0;
  std::string_view rest = text;
  while (true) {
    if (n == 3) return bad();
    auto [p, ec] = std::from_chars(rest.data(), rest.data() + rest.size(), parts[n]);
    if (ec != std::errc() || p == rest.data()) return bad();
    ++n;
    rest.remove_prefix(static_cast<std::size_t>(p - rest.data()));
    if (rest.empty()) break;
    if (rest.front() != '.') return bad();
    rest.remove_prefix(1);
  }
  if (n < 2) return bad();
  return LibvirtVersion{parts[0], parts[1]};
}

std::string to_string(LibvirtVersion v) { return fmt::format("{}.{}", v.major, v.minor); }

std::string format_node_list(const std::vector<unsigned>& nodes) {
  std::vector<unsigned> sorted(nodes);
  std::sort(sorted.begin(), sorted.end());
  std::string out;
  for (std::size_t i = 0; i < sorted.size();) {
    std::size_t j = i;
    while (j + 1 < sorted.size() && sorted[j + 1] == sorted[j] + 1) ++j;
    if (!out.empty()) out += ',';
    out += j == i ? fmt::format("{}", sorted[i]) : fmt::format("{}-{}", sorted[i], sorted[j]);
    i = j + 1;
  }
  return out;
}

namespace {

// XML attribute text inside single quotes (double quotes stay as they are,
// so QEMU's JSON arguments remain readable).
std::string xml_attr(std::string_view s) {
  std::string out;
  for (char c : s) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '\'': out += "&apos;"; break;
      default: out += c;
    }
  }
  return out;
}

// A JSON string literal (QEMU's JSON -device syntax carries the socket path).
std::string json_string(std::string_view s) {
  std::string out = "\"";
  for (char c : s) {
    const auto u = static_cast<unsigned char>(c);
    if (c == '"' || c == '\\') {
      out += '\\';
      out += c;
    } else if (u < 0x20) {
      out += fmt::format("\\u{:04x}", u);
    } else {
      out += c;
    }
  }
  return out + "\"";
}

// A host PCI address as sysfs names it: DDDD:BB:DD.F.
struct HostBdf {
  unsigned domain = 0, bus = 0, slot = 0, function = 0;
};

Result<HostBdf> parse_host_bdf(std::string_view text) {
  auto bad = [&] { return fail("'{}' is not a PCI address DDDD:BB:DD.F", text); };
  auto hex = [](std::string_view s, unsigned& out) {
    auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), out, 16);
    return !s.empty() && ec == std::errc() && p == s.data() + s.size();
  };
  if (text.size() != 12 || text[4] != ':' || text[7] != ':' || text[10] != '.') return bad();
  HostBdf b;
  if (!hex(text.substr(0, 4), b.domain) || !hex(text.substr(5, 2), b.bus) || !hex(text.substr(8, 2), b.slot) ||
      !hex(text.substr(11, 1), b.function) || b.slot > 0x1f || b.function > 7)
    return bad();
  return b;
}

// The QEMU -device of a GPU whose source is known; empty when it is not.
std::string qemu_device(const GpuSource& src, const GpuAttachment& g) {
  if (src.socket)
    return fmt::format(R"({{"driver":"vfio-user-pci","socket":{{"type":"unix","path":{}}},"id":"{}","bus":"{}"}})",
                       json_string(*src.socket), g.id, g.port);
  if (src.host_bdf) return fmt::format("vfio-pci,host={},id={},bus={}", *src.host_bdf, g.id, g.port);
  return {};
}

std::string attach_kind(const GpuSource& src) {
  if (src.socket) return "vfio-user";
  if (src.host_bdf) return "vfio-pci";
  return {};
}

bool is_qemu(VmmTarget t) { return t != VmmTarget::cloud_hypervisor; }

Result<TargetPlan> plan_qemu(const GuestPlan& plan, const TargetRequest& req, TargetPlan out) {
  auto& a = out.args;
  if (req.target == VmmTarget::qemu_virt) {
    a.insert(a.end(), {"-machine", fmt::format("virt,highmem-mmio-size={}", format_qemu_size(out.window))});
  } else {
    a.insert(a.end(), {"-machine", "q35"});
    a.insert(a.end(), {"-global", fmt::format("q35-pcihost.pci-hole64-size={}", format_qemu_size(out.window))});
  }
  for (std::size_t i = 0; i < out.gpus.size(); ++i)
    a.insert(a.end(), {"-device", fmt::format("pcie-root-port,id={},chassis={},pref64-reserve={}", out.gpus[i].port,
                                              i + 1, format_qemu_size(plan.windows[i].size))});
  unsigned gi = 0;
  for (const auto& g : out.gpus)
    for (auto node : g.gi_nodes) {
      a.insert(a.end(), {"-numa", fmt::format("node,nodeid={}", node)});
      a.insert(a.end(), {"-object", fmt::format("acpi-generic-initiator,id=gi{},pci-dev={},node={}", gi++, g.id, node)});
    }
  for (std::size_t i = 0; i < out.gpus.size(); ++i)
    if (auto dev = qemu_device(req.sources[i], out.gpus[i]); !dev.empty()) a.insert(a.end(), {"-device", dev});
  return out;
}

Result<TargetPlan> plan_libvirt(const GuestPlan& plan, const TargetRequest& req, TargetPlan out) {
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
      arg(qemu_device(src, g));
    } else {
      auto bdf = parse_host_bdf(*src.host_bdf);
      if (!bdf) return fail("{}: {}", g.id, bdf.error().message);
      devices += fmt::format(
          "<hostdev mode='subsystem' type='pci' managed='yes'>\n"
          "  <source>\n    <address domain='{:#06x}' bus='{:#04x}' slot='{:#04x}' function='{:#x}'/>\n  </source>\n"
          "  <alias name='{}'/>\n"
          "  <address type='pci' domain='0x0000' bus='{:#04x}' slot='0x00' function='0x0'/>\n",
          bdf->domain, bdf->bus, bdf->slot, bdf->function, g.id, i + 1);
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
    for (const auto& s : args) f.qemu_commandline += fmt::format("  <qemu:arg value='{}'/>\n", xml_attr(s));
    f.qemu_commandline += "</qemu:commandline>\n";
  }
  f.qemu_override = "<qemu:override>\n" + override_devices + "</qemu:override>\n";
  out.libvirt = std::move(f);
  return out;
}

Result<TargetPlan> plan_cloud_hypervisor(const TargetRequest& req, TargetPlan out) {
  const auto n = static_cast<unsigned>(out.gpus.size());
  const unsigned segments = 1 + (n + kChSlotsPerSegment - 1) / kChSlotsPerSegment;
  if (segments > kChMaxSegments)
    return fail("cloud-hypervisor has at most {} PCI segments: {} GPUs, {} per segment after segment 0, need {}",
                kChMaxSegments, n, kChSlotsPerSegment, segments);
  auto& a = out.args;
  if (n > 0) a.insert(a.end(), {"--platform", fmt::format("num_pci_segments={}", segments)});
  for (std::size_t i = 0; i < out.gpus.size(); ++i) {
    auto& g = out.gpus[i];
    const auto& src = req.sources[i];
    if (src.socket)
      a.insert(a.end(), {"--user-device", fmt::format("socket={},id={},pci_segment={}", *src.socket, g.id, g.segment)});
    else
      a.insert(a.end(), {"--device", fmt::format("path=/sys/bus/pci/devices/{},id={},pci_segment={}", *src.host_bdf,
                                                 g.id, g.segment)});
  }
  for (const auto& g : out.gpus)
    for (auto node : g.gi_nodes) a.insert(a.end(), {"--numa", fmt::format("guest_numa_id={},device_id={}", node, g.id)});
  return out;
}

}  // namespace

std::string LibvirtFragment::text() const {
  std::string out = fmt::format(
      "<!-- nvgrace: Grace GPUs for libvirt {} (machine {}). Merge each part into\n"
      "     the domain; <domain> needs xmlns:qemu='{}'\n"
      "     and <cpu><numa> with the guest's memory cells {} -->\n",
      to_string(version), to_string(machine), kLibvirtQemuNamespace,
      memory_cells == 1 ? std::string("0") : fmt::format("0..{}", memory_cells - 1));
  auto part = [&](std::string_view where, const std::string& xml) {
    if (xml.empty()) return;
    out += fmt::format("<!-- {} -->\n{}", where, xml);
  };
  part("in <features>:", features);
  part("in <cpu><numa>, after the guest's memory cells:", numa_cells);
  part("in <domain>:", memory_backing);
  part("in <devices>:", devices);
  part("in <domain>, after <devices>:", qemu_commandline + qemu_override);
  return out;
}

Result<TargetPlan> plan_target(const GuestPlan& plan, const TargetRequest& req) {
  const auto n = plan.windows.size();
  if (plan.gi_nodes.size() != n) return fail("the plan has {} GPUs but GI nodes for {}", n, plan.gi_nodes.size());
  if (!req.sources.empty() && req.sources.size() != n)
    return fail("{} GPU sources for {} GPUs", req.sources.size(), n);
  TargetRequest r = req;
  r.sources.resize(n);

  TargetPlan out;
  out.target = req.target;
  out.numa_nodes = plan.guest_numa_nodes + static_cast<unsigned>(n) * kGiNodesPerGpu;
  if (is_qemu(req.target) && out.numa_nodes > kQemuMaxNumaNodes)
    return fail("QEMU accepts NUMA node ids 0..{}: {} GPUs x {} GI nodes after {} memory node(s) need ids up to {}",
                kQemuMaxNumaNodes - 1, n, kGiNodesPerGpu, plan.guest_numa_nodes, out.numa_nodes - 1);
  const bool libvirt = req.target == VmmTarget::libvirt;
  for (std::size_t i = 0; i < n; ++i) {
    GpuAttachment g;
    const bool ch = req.target == VmmTarget::cloud_hypervisor;
    g.id = fmt::format("{}dev{}", libvirt ? "ua-" : "", i);
    g.port = ch ? std::string{} : fmt::format("{}rp{}", libvirt ? "ua-" : "", i);
    g.segment = ch ? 1 + static_cast<unsigned>(i) / kChSlotsPerSegment : 0;
    g.gi_nodes = plan.gi_nodes[i];
    g.attach = attach_kind(r.sources[i]);
    // libvirt and cloud-hypervisor attach the GPUs themselves: they must
    // know where each comes from.
    if ((libvirt || ch) && g.attach.empty())
      return fail("gpu{} has neither a vfio-user socket nor a host PCI address: {} must attach it", i,
                  to_string(req.target));
    out.gpus.push_back(std::move(g));
  }
  const bool q35 = req.target == VmmTarget::qemu_q35 || (libvirt && req.libvirt_machine == Machine::q35);
  if (q35) {
    auto w = next_pow2(std::max(plan.mmio64_bytes, kQ35DefaultHole64));
    if (!w) return fail("64-bit MMIO need {:#x} has no power-of-two window", plan.mmio64_bytes);
    out.window = *w;
  } else if (req.target != VmmTarget::cloud_hypervisor) {
    out.window = plan.highmem_mmio_size;
  }
  switch (req.target) {
    case VmmTarget::qemu_virt:
    case VmmTarget::qemu_q35: return plan_qemu(plan, r, std::move(out));
    case VmmTarget::libvirt: return plan_libvirt(plan, r, std::move(out));
    case VmmTarget::cloud_hypervisor: break;
  }
  return plan_cloud_hypervisor(r, std::move(out));
}

}  // namespace nvgrace::pciemu
