// What the guest will see of each GPU and whether it fits one guest
// (nvgrace-model.md R1, R5, R7-R10, R25): the status and BARs of each
// device, and the guest plan for a VMM target. What `nvgrace inspect`
// prints, as data.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "nvgrace/common/result.hpp"
#include "nvgrace/devices/discovery.hpp"
#include "nvgrace/devices/spec.hpp"
#include "nvgrace/pciemu/bars.hpp"
#include "nvgrace/pciemu/identity.hpp"
#include "nvgrace/plan/guest_plan.hpp"
#include "nvgrace/plan/targets.hpp"

namespace nvgrace::devices {

// fake-bars: usemem/resmem become BAR4/BAR2; passthrough: no fake BARs (R5);
// unusable: the driver would refuse the device, or no guest can hold its BARs;
// not-present: described by the tables, not present on the host.
enum class DeviceStatus { fake_bars, passthrough, unusable, absent };
// "fake-bars", "passthrough", "unusable", "not-present".
[[nodiscard]] std::string_view to_string(DeviceStatus s);

struct DeviceReport {
  DeviceSpec spec;
  std::optional<pciemu::DeviceIdentity> identity;  // unset only for an absent GPU of unknown id
  DeviceStatus status = DeviceStatus::fake_bars;
  std::string reason;  // why passthrough or unusable
  std::vector<pciemu::GuestBar> bars;
};

// How the guest plan is written: for which VMM, and where the GPUs come
// from (--target, --libvirt-version, --libvirt-machine, --socket).
struct PlanOptions {
  unsigned guest_numa_nodes = 1;
  const plan::Target* target = nullptr;  // nullptr: plan::default_target()
  plan::Machine libvirt_machine = plan::Machine::virt;
  plan::LibvirtVersion libvirt_version = plan::kLibvirtDefault;
  // nvgrace serve's socket: GPU i of the plan is served there (PATH.i when
  // the plan has several GPUs, as serve names them).
  std::optional<std::string> socket;
};

struct InspectReport {
  std::vector<DeviceReport> devices;
  // The guest plan covers the devices a guest can be given: every one but the
  // unusable. plan.windows[i] and target.gpus[i] belong to
  // devices[plan_members[i]].
  plan::GuestPlan plan;
  plan::TargetPlan target;
  std::vector<std::size_t> plan_members;
  unsigned guest_numa_nodes = 1;
  // Set when the usable GPUs fit no guest together (their 64-bit MMIO need has
  // no power-of-two window, or the target's limits refuse them): why. The plan
  // is then empty.
  std::optional<std::string> plan_error;
  // Where the devices came from, when from ACPI tables: read diagnostics.
  std::optional<AcpiDiagnostics> acpi;

  // Whether the command must exit 1: a GPU is unusable or the plan failed.
  [[nodiscard]] bool any_unusable() const;
};

// Fails only where the input cannot describe a Grace GPU at all (unknown device
// id). A device the driver would refuse, or whose BARs no guest can hold, is
// reported as "unusable" inside the report; GPUs that fit no guest together
// leave the plan empty with `plan_error` set.
[[nodiscard]] Result<InspectReport> build_report(const std::vector<DeviceSpec>& specs, const PlanOptions& options);

}  // namespace nvgrace::devices
