#include "host_devices.hpp"

#include <linux/vfio.h>

#include <fmt/format.h>

#include "acpi_devices.hpp"
#include "json.hpp"
#include "log.hpp"
#include "nvgrace/common/size.hpp"
#include "nvgrace/pciemu/guest_plan.hpp"
#include "nvgrace/pciemu/identity.hpp"
#include "nvgrace/vfio/host/host_device.hpp"
#include "nvgrace/vfio/host/pci_host.hpp"

namespace nvgrace::cli {
namespace {

namespace host = vfio::host;

HostServeRefusal refuse(int code, std::string line) { return {code, std::move(line)}; }

// Where the kernel's nvgrace-gpu is bound, its BAR2/BAR4 must be what the
// model says (R16); the differences, one line, else empty.
std::string kernel_regions_differ(host::VfioDeviceIo& io, const pciemu::Layout& layout) {
  std::vector<vfio::RegionDesc> model;
  std::vector<vfio::DecodedRegionInfo> found;
  for (const auto* m : {&layout.usemem, &layout.resmem}) {
    if (!*m) continue;
    model.push_back({(*m)->bar_index, (*m)->bar_size,
                     VFIO_REGION_INFO_FLAG_READ | VFIO_REGION_INFO_FLAG_WRITE | VFIO_REGION_INFO_FLAG_MMAP,
                     {{0, (*m)->length}}, !(*m)->cacheable});
    auto bytes = io.region_info((*m)->bar_index);
    if (!bytes) return bytes.error().message;
    auto d = vfio::decode_region_info(*bytes);
    if (!d) return d.error().message;
    found.push_back(*d);
  }
  std::string all;
  for (const auto& d : host::compare_regions(model, found)) all += (all.empty() ? "" : "; ") + d;
  return all;
}

}  // namespace

expected<HostServe, HostServeRefusal> build_host_devices(const HostServeQuery& q) {
  auto log = module_logger("serve");
  AcpiQuery aq;
  aq.tables = {q.acpi};
  aq.sysfs = q.sysfs;
  aq.bdfs = q.bdfs;
  aq.assume_device_id = q.assume_device_id;
  aq.device_flag = "--host";
  auto acpi = collect_acpi_devices(aq);
  if (!acpi) return unexpected(refuse(2, acpi.error().message));
  HostServe out;
  const auto count = static_cast<unsigned>(acpi->specs.size());
  for (unsigned i = 0; i < count; ++i) {
    const auto& spec = acpi->specs[i];
    const std::string bdf = spec.bdf.value_or("?");
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
    if (!layout) log->warn("{}: {}", bdf, memory);

    std::unique_ptr<vfio::MemoryBackend> backend;
    if (layout && !kernel_variant) {
      auto b = vfio::make_devmem_backend(*layout, q.dev / "mem");
      if (!b) return unexpected(refuse(2, fmt::format("--host {}: device memory: {}", bdf, b.error().message)));
      backend = std::move(*b);
      memory = fmt::format("fake BAR4 usemem {}{} over {}", format_size(layout->usemem->length),
                           layout->resmem ? fmt::format(", BAR2 resmem {}", format_size(layout->resmem->length)) : "",
                           backend->describe());
    }

    auto opened = host::open_vfio({bdf, q.api, q.sysfs, q.dev});
    if (!opened) return unexpected(refuse(2, fmt::format("--host {}: {}", bdf, opened.error().message)));
    if (kernel_variant && layout) {
      if (auto diff = kernel_regions_differ(*opened->device, *layout); !diff.empty())
        return unexpected(refuse(1, fmt::format("--host {}: the nvgrace-gpu driver's regions differ from the model: {}",
                                                bdf, diff)));
      memory = fmt::format("the kernel nvgrace-gpu driver's BAR2/BAR4, which match the model (R16)");
      layout.reset();  // the kernel's own regions are served as they are
    }
    const auto api = opened->iommu->api();
    host::HostDeviceOptions opts;
    opts.name = bdf;
    opts.layout = layout;
    opts.backend = std::move(backend);
    opts.device_id = spec.device_id;
    // A stand-in has no R20 registers (its BAR0 is too small): no wait.
    opts.readiness = q.assume_device_id ? host::ReadinessCheck::skip : host::ReadinessCheck::automatic;
    opts.mmap_fake_bars = q.mmap_fake_bars;
    if (layout && !q.mmap_fake_bars) memory += "; fake BARs trapped (--no-fake-bar-mmap)";
    auto dev = host::HostDevice::create(std::move(*opened), std::move(opts));
    if (!dev) return unexpected(refuse(2, fmt::format("--host {}: {}", bdf, dev.error().message)));
    if (q.assume_device_id)
      log->warn("{}: served as {} {} for testing (--assume-device-id); readiness (R20) is skipped", bdf,
                hex_id(*q.assume_device_id), pciemu::find_identity(*q.assume_device_id)->model);
    const auto path = serve::socket_path(q.socket, i, count);
    out.lines.push_back(fmt::format("serving {} ({}:{}{}) on {} through VFIO {} ({}); {}; readiness {}", bdf,
                                    st->vendor ? fmt::format("{:04x}", *st->vendor) : "????",
                                    st->device ? fmt::format("{:04x}", *st->device) : "????",
                                    q.assume_device_id ? fmt::format(" as {}", hex_id(*q.assume_device_id)) : "",
                                    path, api == "iommufd" ? "cdev" : "group", api, memory, (*dev)->readiness_rule()));
    out.devices.push_back({path, std::move(*dev), true});
  }
  return out;
}

}  // namespace nvgrace::cli
