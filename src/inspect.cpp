#include "inspect.hpp"

#include <algorithm>

#include <fmt/format.h>

#include "log.hpp"
#include "nvgrace/common/size.hpp"

namespace nvgrace::cli {
namespace {

std::string_view status_name(DeviceStatus s) {
  switch (s) {
    case DeviceStatus::passthrough: return "passthrough";
    case DeviceStatus::unusable: return "unusable";
    case DeviceStatus::fake_bars: break;
  }
  return "fake-bars";
}

std::string hex_id(std::uint16_t id) { return fmt::format("{:#06x}", id); }

}  // namespace

bool InspectReport::any_unusable() const {
  return std::any_of(devices.begin(), devices.end(),
                     [](const DeviceReport& d) { return d.status == DeviceStatus::unusable; });
}

Result<InspectReport> build_report(const std::vector<DeviceSpec>& specs, unsigned guest_numa_nodes) {
  auto log = module_logger("cli");
  InspectReport report;
  report.guest_numa_nodes = guest_numa_nodes;
  std::vector<std::vector<pciemu::GuestBar>> guest_bars;
  for (const auto& spec : specs) {
    auto identity = pciemu::find_identity(spec.device_id);
    if (!identity) return fail("device id {} of {} is not a Grace GPU nvgrace knows (R1)", hex_id(spec.device_id), spec.name);
    DeviceReport dev{spec, *identity, DeviceStatus::fake_bars, {}, {}};
    auto layout = pciemu::compute_layout({spec.mem_base, spec.mem_size, spec.mig_hw_bug, spec.phys_addr_bits});
    if (!layout) {
      dev.status = DeviceStatus::unusable;
      dev.reason = layout.error().message;
      log->warn("{}: unusable: {}", spec.name, dev.reason);
    } else {
      if (layout->passthrough) {
        dev.status = DeviceStatus::passthrough;
        dev.reason = layout->reason;
        log->info("{}: passthrough: {}", spec.name, dev.reason);
      }
      dev.bars = pciemu::visible_bars(*identity, *layout);
    }
    log->debug("{}: {} BARs visible to the guest", spec.name, dev.bars.size());
    if (dev.status != DeviceStatus::unusable) {
      report.plan_members.push_back(report.devices.size());
      guest_bars.push_back(dev.bars);
    }
    report.devices.push_back(std::move(dev));
  }
  auto plan = pciemu::plan_guest(guest_bars, guest_numa_nodes);
  if (!plan) return std::unexpected(plan.error().context("guest plan"));
  report.plan = std::move(*plan);
  return report;
}

nlohmann::ordered_json to_json(const InspectReport& r) {
  using nlohmann::ordered_json;
  ordered_json devices = ordered_json::array();
  for (const auto& d : r.devices) {
    ordered_json bars = ordered_json::array();
    for (const auto& b : d.bars) {
      ordered_json jb;
      jb["index"] = b.index;
      jb["role"] = std::string(pciemu::to_string(b.role));
      jb["host_base"] = b.mem ? ordered_json(b.mem->host_base) : ordered_json(nullptr);
      jb["length"] = b.mem ? b.mem->length : b.size;
      jb["size"] = b.size;
      jb["tail"] = b.mem ? b.mem->tail() : 0;
      jb["prefetchable"] = true;
      jb["cacheable"] = b.mem ? b.mem->cacheable : false;
      bars.push_back(std::move(jb));
    }
    ordered_json jd;
    jd["name"] = d.spec.name;
    jd["profile"] = d.spec.profile ? ordered_json(*d.spec.profile) : ordered_json(nullptr);
    jd["device_id"] = d.spec.device_id;
    jd["model"] = std::string(d.identity.model);
    jd["mem_base"] = d.spec.mem_base;
    jd["mem_size"] = d.spec.mem_size;
    jd["mig_hw_bug"] = d.spec.mig_hw_bug;
    jd["mig_hw_bug_source"] = d.spec.mig_hw_bug_source;
    jd["status"] = std::string(status_name(d.status));
    jd["reason"] = d.reason.empty() ? ordered_json(nullptr) : ordered_json(d.reason);
    jd["bars"] = std::move(bars);
    devices.push_back(std::move(jd));
  }
  ordered_json windows = ordered_json::array();
  for (std::size_t i = 0; i < r.plan.windows.size(); ++i) {
    const auto& w = r.plan.windows[i];
    windows.push_back({{"device", r.devices[r.plan_members[i]].spec.name}, {"offset", w.offset}, {"size", w.size}, {"align", w.align}});
  }
  ordered_json guest;
  guest["mmio64_bytes"] = r.plan.mmio64_bytes;
  guest["highmem_mmio_size"] = r.plan.highmem_mmio_size;
  guest["guest_numa_nodes"] = r.guest_numa_nodes;
  guest["root_port_windows"] = std::move(windows);
  guest["qemu_args"] = r.plan.qemu_args;
  return ordered_json{{"devices", std::move(devices)}, {"guest", std::move(guest)}};
}

std::string to_table(const InspectReport& r) {
  std::string out;
  auto line = [&out](std::string s) {
    out += s;
    out += '\n';
  };
  for (const auto& d : r.devices) {
    line(fmt::format("{}: {:04x}:{:04x} {} ({}){}", d.spec.name, pciemu::kNvidiaVendorId, d.spec.device_id,
                     d.identity.model, pciemu::to_string(d.identity.generation),
                     d.spec.profile ? fmt::format(", profile {}", *d.spec.profile) : ""));
    line(fmt::format("  memory {} at {:#x}, MIG bug: {} (from {})", format_size(d.spec.mem_size), d.spec.mem_base,
                     d.spec.mig_hw_bug ? "yes" : "no", d.spec.mig_hw_bug_source));
    line(fmt::format("  status {}", status_name(d.status)));
    if (!d.reason.empty()) line(fmt::format("  reason {}", d.reason));
    line(fmt::format("  {:<3} {:<7} {:<16} {:<10} {:<9} {:<9} {}", "BAR", "role", "host base", "length", "BAR size",
                     "tail", "mapping"));
    for (const auto& b : d.bars) {
      if (b.mem) {
        line(fmt::format("  {:<3} {:<7} {:<16} {:<10} {:<9} {:<9} {}", b.index, pciemu::to_string(b.role),
                         fmt::format("{:#x}", b.mem->host_base), format_size(b.mem->length), format_size(b.size),
                         format_size(b.mem->tail()), b.mem->cacheable ? "write-back" : "write-combined"));
      } else {
        line(fmt::format("  {:<3} {:<7} {:<16} {:<10} {:<9} {:<9} {}", b.index, "device", "(device)",
                         format_size(b.size), format_size(b.size), "-", "trapped"));
      }
    }
    line("");
  }
  const auto& p = r.plan;
  line("guest plan: one PCIe root port per GPU (R25)");
  for (std::size_t i = 0; i < p.windows.size(); ++i)
    line(fmt::format("  rp{} -> {}: 64-bit window {} at +{:#x}, aligned to {}", i, r.devices[r.plan_members[i]].spec.name,
                     format_size(p.windows[i].size), p.windows[i].offset, format_size(p.windows[i].align)));
  line(fmt::format("  64-bit MMIO needed: {} ({:#x} bytes)", format_size(p.mmio64_bytes), p.mmio64_bytes));
  line(fmt::format("  highmem-mmio-size:  {}{}", format_qemu_size(p.highmem_mmio_size),
                   p.highmem_mmio_size > pciemu::kQemuDefaultHighmemMmio ? " (above QEMU's 512G default)"
                                                                         : " (QEMU's default suffices)"));
  line(fmt::format("  NUMA: {} GI nodes per GPU, numbered from {}", pciemu::kGiNodesPerGpu, r.guest_numa_nodes));
  line("  QEMU arguments (attach GPU i with id=dev<i>, bus=rp<i>):");
  for (std::size_t i = 0; i + 1 < p.qemu_args.size(); i += 2)
    line(fmt::format("    {} {}", p.qemu_args[i], p.qemu_args[i + 1]));
  return out;
}

}  // namespace nvgrace::cli
