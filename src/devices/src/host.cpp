#include "nvgrace/devices/host.hpp"

#include <linux/vfio.h>

#include <fmt/format.h>

#include "nvgrace/common/size.hpp"
#include "nvgrace/devices/discovery.hpp"
#include "nvgrace/pciemu/bars.hpp"
#include "nvgrace/pciemu/identity.hpp"
#include "nvgrace/vfio/host/dax.hpp"
#include "nvgrace/vfio/host/devmem.hpp"
#include "nvgrace/vfio/host/memory_type.hpp"
#include "nvgrace/vfio/host/function.hpp"
#include "nvgrace/vfio/host/pci_host.hpp"
#include "nvgrace/vfio/variant/variant.hpp"

namespace nvgrace::devices {
namespace {

namespace host = vfio::host;

// 2: the command line asks for what cannot be had here; 1: the device is unusable.
HostRefusal refuse(int code, std::string line) { return {code == 2, std::move(line)}; }

// Where the kernel's nvgrace-gpu is bound, its BAR2/BAR4 must be what the
// model says (R16); the differences, one line, else empty.
std::string kernel_regions_differ(host::VfioDeviceIo& io, const pciemu::Layout& layout) {
  std::vector<vfio::RegionDesc> model;
  std::vector<vfio::DecodedRegionInfo> found;
  for (const auto* m : {&layout.usemem, &layout.resmem}) {
    if (!*m) continue;
    model.push_back({vfio::bar_region((*m)->bar_index), (*m)->bar_size,
                     VFIO_REGION_INFO_FLAG_READ | VFIO_REGION_INFO_FLAG_WRITE | VFIO_REGION_INFO_FLAG_MMAP,
                     {{0, (*m)->length}}, !(*m)->cacheable});
    auto bytes = io.region_info((*m)->bar_index.value());
    if (!bytes) return bytes.error().message;
    auto d = vfio::decode_region_info(*bytes);
    if (!d) return d.error().message;
    found.push_back(*d);
  }
  std::string all;
  for (const auto& d : host::compare_regions(model, found)) all += (all.empty() ? "" : "; ") + d;
  return all;
}

// The first --host-memory instance whose extent holds the layout's usemem;
// the other instances' answers, when none does.
Result<std::unique_ptr<vfio::MemoryBackend>> dax_backend(const pciemu::Layout& layout, const HostQuery& q) {
  std::string tried;
  for (const auto& path : q.dax) {
    auto b = host::open_dax_backend(layout, path, q.sysfs);
    if (b || b.error().err != ERANGE) return b;
    tried += (tried.empty() ? "" : "; ") + b.error().message;
  }
  return fail_errno(ERANGE, "no instance holds the GPU memory: {}", tried);
}

}  // namespace

expected<std::vector<HostDevice>, HostRefusal> build_host_devices(const HostQuery& q) {
  AcpiQuery aq;
  auto tables = acpi_table_paths({q.acpi});
  if (!tables) return unexpected(refuse(2, tables.error().message));
  aq.tables = std::move(*tables);
  aq.sysfs = q.sysfs;
  aq.bdfs = q.bdfs;
  aq.assume_device_id = q.assume_device_id;
  aq.forced_mig_bug = q.forced_mig_bug;
  aq.device_flag = "--host";
  auto acpi = collect_acpi_devices(aq);
  if (!acpi) return unexpected(refuse(2, acpi.error().message));
  std::vector<HostDevice> out;
  for (const auto& spec : acpi->specs) {
    if (!spec.bdf) return unexpected(refuse(2, fmt::format("{}: no PCI function", spec.name)));
    const Bdf bdf = *spec.bdf;
    HostDevice served;
    served.bdf = bdf;
    auto st = host::probe_pci_host(q.sysfs, q.dev, bdf);
    if (!st) return unexpected(refuse(2, fmt::format("--host {}: {}", bdf, st.error().message)));
    // R26: the device must be VFIO's; the kernel's nvgrace-gpu is a VFIO
    // driver too, with the fake BARs already in the kernel.
    const bool kernel_variant = st->driver == host::kNvgraceGpuDriver;
    if (st->driver != host::kVfioPciDriver && !kernel_variant) return unexpected(refuse(2, st->bind_advice()));

    // The memory behind the fake BARs (R3-R10); none is passthrough (R5).
    std::optional<pciemu::Layout> layout;
    std::string memory;
    if (spec.passthrough_reason) {
      memory = fmt::format("plain passthrough, no fake BARs: {}", *spec.passthrough_reason);
    } else {
      auto l = pciemu::compute_layout({spec.mem_base, spec.mem_size, spec.mig_hw_bug, spec.phys_addr_bits});
      if (!l) return unexpected(refuse(1, fmt::format("--host {}: unusable: {}", bdf, l.error().message)));
      if (l->passthrough)
        memory = fmt::format("plain passthrough, no fake BARs: {}", l->reason);
      else
        layout = *l;
    }
    if (!layout) served.warnings.push_back(memory);

    std::unique_ptr<vfio::MemoryBackend> backend;
    if (layout && !kernel_variant && !q.dax.empty()) {
      // R40: device-DAX, the instance whose extent holds this GPU's usemem -
      // where the host's KVM keeps it Normal memory at stage 2.
      // (What no kernel changes - resmem, the instance's extent - first.)
      auto b = dax_backend(*layout, q);
      if (!b) return unexpected(refuse(2, fmt::format("--host {}: --host-memory: {}", bdf, b.error().message)));
      const auto type = host::dax_memory_type(q.kernel_release.empty() ? host::running_kernel_release()
                                                                        : q.kernel_release);
      if (!type.usable && !q.allow_device_memory)
        return unexpected(refuse(2, fmt::format("--host {}: --host-memory: refusing device-DAX here: {}; instead, {}",
                                                bdf, type.why, type.instead)));
      backend = std::move(*b);
      if (!type.usable)
        served.warnings.push_back(fmt::format("--allow-device-memory: {} (R40)", type.why));
      memory = fmt::format("fake BAR4 usemem {} over {}", format_size(layout->usemem->length), backend->describe());
    } else if (layout && !kernel_variant) {
      auto b = host::make_devmem_backend(*layout, q.dev / "mem", q.allow_device_memory);
      if (!b) return unexpected(refuse(2, fmt::format("--host {}: device memory: {}", bdf, b.error().message)));
      backend = std::move(*b);
      if (const auto& type = host::devmem_memory_type(); !type.usable)
        served.warnings.push_back(fmt::format("--allow-device-memory: the fake BARs are {} memory here, not Normal "
                                              "(R40): the guest's driver will fault on unaligned accesses and DC ZVA",
                                              type.usemem));
      memory = fmt::format("fake BAR4 usemem {}{} over {}", format_size(layout->usemem->length),
                           layout->resmem ? fmt::format(", BAR2 resmem {}", format_size(layout->resmem->length)) : "",
                           backend->describe());
    }

    auto adopted = q.adopt ? q.adopt(bdf) : std::nullopt;
    auto opened = adopted ? std::move(*adopted) : host::open_vfio({bdf, q.api, q.sysfs, q.dev, q.allow_noiommu});
    if (!opened)
      return unexpected(refuse(2, fmt::format("--host {}: {}{}", bdf, adopted ? "taking it over: " : "",
                                              opened.error().message)));
    if (kernel_variant && layout) {
      if (auto diff = kernel_regions_differ(*opened->device, *layout); !diff.empty())
        return unexpected(refuse(1, fmt::format("--host {}: the nvgrace-gpu driver's regions differ from the model: {}",
                                                bdf, diff)));
      memory = fmt::format("the kernel nvgrace-gpu driver's BAR2/BAR4, which match the model (R16)");
      layout.reset();  // the kernel's own regions are served as they are
    }
    const std::string api(opened->iommu->api());
    auto fn = host::HostFunction::create(std::move(*opened), bdf.to_string());
    if (!fn) return unexpected(refuse(2, fmt::format("--host {}: {}", bdf, fn.error().message)));
    std::string readiness = "skipped";
    if (layout) {
      vfio::VariantOptions opts;
      opts.name = bdf.to_string();
      opts.layout = *layout;
      opts.memory = std::move(backend);
      opts.device_id = spec.device_id;
      // A stand-in has no R20 registers (its BAR0 is too small): no wait.
      opts.readiness = q.assume_device_id ? vfio::ReadinessCheck::skip : vfio::ReadinessCheck::automatic;
      // R30: the server resets a real device between clients; the next one
      // gets it ready, or the log says why not.
      opts.reset_wait = vfio::ResetWait::eager;
      opts.decode_for_readiness = true;
      opts.mmap_fake_bars = q.mmap_fake_bars;
      if (!q.mmap_fake_bars) memory += "; fake BARs trapped (--no-fake-bar-mmap)";
      auto v = vfio::Variant::create(std::move(*fn), std::move(opts));
      if (!v) return unexpected(refuse(2, fmt::format("--host {}: {}", bdf, v.error().message)));
      readiness = (*v)->readiness_rule();
      served.device = std::move(*v);
    } else {
      served.device = std::move(*fn);
    }
    if (q.assume_device_id)
      served.warnings.push_back(fmt::format("served as {:#06x} {} for testing (--assume-device-id); readiness (R20) is "
                                            "skipped",
                                            *q.assume_device_id, pciemu::find_identity(*q.assume_device_id)->model));
    served.ids = fmt::format("{}:{}{}", st->vendor ? fmt::format("{:04x}", *st->vendor) : "????",
                             st->device ? fmt::format("{:04x}", *st->device) : "????",
                             q.assume_device_id ? fmt::format(" as {:#06x}", *q.assume_device_id) : "");
    served.how = fmt::format("through VFIO {} ({}); {}; readiness {}", api == "iommufd" ? "cdev" : "group", api, memory,
                             readiness);
    out.push_back(std::move(served));
  }
  return out;
}

}  // namespace nvgrace::devices
