// cloud-hypervisor: GPUs on PCI segments 1.., NUMA nodes tied by
// --numa device_id; it sizes the 64-bit window itself (R25).
#include <fmt/format.h>

#include "nvgrace/plan/targets.hpp"

namespace nvgrace::plan {
namespace {

Result<Target::Window> window(const GuestPlan&, const TargetRequest&) { return Target::Window{0, WindowKind::vmm_chosen}; }

Result<TargetPlan> write(const GuestPlan&, const TargetRequest& req, TargetPlan out) {
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
      a.insert(a.end(), {"--device", fmt::format("path=/sys/bus/pci/devices/{},id={},pci_segment={}", src.host_bdf->to_string(),
                                                 g.id, g.segment)});
  }
  for (const auto& g : out.gpus)
    for (auto node : g.gi_nodes) a.insert(a.end(), {"--numa", fmt::format("guest_numa_id={},device_id={}", node, g.id)});
  return out;
}

}  // namespace

extern const Target kTarget_cloud_hypervisor{"cloud-hypervisor", 40, "cloud-hypervisor arguments", false, true, true,
                                             "", write, window};

}  // namespace nvgrace::plan
