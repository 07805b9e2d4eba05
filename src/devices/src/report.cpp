#include "nvgrace/devices/report.hpp"

#include <algorithm>

#include <fmt/format.h>

namespace nvgrace::devices {

std::string_view to_string(DeviceStatus s) {
  switch (s) {
    case DeviceStatus::passthrough: return "passthrough";
    case DeviceStatus::unusable: return "unusable";
    case DeviceStatus::absent: return "not-present";
    case DeviceStatus::fake_bars: break;
  }
  return "fake-bars";
}

bool InspectReport::any_unusable() const {
  return plan_error.has_value() || std::any_of(devices.begin(), devices.end(), [](const DeviceReport& d) {
           return d.status == DeviceStatus::unusable;
         });
}

Result<InspectReport> build_report(const std::vector<DeviceSpec>& specs, const PlanOptions& options) {
  const unsigned guest_numa_nodes = options.guest_numa_nodes;
  InspectReport report;
  report.guest_numa_nodes = guest_numa_nodes;
  report.target.target = options.target ? options.target : &plan::default_target();
  std::vector<std::vector<pciemu::GuestBar>> guest_bars;
  for (const auto& spec : specs) {
    auto identity = pciemu::find_identity(spec.device_id);
    if (spec.absent_reason) {
      DeviceReport dev{spec, identity, DeviceStatus::absent, *spec.absent_reason, {}};
      report.devices.push_back(std::move(dev));
      continue;
    }
    if (!identity) return fail("device id {:#06x} of {} is not a Grace GPU nvgrace knows (R1)", spec.device_id, spec.name);
    DeviceReport dev{spec, *identity, DeviceStatus::fake_bars, {}, {}};
    if (spec.passthrough_reason) {
      dev.status = DeviceStatus::passthrough;
      dev.reason = *spec.passthrough_reason;
      dev.bars = pciemu::visible_bars(*identity, pciemu::Layout{true, dev.reason, {}, {}});
    } else if (auto layout = pciemu::compute_layout({spec.mem_base, spec.mem_size, spec.mig_hw_bug, spec.phys_addr_bits});
               !layout) {
      dev.status = DeviceStatus::unusable;
      dev.reason = layout.error().message;
    } else {
      if (layout->passthrough) {
        dev.status = DeviceStatus::passthrough;
        dev.reason = layout->reason;
      }
      dev.bars = pciemu::visible_bars(*identity, *layout);
    }
    // A GPU whose BARs alone need more 64-bit MMIO than any power-of-two
    // window holds fits no guest (R25): unusable, with the plan's reason.
    if (dev.status != DeviceStatus::unusable) {
      const std::vector<std::vector<pciemu::GuestBar>> alone{dev.bars};
      if (auto p = plan::plan_guest(alone, guest_numa_nodes); !p) {
        dev.status = DeviceStatus::unusable;
        dev.reason = fmt::format("no guest can hold its BARs: {} (R25)", p.error().message);
      }
    }
    if (dev.status != DeviceStatus::unusable) {
      report.plan_members.push_back(report.devices.size());
      guest_bars.push_back(dev.bars);
    }
    report.devices.push_back(std::move(dev));
  }
  auto guest = plan::plan_guest(guest_bars, guest_numa_nodes);
  Result<plan::TargetPlan> target = fail("no guest plan");
  if (guest) {
    plan::TargetRequest req;
    req.target = options.target;
    req.libvirt_machine = options.libvirt_machine;
    req.libvirt_version = options.libvirt_version;
    const auto n = report.plan_members.size();
    for (std::size_t i = 0; i < n; ++i) {
      plan::GpuSource src;
      if (options.socket) src.socket = n == 1 ? *options.socket : fmt::format("{}.{}", *options.socket, i);
      else src.host_bdf = report.devices[report.plan_members[i]].spec.bdf;
      req.sources.push_back(std::move(src));
    }
    target = plan::plan_target(*guest, req);
  }
  if (guest && target) {
    report.plan = std::move(*guest);
    report.target = std::move(*target);
  } else {
    report.plan_error = fmt::format("the {} usable GPUs fit no guest together: {} (R25)", guest_bars.size(),
                                    guest ? target.error().message : guest.error().message);
    report.plan_members.clear();
  }
  return report;
}

}  // namespace nvgrace::devices
