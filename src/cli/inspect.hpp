// `nvgrace inspect`: what the guest will see for each GPU, and whether it fits.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "nvgrace/common/result.hpp"
#include "nvgrace/pciemu/guest_plan.hpp"
#include "nvgrace/pciemu/guest_targets.hpp"
#include "nvgrace/pciemu/identity.hpp"
#include "nvgrace/pciemu/layout.hpp"

namespace nvgrace::cli {

// One GPU to inspect, however it was described (profile, flags, ACPI).
struct DeviceSpec {
  std::string name;                    // "gpu0", ...
  std::optional<std::string> profile;  // built-in profile it came from
  std::uint16_t device_id = 0;
  std::uint64_t mem_base = 0;
  std::uint64_t mem_size = 0;
  bool mig_hw_bug = false;
  std::string mig_hw_bug_source;       // "flag", "device-id", "config"
  unsigned phys_addr_bits = 64;

  // From ACPI and sysfs (R3-R6), when the GPU was found there.
  std::optional<std::string> acpi_path;
  std::optional<std::string> bdf;
  std::optional<std::uint64_t> segment;
  std::vector<std::uint64_t> adr_chain;
  std::optional<std::uint64_t> pxm_start, pxm_count;
  std::optional<std::uint64_t> egm_base_pa, egm_size, egm_pxm, egm_retired_pages_data_base;
  // Set when the firmware description rules out fake BARs (R5): the reason.
  std::optional<std::string> passthrough_reason;
  // On a live host (or a fake sysfs/dev tree): whether `serve --host` can
  // open this GPU, and what is missing (R26).
  struct ServeCheck {
    std::string driver;  // empty: none bound
    std::optional<unsigned> iommu_group;
    bool ready = false;
    std::string vfio_api;  // "cdev" or "group" when ready
    std::vector<std::string> missing;
  };
  std::optional<ServeCheck> serve;
  // Set when the tables describe a GPU that this host does not show as a PCI
  // function (absent, disabled, hidden by firmware): the reason. device_id
  // is then 0 unless --device-id gave one.
  std::optional<std::string> absent_reason;
};

// fake-bars: usemem/resmem become BAR4/BAR2; passthrough: no fake BARs (R5);
// unusable: the driver would refuse the device, or no guest can hold its BARs;
// not-present: described by the tables, not present on the host.
enum class DeviceStatus { fake_bars, passthrough, unusable, absent };

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
  pciemu::VmmTarget target = pciemu::VmmTarget::qemu_virt;
  pciemu::Machine libvirt_machine = pciemu::Machine::virt;
  pciemu::LibvirtVersion libvirt_version = pciemu::kLibvirtDefault;
  // nvgrace serve's socket: GPU i of the plan is served there (PATH.i when
  // the plan has several GPUs, as serve names them).
  std::optional<std::string> socket;
};

struct InspectReport {
  std::vector<DeviceReport> devices;
  // The guest plan covers the devices a guest can be given: every one but the
  // unusable. plan.windows[i] and target.gpus[i] belong to
  // devices[plan_members[i]].
  pciemu::GuestPlan plan;
  pciemu::TargetPlan target;
  std::vector<std::size_t> plan_members;
  unsigned guest_numa_nodes = 1;
  // Set when the usable GPUs fit no guest together (their 64-bit MMIO need has
  // no power-of-two window, or the target's limits refuse them): why. The plan
  // is then empty.
  std::optional<std::string> plan_error;
  // Where the devices came from, when from ACPI tables: read diagnostics.
  std::optional<nlohmann::ordered_json> acpi;

  // Whether the command must exit 1: a GPU is unusable or the plan failed.
  [[nodiscard]] bool any_unusable() const;
};

// Fails only where the input cannot describe a Grace GPU at all (unknown device
// id). A device the driver would refuse, or whose BARs no guest can hold, is
// reported as "unusable" inside the report; GPUs that fit no guest together
// leave the plan empty with `plan_error` set.
[[nodiscard]] Result<InspectReport> build_report(const std::vector<DeviceSpec>& specs, const PlanOptions& options);

// With `regions`, each device also lists its VFIO regions as
// VFIO_DEVICE_GET_REGION_INFO reports them (R16).
[[nodiscard]] nlohmann::ordered_json to_json(const InspectReport& r, bool regions = false);
// Human-readable report for an 80-column terminal.
[[nodiscard]] std::string to_table(const InspectReport& r, bool regions = false);

}  // namespace nvgrace::cli
