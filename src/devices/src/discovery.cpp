#include "nvgrace/devices/discovery.hpp"

#include <algorithm>
#include <map>
#include <set>

#include <fmt/format.h>
#include <linux/pci_regs.h>

#include "nvgrace/acpi/gpu.hpp"
#include "nvgrace/acpi/sources.hpp"
#include "nvgrace/acpi/sysfs.hpp"
#include "nvgrace/pciemu/identity.hpp"
#include "nvgrace/pciemu/layout.hpp"
#include "nvgrace/pciemu/mig.hpp"
#include "nvgrace/vfio/host/dax.hpp"
#include "nvgrace/vfio/host/memory_type.hpp"
#include "nvgrace/vfio/host/pci_host.hpp"

namespace nvgrace::devices {
namespace {

// One GPU: its ACPI node (when the tables have one) and its PCI function
// (when sysfs has one).
struct Candidate {
  std::optional<acpi::GpuNode> node;
  std::optional<acpi::Path> path;  // the node's path, even where the tables lack it
  std::optional<acpi::PciFunction> function;
};

std::string join(const std::vector<std::string>& v) {
  std::string s;
  for (const auto& x : v) s += (s.empty() ? "" : "; ") + x;
  return s;
}

// The device-DAX instance that holds this GPU's usemem (R40), where one
// does. An instance sysfs cannot describe is a warning: the report goes on.
std::optional<vfio::host::DaxRoute> dax_route(const DeviceSpec& s, const std::filesystem::path& sysfs,
                                              const std::string& kernel_release, AcpiDiagnostics& diag) {
  auto layout = pciemu::compute_layout({s.mem_base, s.mem_size, s.mig_hw_bug, s.phys_addr_bits});
  if (!layout || layout->passthrough) return std::nullopt;
  auto instances = vfio::host::dax_instances(sysfs);
  if (!instances) {
    diag.warnings.push_back(fmt::format("device-DAX instances: {}", instances.error().message));
    return std::nullopt;
  }
  return vfio::host::find_dax_route(
      *layout, *instances, kernel_release.empty() ? vfio::host::running_kernel_release() : kernel_release);
}

}  // namespace

Result<std::vector<std::filesystem::path>> acpi_table_paths(const std::vector<std::string>& args) {
  std::vector<std::filesystem::path> out;
  for (const auto& a : args) {
    if (a == "none") {
      if (args.size() > 1) return fail("--acpi none stands alone: it says the host has no ACPI tables");
      return out;
    }
    std::error_code ec;
    if (a == kLiveAcpiTables && !std::filesystem::exists(a, ec)) return out;  // a device-tree host
    out.emplace_back(a);
  }
  return out;
}

Result<AcpiDevices> collect_acpi_devices(const AcpiQuery& q) {
  acpi::LoadedTables none;
  auto loaded = q.tables.empty() ? Result<acpi::LoadedTables>(std::move(none)) : acpi::load_tables(q.tables);
  if (!loaded) return fail(loaded.error().context("--acpi"));
  const auto ns = acpi::read_namespace(loaded->tables);

  AcpiDevices out;
  auto& diag = out.diagnostics;
  for (const auto& t : loaded->tables)
    diag.tables.push_back({t.source, t.header.signature, t.header.length, t.checksum_ok});
  for (const auto& e : ns.errors) diag.errors.push_back(e.to_string());
  for (const auto& w : loaded->warnings) diag.warnings.push_back(w);
  for (const auto& w : ns.warnings) diag.warnings.push_back(w.to_string());

  std::vector<Candidate> candidates;
  if (!q.bdfs.empty()) {
    const auto& flag = q.device_flag;
    if (!q.sysfs) return fail("{} needs --sysfs (or --host) to find the device's ACPI node", flag);
    std::set<Bdf> seen;
    for (const auto& text : q.bdfs) {
      auto bdf = Bdf::parse(text);
      if (!bdf) return fail(bdf.error().context(flag));
      if (!seen.insert(*bdf).second) return fail("{} {} is given twice", flag, *bdf);
      auto f = acpi::read_pci_function(*q.sysfs, *bdf);
      if (!f) return fail(f.error().context(flag));
      if (q.assume_device_id) {
        f->device = q.assume_device_id;
      } else if (!f->device || !pciemu::find_identity(*f->device) || f->vendor != pciemu::kNvidiaVendorId) {
        return fail("{} {}: {}:{} is not a Grace GPU nvgrace knows (R1){}", flag, *bdf,
                    f->vendor ? fmt::format("{:04x}", *f->vendor) : std::string("????"),
                    f->device ? fmt::format("{:04x}", *f->device) : std::string("????"),
                    flag == "--host" ? "; a stand-in device is served only with --assume-device-id" : "");
      }
      Candidate c;
      if (f->acpi_path) c.path = acpi::parse_path(*f->acpi_path);
      c.function = std::move(*f);
      candidates.push_back(std::move(c));
    }
  } else {
    // Every GPU node of the tables, plus every Grace PCI function in sysfs.
    for (auto& g : acpi::find_gpus(ns)) candidates.push_back({g, g.path, std::nullopt});
    if (q.sysfs) {
      auto functions = acpi::list_pci_functions(*q.sysfs, pciemu::kNvidiaVendorId);
      if (!functions) return fail(functions.error().context("--sysfs"));
      for (auto& f : *functions) {
        if (!f.device || !pciemu::find_identity(*f.device)) continue;
        auto path = f.acpi_path ? acpi::parse_path(*f.acpi_path) : std::nullopt;
        auto it = std::find_if(candidates.begin(), candidates.end(),
                               [&](const Candidate& c) { return path && c.path == path && !c.function; });
        if (it != candidates.end()) {
          it->function = std::move(f);
        } else {
          // No ACPI node: its description may be on a device-tree node (R38).
          candidates.push_back({std::nullopt, path, std::move(f)});
        }
      }
    }
  }

  for (auto& c : candidates) {
    if (!c.node && c.path) c.node = acpi::describe_node(ns, *c.path);
    DeviceSpec s;
    s.name = fmt::format("gpu{}", out.specs.size());
    s.phys_addr_bits = q.phys_addr_bits;
    if (c.function) s.bdf = c.function->bdf;
    std::vector<std::string> problems;
    const acpi::PciFunction* dt = c.function && !c.path && c.function->of_node && c.function->of_has_gpu_properties
                                      ? &*c.function
                                      : nullptr;
    if (c.path) {
      s.acpi_path = acpi::to_string(*c.path);
      if (!ns.find(*c.path)) problems.push_back(fmt::format("ACPI node {} is not in the tables read", *s.acpi_path));
    } else if (dt) {
      // R38: a guest booted with a device tree finds the same properties
      // on the function's of_node.
      s.dt_node = *dt->of_node;
      const auto& m = dt->of_properties;
      s.mem_base = m.mem_base_pa.value_or(0);
      s.mem_size = m.mem_size.value_or(0);
      s.pxm_start = m.mem_pxm_start;
      s.pxm_count = m.mem_pxm_count;
      s.egm_base_pa = m.egm_base_pa;
      s.egm_size = m.egm_size;
      s.egm_pxm = m.egm_pxm;
      s.egm_retired_pages_data_base = m.egm_retired_pages_data_base;
      problems.insert(problems.end(), dt->of_problems.begin(), dt->of_problems.end());
    } else {
      problems.push_back(
          "sysfs gives no ACPI node (firmware_node/path) and no device-tree node with nvidia,gpu-mem-* properties "
          "(of_node) for this device (R6)");
    }
    if (c.node && ns.find(*c.path)) {
      const auto& n = *c.node;
      s.segment = n.segment;
      s.adr_chain = n.adr_chain;
      s.mem_base = n.mem.mem_base_pa.value_or(0);
      s.mem_size = n.mem.mem_size.value_or(0);
      s.pxm_start = n.mem.mem_pxm_start;
      s.pxm_count = n.mem.mem_pxm_count;
      s.egm_base_pa = n.mem.egm_base_pa;
      s.egm_size = n.mem.egm_size;
      s.egm_pxm = n.mem.egm_pxm;
      s.egm_retired_pages_data_base = n.mem.egm_retired_pages_data_base;
      problems.insert(problems.end(), n.problems.begin(), n.problems.end());
    }
    if (!problems.empty()) s.passthrough_reason = join(problems) + ": passthrough without fake BARs (R5)";

    // The tables describe a GPU that sysfs does not show: absent, disabled or
    // hidden on this host. Report it and go on with the others.
    if (q.sysfs && !c.function) {
      s.device_id = q.device_id.value_or(0);
      s.absent_reason = fmt::format("{} has no PCI function in {} (absent, disabled or hidden by firmware)",
                                    s.acpi_path.value_or(s.name), (*q.sysfs / "bus/pci/devices").string());
      out.specs.push_back(std::move(s));
      continue;
    }
    // Device id: sysfs, else --device-id.
    if (c.function && c.function->device) {
      s.device_id = *c.function->device;
    } else if (q.device_id) {
      s.device_id = *q.device_id;
    } else {
      return fail("--device-id is needed: {} has no sysfs entry to read its device id from (give --sysfs, or "
                  "--device-id for offline tables)",
                  s.acpi_path.value_or(s.name));
    }
    const auto identity = pciemu::find_identity(s.device_id);
    if (!identity) return fail("--device-id: {:#06x} is not a Grace GPU nvgrace knows (R1)", s.device_id);

    // MIG bug (R2): flag, else the config space's DVSEC, else the device id.
    if (q.forced_mig_bug) {
      s.mig_hw_bug = *q.forced_mig_bug;
      s.mig_hw_bug_source = "flag";
    } else if (c.function && c.function->config.size() > PCI_CFG_SPACE_SIZE) {
      auto d = pciemu::detect_mig_hw_bug(c.function->config);
      s.mig_hw_bug = d.mig_hw_bug;
      s.mig_hw_bug_source = "config";
      diag.notes.push_back(fmt::format("{}: {}", s.bdf ? s.bdf->to_string() : s.name, d.reason));
    } else {
      s.mig_hw_bug = pciemu::mig_bug_expected(identity->generation);
      s.mig_hw_bug_source = "device-id";
      if (c.function)
        diag.notes.push_back(fmt::format("{}: extended config space not readable ({}); MIG bug from the device id",
                                         c.function->bdf,
                                         c.function->config_error.empty()
                                             ? fmt::format("{} bytes", c.function->config.size())
                                             : c.function->config_error));
    }
    // Whether `serve --host` can open it here (R26): only a live host (or a
    // fake /dev beside a fake sysfs) can say.
    if (q.dev && c.function) {
      auto st = vfio::host::probe_pci_host(*q.sysfs, *q.dev, c.function->bdf);
      if (st) {
        const bool kernel_variant = st->driver == vfio::host::kNvgraceGpuDriver;
        const bool host_memory = !s.passthrough_reason && !kernel_variant;
        // R40: the device-DAX instance --host-memory would take, where one
        // holds usemem; serving needs it where /dev/mem gives Device memory.
        std::optional<vfio::host::DaxRoute> dax;
        if (host_memory) dax = dax_route(s, *q.sysfs, q.kernel_release, diag);
        const bool dax_needed = dax && dax->usable && !vfio::host::devmem_memory_type().usable;
        const auto r = vfio::host::serve_readiness(
            *st, *q.dev, host_memory ? std::optional<std::string>(dax_needed ? dax->name : "mem") : std::nullopt);
        s.serve = DeviceSpec::ServeCheck{st->driver, st->iommu_group, r.ready, r.api, r.missing, {}, {}, {}, {}};
        if (dax)
          s.serve->host_memory = DeviceSpec::ServeCheck::HostMemory{(*q.dev / dax->name).string(), dax->usable,
                                                                    dax_needed, dax->why};
        if (!s.passthrough_reason) {
          if (kernel_variant) {
            // The kernel's own regions: usemem cacheable, resmem
            // pgprot_writecombine() (R19).
            s.serve->memory_path = "the kernel's nvgrace-gpu regions (the VFIO device fd)";
            s.serve->usemem_type = "write-back";
            s.serve->resmem_type = "write-combined";
          } else {
            const auto& type = vfio::host::devmem_memory_type();
            s.serve->memory_path = (*q.dev / "mem").string();
            s.serve->usemem_type = std::string(type.usemem);
            s.serve->resmem_type = std::string(type.resmem);
          }
        }
      }
    }
    out.specs.push_back(std::move(s));
  }
  return out;
}

}  // namespace nvgrace::devices
