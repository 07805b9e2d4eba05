#include "nvgrace/plan/targets.hpp"

#include <algorithm>
#include <charconv>

#include <fmt/format.h>

#include "nvgrace/common/size.hpp"

namespace nvgrace::plan {

// The targets' descriptors (plan/src/targets/*.cpp), listed by the build.
std::span<const Target* const> registered_targets();

std::span<const Target* const> all_targets() {
  static const std::vector<const Target*> sorted = [] {
    auto r = registered_targets();
    std::vector<const Target*> v(r.begin(), r.end());
    std::sort(v.begin(), v.end(), [](const Target* a, const Target* b) { return a->order < b->order; });
    return v;
  }();
  return sorted;
}

const Target* find_target(std::string_view name) {
  for (const auto* t : all_targets())
    if (t->name == name) return t;
  return nullptr;
}

const Target& default_target() { return *find_target("qemu-virt"); }

const std::vector<std::string>& target_names() {
  static const std::vector<std::string> names = [] {
    std::vector<std::string> v;
    for (const auto* t : all_targets()) v.emplace_back(t->name);
    return v;
  }();
  return names;
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

namespace detail {

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

// The QEMU -device of a GPU whose source is known; empty when it is not.
std::string qemu_device(const GpuSource& src, const GpuAttachment& g) {
  if (src.socket)
    return fmt::format(R"({{"driver":"vfio-user-pci","socket":{{"type":"unix","path":{}}},"id":"{}","bus":"{}"}})",
                       json_string(*src.socket), g.id, g.port);
  if (src.host_bdf) return fmt::format("vfio-pci,host={},id={},bus={}", src.host_bdf->to_string(), g.id, g.port);
  return {};
}

// QEMU's own arguments, after `machine_args`: a root port with
// pref64-reserve per GPU, a -numa node and an acpi-generic-initiator per GI
// node, and the GPUs whose source is known.
Result<TargetPlan> write_qemu(const GuestPlan& plan, const TargetRequest& req, TargetPlan out,
                              std::vector<std::string> machine_args) {
  auto& a = out.args;
  a.insert(a.end(), machine_args.begin(), machine_args.end());
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

}  // namespace detail

namespace {
std::string attach_kind(const GpuSource& src) {
  if (src.socket) return "vfio-user";
  if (src.host_bdf) return "vfio-pci";
  return {};
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
  const Target& t = req.target ? *req.target : default_target();
  const auto n = plan.windows.size();
  if (plan.gi_nodes.size() != n) return fail("the plan has {} GPUs but GI nodes for {}", n, plan.gi_nodes.size());
  if (!req.sources.empty() && req.sources.size() != n)
    return fail("{} GPU sources for {} GPUs", req.sources.size(), n);
  TargetRequest r = req;
  r.target = &t;
  r.sources.resize(n);

  TargetPlan out;
  out.target = &t;
  out.numa_nodes = plan.guest_numa_nodes + static_cast<unsigned>(n) * kGiNodesPerGpu;
  if (t.qemu_limits && out.numa_nodes > kQemuMaxNumaNodes)
    return fail("QEMU accepts NUMA node ids 0..{}: {} GPUs x {} GI nodes after {} memory node(s) need ids up to {}",
                kQemuMaxNumaNodes - 1, n, kGiNodesPerGpu, plan.guest_numa_nodes, out.numa_nodes - 1);
  for (std::size_t i = 0; i < n; ++i) {
    GpuAttachment g;
    g.id = fmt::format("{}dev{}", t.id_prefix, i);
    g.port = t.segments ? std::string{} : fmt::format("{}rp{}", t.id_prefix, i);
    g.segment = t.segments ? 1 + static_cast<unsigned>(i) / kChSlotsPerSegment : 0;
    g.gi_nodes = plan.gi_nodes[i];
    g.attach = attach_kind(r.sources[i]);
    // A target that attaches the GPUs itself must know where each comes from.
    if (t.attaches_gpus && g.attach.empty())
      return fail("gpu{} has neither a vfio-user socket nor a host PCI address: {} must attach it", i, t.name);
    out.gpus.push_back(std::move(g));
  }
  auto w = t.window(plan, r);
  if (!w) return fail(w.error());
  out.window = w->size;
  out.window_kind = w->kind;
  return t.write(plan, r, std::move(out));
}

}  // namespace nvgrace::plan
