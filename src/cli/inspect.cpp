#include "inspect.hpp"

#include <algorithm>
#include <bit>

#include <fmt/format.h>

#include "json.hpp"
#include "nvgrace/log/log.hpp"
#include "nvgrace/common/size.hpp"
#include "nvgrace/pciemu/config_space.hpp"
#include "nvgrace/vfio/regions.hpp"

#include <linux/vfio.h>

namespace nvgrace::cli {
namespace {

// R19: how the guest's mapping of a BAR is made. The device's own BARs are
// trapped (emulation) or the device's MMIO (passthrough): uncached.
CacheAttr bar_cache(const pciemu::GuestBar& b) {
  if (!b.mem) return CacheAttr::uncached;
  return b.mem->cacheable ? CacheAttr::write_back : CacheAttr::write_combined;
}

std::vector<std::string> region_flags(std::uint32_t f) {
  std::vector<std::string> out;
  if (f & VFIO_REGION_INFO_FLAG_READ) out.emplace_back("read");
  if (f & VFIO_REGION_INFO_FLAG_WRITE) out.emplace_back("write");
  if (f & VFIO_REGION_INFO_FLAG_MMAP) out.emplace_back("mmap");
  return out;
}

std::string_view region_name(unsigned index) {
  static constexpr std::string_view names[] = {"BAR0", "BAR1", "BAR2", "BAR3", "BAR4", "BAR5", "ROM", "CONFIG", "VGA"};
  return index < std::size(names) ? names[index] : "?";
}

std::vector<vfio::RegionDesc> regions_of(const DeviceReport& d) {
  return vfio::region_table(d.bars, pciemu::ConfigSpace::kSize);
}

// The ACPI read diagnostics in the JSON report (docs/json.md).
nlohmann::ordered_json acpi_json(const devices::AcpiDiagnostics& a) {
  nlohmann::ordered_json j;
  j["tables"] = nlohmann::ordered_json::array();
  for (const auto& t : a.tables)
    j["tables"].push_back({{"source", t.source}, {"signature", t.signature}, {"length", t.length},
                           {"checksum_ok", t.checksum_ok}});
  j["errors"] = a.errors;
  j["warnings"] = a.warnings;
  return j;
}

// Word-wraps `text` after `lead` so no line passes 80 columns.
std::string wrap(std::string_view lead, std::string_view text) {
  constexpr std::size_t width = 80;
  std::string out(lead), line_text;
  const std::string indent(lead.size(), ' ');
  std::size_t col = lead.size();
  while (!text.empty()) {
    auto sp = text.find(' ');
    std::string_view word = text.substr(0, sp);
    text = sp == std::string_view::npos ? std::string_view{} : text.substr(sp + 1);
    if (col > lead.size() && col + 1 + word.size() > width) {
      out += '\n' + indent;
      col = indent.size();
    } else if (col > lead.size()) {
      out += ' ';
      ++col;
    }
    out += word;
    col += word.size();
  }
  return out;
}

}  // namespace

nlohmann::ordered_json to_json(const InspectReport& r, bool regions) {
  using nlohmann::ordered_json;
  ordered_json devices = ordered_json::array();
  for (const auto& d : r.devices) {
    ordered_json bars = ordered_json::array();
    for (const auto& b : d.bars) {
      ordered_json jb;
      jb["index"] = b.index.value();
      jb["role"] = std::string(pciemu::to_string(b.role));
      jb["host_base"] = b.mem ? ordered_json(b.mem->host_base) : ordered_json(nullptr);
      jb["length"] = b.mem ? b.mem->length : b.size;
      jb["size"] = b.size;
      jb["tail"] = b.mem ? b.mem->tail() : 0;
      jb["prefetchable"] = true;
      jb["cache"] = std::string(to_string(bar_cache(b)));
      bars.push_back(std::move(jb));
    }
    ordered_json jd;
    jd["name"] = d.spec.name;
    jd["profile"] = d.spec.profile ? ordered_json(*d.spec.profile) : ordered_json(nullptr);
    jd["device_id"] = d.spec.device_id ? ordered_json(hex_id(d.spec.device_id)) : ordered_json(nullptr);
    jd["model"] = d.identity ? ordered_json(std::string(d.identity->model)) : ordered_json(nullptr);
    jd["mem_base"] = d.spec.mem_base;
    jd["mem_size"] = d.spec.mem_size;
    jd["mig_hw_bug"] = d.spec.mig_hw_bug;
    jd["mig_hw_bug_source"] = d.spec.mig_hw_bug_source;
    jd["acpi_path"] = d.spec.acpi_path ? ordered_json(*d.spec.acpi_path) : ordered_json(nullptr);
    if (d.spec.dt_node) jd["dt_node"] = *d.spec.dt_node;
    jd["bdf"] = d.spec.bdf ? ordered_json(d.spec.bdf->to_string()) : ordered_json(nullptr);
    if (d.spec.segment) jd["segment"] = *d.spec.segment;
    if (d.spec.acpi_path) jd["adr_chain"] = d.spec.adr_chain;
    if (d.spec.pxm_start || d.spec.pxm_count) {
      jd["numa"] = {{"pxm_start", d.spec.pxm_start ? ordered_json(*d.spec.pxm_start) : ordered_json(nullptr)},
                    {"pxm_count", d.spec.pxm_count ? ordered_json(*d.spec.pxm_count) : ordered_json(nullptr)}};
    }
    if (d.spec.egm_base_pa || d.spec.egm_size || d.spec.egm_pxm || d.spec.egm_retired_pages_data_base) {
      auto opt = [](const std::optional<std::uint64_t>& v) { return v ? ordered_json(*v) : ordered_json(nullptr); };
      jd["egm"] = {{"base_pa", opt(d.spec.egm_base_pa)},
                   {"size", opt(d.spec.egm_size)},
                   {"pxm", opt(d.spec.egm_pxm)},
                   {"retired_pages_data_base", opt(d.spec.egm_retired_pages_data_base)}};
    }
    if (d.spec.serve) {
      const auto& sv = *d.spec.serve;
      jd["serve"] = {{"ready", sv.ready},
                     {"driver", sv.driver.empty() ? ordered_json(nullptr) : ordered_json(sv.driver)},
                     {"iommu_group", sv.iommu_group ? ordered_json(*sv.iommu_group) : ordered_json(nullptr)},
                     {"vfio_api", sv.vfio_api.empty() ? ordered_json(nullptr) : ordered_json(sv.vfio_api)},
                     {"missing", sv.missing},
                     {"memory", sv.memory_path.empty()
                                    ? ordered_json(nullptr)
                                    : ordered_json{{"path", sv.memory_path},
                                                   {"usemem", sv.usemem_type},
                                                   {"resmem", sv.resmem_type}}},
                     {"host_memory", !sv.host_memory
                                         ? ordered_json(nullptr)
                                         : ordered_json{{"path", sv.host_memory->path},
                                                        {"usable", sv.host_memory->usable},
                                                        {"needed", sv.host_memory->needed},
                                                        {"usemem", sv.host_memory->usable ? ordered_json("write-back")
                                                                                          : ordered_json(nullptr)},
                                                        {"why", sv.host_memory->why.empty()
                                                                    ? ordered_json(nullptr)
                                                                    : ordered_json(sv.host_memory->why)}}}};
    }
    jd["status"] = std::string(devices::to_string(d.status));
    jd["reason"] = d.reason.empty() ? ordered_json(nullptr) : ordered_json(d.reason);
    jd["bars"] = std::move(bars);
    if (regions && !d.bars.empty()) {
      ordered_json jr = ordered_json::array();
      for (const auto& reg : regions_of(d)) {
        ordered_json e{{"index", reg.index.value()}, {"name", std::string(region_name(reg.index.value()))}, {"size", reg.size},
                       {"offset", vfio::region_offset(reg.index)}, {"flags", region_flags(reg.flags)}};
        e["sparse_mmap"] = ordered_json::array();
        for (const auto& a : reg.sparse) e["sparse_mmap"].push_back({{"offset", a.offset}, {"size", a.size}});
        e["cache"] = reg.sparse.empty() ? "uncached" : reg.write_combined ? "write-combined" : "write-back";
        jr.push_back(std::move(e));
      }
      jd["regions"] = std::move(jr);
    }
    devices.push_back(std::move(jd));
  }
  ordered_json windows = ordered_json::array();
  for (std::size_t i = 0; i < r.plan.windows.size(); ++i) {
    const auto& w = r.plan.windows[i];
    windows.push_back({{"device", r.devices[r.plan_members[i]].spec.name}, {"offset", w.offset}, {"size", w.size}, {"align", w.align}});
  }
  const auto& t = r.target;
  ordered_json gpus = ordered_json::array();
  for (std::size_t i = 0; i < t.gpus.size(); ++i) {
    const auto& g = t.gpus[i];
    ordered_json jg{{"device", r.devices[r.plan_members[i]].spec.name}, {"id", g.id}};
    jg["port"] = g.port.empty() ? ordered_json(nullptr) : ordered_json(g.port);
    jg["segment"] = g.segment;
    jg["gi_nodes"] = g.gi_nodes;
    jg["attach"] = g.attach.empty() ? ordered_json(nullptr) : ordered_json(g.attach);
    gpus.push_back(std::move(jg));
  }
  ordered_json guest;
  guest["error"] = r.plan_error ? ordered_json(*r.plan_error) : ordered_json(nullptr);
  guest["target"] = std::string(t.target->name);
  guest["mmio64_bytes"] = r.plan.mmio64_bytes;
  guest["highmem_mmio_size"] = r.plan.highmem_mmio_size;
  guest["window"] = t.window;
  guest["guest_numa_nodes"] = r.guest_numa_nodes;
  guest["numa_nodes"] = t.numa_nodes;
  guest["root_port_windows"] = std::move(windows);
  guest["gpus"] = std::move(gpus);
  guest["args"] = t.args;
  if (t.libvirt) {
    const auto& f = *t.libvirt;
    guest["libvirt"] = {{"version", plan::to_string(f.version)},
                        {"machine", std::string(plan::to_string(f.machine))},
                        {"features", f.features},
                        {"numa_cells", f.numa_cells},
                        {"memory_backing", f.memory_backing},
                        {"devices", f.devices},
                        {"qemu_commandline", f.qemu_commandline},
                        {"qemu_override", f.qemu_override},
                        {"xml", f.text()}};
  } else {
    guest["libvirt"] = nullptr;
  }
  ordered_json out{{"devices", std::move(devices)}, {"guest", std::move(guest)}};
  if (r.acpi) out["acpi"] = acpi_json(*r.acpi);
  return out;
}

std::string to_table(const InspectReport& r, bool regions) {
  std::string out;
  auto line = [&out](std::string s) {
    out += s;
    out += '\n';
  };
  if (r.acpi) {
    const auto& a = *r.acpi;
    std::string names;
    for (const auto& t : a.tables) names += (names.empty() ? "" : ", ") + t.source;
    line(wrap("ACPI: ", fmt::format("{} table(s) read ({}); {} reader error(s), {} warning(s){}", a.tables.size(),
                                    names, a.errors.size(), a.warnings.size(),
                                    a.errors.empty() ? "" : " - run with -v to see them")));
    line("");
  }
  for (const auto& d : r.devices) {
    if (d.identity)
      line(fmt::format("{}: {:04x}:{:04x} {} ({}){}", d.spec.name, pciemu::kNvidiaVendorId, d.spec.device_id,
                       d.identity->model, pciemu::to_string(d.identity->generation),
                       d.spec.profile ? fmt::format(", profile {}", *d.spec.profile) : ""));
    else
      line(fmt::format("{}: device id unknown", d.spec.name));
    if (d.status != DeviceStatus::absent)
      line(fmt::format("  memory {} at {:#x}, MIG bug: {} (from {})", format_size(d.spec.mem_size), d.spec.mem_base,
                       d.spec.mig_hw_bug ? "yes" : "no", d.spec.mig_hw_bug_source));
    if (d.spec.acpi_path) {
      std::string adr;
      for (auto a : d.spec.adr_chain) adr += fmt::format("{}{:x}.{:x}", adr.empty() ? "" : "/", a >> 16, a & 0xFFFF);
      line(fmt::format("  acpi   {} (segment {}, _ADR {})", *d.spec.acpi_path, d.spec.segment.value_or(0),
                       adr.empty() ? "-" : adr));
    }
    if (d.spec.dt_node) line(fmt::format("  dt     {}", *d.spec.dt_node));
    if (d.spec.bdf) line(fmt::format("  pci    {}", *d.spec.bdf));
    if (d.spec.pxm_start && d.spec.pxm_count)
      line(fmt::format("  numa   PXM {}..{} ({} memory partitions)", *d.spec.pxm_start,
                       *d.spec.pxm_start + *d.spec.pxm_count - 1, *d.spec.pxm_count));
    if (d.spec.egm_base_pa && d.spec.egm_size)
      line(fmt::format("  egm    {} at {:#x}{}", format_size(*d.spec.egm_size), *d.spec.egm_base_pa,
                       d.spec.egm_pxm ? fmt::format(", PXM {}", *d.spec.egm_pxm) : ""));
    if (d.spec.serve) {
      const auto& sv = *d.spec.serve;
      const auto& dax = sv.host_memory;
      if (sv.ready)
        line(fmt::format("  serve  ready: {}, IOMMU group {}, VFIO {}{}", sv.driver, sv.iommu_group.value_or(0),
                         sv.vfio_api, dax && dax->needed ? fmt::format(", with --host-memory {}", dax->path) : ""));
      for (const auto& m : sv.missing) line(wrap("  serve  missing: ", m));
      if (!sv.memory_path.empty())
        line(wrap("  serve  memory: ", fmt::format("{}: usemem {}, resmem {} (R40)", sv.memory_path, sv.usemem_type,
                                                   sv.resmem_type)));
      if (dax)
        line(wrap("  serve  memory: ", dax->usable ? fmt::format("--host-memory {}: usemem write-back (R40)", dax->path)
                                                   : fmt::format("--host-memory {}: refused: {} (R40)", dax->path,
                                                                 dax->why)));
    }
    line(fmt::format("  status {}", devices::to_string(d.status)));
    if (!d.reason.empty()) line(wrap("  reason ", d.reason));
    if (d.bars.empty()) {
      line("");
      continue;
    }
    line(fmt::format("  {:<3} {:<7} {:<16} {:<10} {:<9} {:<9} {}", "BAR", "role", "host base", "length", "BAR size",
                     "tail", "mapping"));
    for (const auto& b : d.bars) {
      if (b.mem) {
        line(fmt::format("  {:<3} {:<7} {:<16} {:<10} {:<9} {:<9} {}", b.index, pciemu::to_string(b.role),
                         fmt::format("{:#x}", b.mem->host_base), format_size(b.mem->length), format_size(b.size),
                         format_size(b.mem->tail()), to_string(bar_cache(b))));
      } else {
        line(fmt::format("  {:<3} {:<7} {:<16} {:<10} {:<9} {:<9} {}", b.index, "device", "(device)",
                         format_size(b.size), format_size(b.size), "-", to_string(CacheAttr::uncached)));
      }
    }
    if (regions) {
      line("  VFIO regions (VFIO_DEVICE_GET_REGION_INFO, R16)");
      line(fmt::format("  {:<3} {:<7} {:<14} {:<16} {}", "idx", "name", "size", "flags", "sparse mmap"));
      for (const auto& reg : regions_of(d)) {
        std::string flags;
        for (const auto& f : region_flags(reg.flags)) flags += (flags.empty() ? "" : ",") + f;
        std::string sparse;
        for (const auto& a : reg.sparse)
          sparse += fmt::format("{}{:#x}+{:#x} {}", sparse.empty() ? "" : " ", a.offset, a.size,
                                reg.write_combined ? "WC" : "WB");
        line(fmt::format("  {:<3} {:<7} {:<14} {:<16} {}", reg.index, region_name(reg.index.value()),
                         fmt::format("{:#x}", reg.size), flags.empty() ? "-" : flags, sparse.empty() ? "-" : sparse));
      }
    }
    line("");
  }
  if (r.devices.empty()) line("no Grace GPU found\n");
  const auto& p = r.plan;
  if (r.plan_error) {
    line(wrap("guest plan: none: ", *r.plan_error));
    return out;
  }
  const auto& t = r.target;
  const bool ch = t.target->segments;
  line(fmt::format("guest plan for {}: {} (R25)", t.target->name,
                   ch ? "GPUs on PCI segments 1.." : "one PCIe root port per GPU"));
  for (std::size_t i = 0; i < p.windows.size(); ++i) {
    const auto& name = r.devices[r.plan_members[i]].spec.name;
    // cloud-hypervisor places the BARs itself: no root port window to place.
    if (ch)
      line(fmt::format("  segment {} -> {}: BARs take {}, aligned to {}", t.gpus[i].segment, name,
                       format_size(p.windows[i].size), format_size(p.windows[i].align)));
    else
      line(fmt::format("  {} -> {}: 64-bit window {} at +{:#x}, aligned to {}", t.gpus[i].port, name,
                       format_size(p.windows[i].size), p.windows[i].offset, format_size(p.windows[i].align)));
  }
  line(fmt::format("  64-bit MMIO needed: {} ({:#x} bytes)", format_size(p.mmio64_bytes), p.mmio64_bytes));
  if (t.window_kind == plan::WindowKind::vmm_chosen)
    line(fmt::format("  64-bit MMIO window: {}'s, from the guest's physical address bits", t.target->name));
  else if (t.window_kind == plan::WindowKind::pci_hole64_size)
    line(fmt::format("  pci-hole64-size:    {}{}", format_qemu_size(t.window),
                     t.window > plan::kQ35DefaultHole64 ? " (above q35's 32G default)" : " (q35's default)"));
  else
    line(fmt::format("  highmem-mmio-size:  {}{}", format_qemu_size(t.window),
                     t.window > plan::kQemuDefaultHighmemMmio ? " (above QEMU's 512G default)"
                                                                : " (QEMU's default suffices)"));
  line(fmt::format("  NUMA: {} GI nodes per GPU, numbered from {}; the guest has {} nodes (0..{})", plan::kGiNodesPerGpu,
                   r.guest_numa_nodes, t.numa_nodes, t.numa_nodes - 1));
  // Linux numbers at most 2^CONFIG_NODES_SHIFT nodes and drops the rest
  // ("SRAT: Too many proximity domains"); Debian's arm64 kernels have 16.
  if (t.numa_nodes > 16)
    line(wrap("  ", fmt::format("The guest kernel must allow {} NUMA nodes (CONFIG_NODES_SHIFT >= {}); Debian's arm64 "
                                "kernels allow 16.",
                                t.numa_nodes, std::bit_width(t.numa_nodes - 1))));
  for (const auto& g : t.gpus)
    line(fmt::format("  {} GI nodes {}{}", g.id, plan::format_node_list(g.gi_nodes),
                     g.attach.empty() ? "" : fmt::format(" ({})", g.attach)));
  if (t.libvirt) {
    line("  libvirt domain XML:");
    out += t.libvirt->text();
    return out;
  }
  const bool attached = std::all_of(t.gpus.begin(), t.gpus.end(), [](const auto& g) { return !g.attach.empty(); });
  if (attached || t.target->attaches_gpus)
    line(fmt::format("  {}:", t.target->args_title));
  else
    line(fmt::format("  {} (attach GPU i with id={}dev<i>, bus={}rp<i>):", t.target->args_title, t.target->id_prefix,
                     t.target->id_prefix));
  for (std::size_t i = 0; i + 1 < t.args.size(); i += 2) line(fmt::format("    {} {}", t.args[i], t.args[i + 1]));
  return out;
}

}  // namespace nvgrace::cli
