// `nvgrace probe`: the oracle probe (R39). Drives one device through the
// kernel's VFIO ioctls (--vfio: whatever driver holds it, vfio-pci or the
// kernel's nvgrace-gpu) or a vfio-user socket (--socket: nvgrace serve, or
// any server) with one operation list, and writes the canonical transcript;
// two transcripts compare with `diff` on their lines that do not start
// with '#'. See docs/oracle.md. --memory-type instead tries, through the
// mapping a VMM would make, the accesses Device memory refuses (R40): of a
// device's fake BARs, or (--map) of any file - /dev/mem, device-DAX.
#include <fcntl.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <iostream>

#include <fmt/format.h>

#include "command.hpp"
#include "nvgrace/common/size.hpp"
#include "nvgrace/probe/memory_type.hpp"
#include "nvgrace/probe/targets.hpp"
#include "nvgrace/sys/fd.hpp"
#include "nvgrace/vfio/host/dax.hpp"

namespace nvgrace::cli {
namespace {

class ProbeCommand final : public Command {
 public:
  CLI::App* attach(CLI::App& app) override {
    cmd_ = app.add_subcommand("probe",
                              "Drive a device with the oracle's operation list and write its transcript: through the "
                              "kernel's VFIO (--vfio BDF, bound to vfio-pci or nvgrace-gpu) or vfio-user (--socket). "
                              "It writes to the device (config, BAR registers, memory) and resets it: test rigs only. "
                              "See docs/oracle.md");
    auto* vfio = cmd_->add_option("--vfio", bdf_, "The function, by BDF, opened through the kernel's VFIO")
                     ->type_name("BDF");
    auto* sock = cmd_->add_option("--socket", socket_, "A vfio-user server's socket")->type_name("PATH");
    vfio->excludes(sock);
    cmd_->add_option("--vfio-api", api_, "cdev (iommufd), group (type1) or auto")
        ->check(CLI::IsMember({"auto", "cdev", "group"}))->type_name("API")->capture_default_str();
    cmd_->add_flag("--vfio-noiommu", noiommu_,
                   "Accept a function in a no-IOMMU group (vfio.enable_unsafe_noiommu_mode=1); the probe does no DMA");
    auto* mt = cmd_->add_flag("--memory-type", memory_type_,
                              "Instead of the transcript: map the start of each fake BAR's memory as a VMM does "
                              "and try the accesses Device memory refuses (unaligned loads and stores; arm64: DC ZVA, "
                              "LDXR/STXR). Exit 0 when every region behaves as Normal memory, 1 when one does not "
                              "(R40). It puts the bytes it touched back");
    auto* map = cmd_->add_option("--map", map_,
                                 "With --memory-type, instead of a device: map PATH at OFFSET (a physical address "
                                 "in /dev/mem, an offset in a device-DAX /dev/daxX.Y) and run the same accesses - "
                                 "what a VMM would get from that route to the memory (R40)")
                    ->type_name("PATH[@OFFSET]");
    map->needs(mt)->excludes(vfio)->excludes(sock);
    auto* ao = cmd_->add_flag("--aligned-only", aligned_only_,
                   "Config space at aligned offsets only for widths 2 and 4 (quicker; not the oracle's full list)");
    mt->excludes(ao);
    cmd_->add_option("-o,--output", output_, "Write the transcript here instead of stdout")->type_name("FILE");
    cmd_->add_option("--sysfs", sysfs_, "sysfs root for --vfio and --map")->type_name("ROOT")->capture_default_str();
    cmd_->add_option("--dev", dev_, "/dev root for --vfio")->type_name("ROOT")->capture_default_str();
    return cmd_;
  }

  int run() override {
    if (!map_.empty()) return map_memory_type();
    if (bdf_.empty() == socket_.empty()) return usage_error("give --vfio BDF or --socket PATH");
    if (!socket_.empty() && (noiommu_ || !cmd_->get_option("--vfio-api")->empty()))
      return usage_error("--vfio-api and --vfio-noiommu go with --vfio");
    Result<std::unique_ptr<probe::Target>> target = fail("no target");
    if (!bdf_.empty()) {
      auto bdf = Bdf::parse(bdf_);
      if (!bdf) return usage_error("--vfio: {}", bdf.error().message);
      probe::VfioTargetOptions o;
      o.bdf = *bdf;
      o.api = api_ == "cdev" ? vfio::host::VfioApi::cdev
              : api_ == "group" ? vfio::host::VfioApi::group : vfio::host::VfioApi::automatic;
      o.allow_noiommu = noiommu_;
      o.sysfs = sysfs_;
      o.dev = dev_;
      target = probe::open_vfio_target(o);
    } else {
      target = probe::open_socket_target(socket_);
    }
    if (!target) return failure("probe", "{}", target.error().message);
    if (memory_type_) return memory_types(**target);
    probe::Options po;
    po.every_offset = !aligned_only_;
    auto t = probe::run(**target, po);
    if (!t) return failure("probe", "{}", t.error().message);
    return write_out(*t) ? kExitOk : failure("probe", "cannot write {}", output_.empty() ? "stdout" : output_);
  }

  // R40: what the client's mapping of each fake BAR's memory behaves as.
  int memory_types(probe::Target& target) {
    auto regions = probe::probe_memory_types(target);
    if (!regions) return failure("probe", "{}", regions.error().message);
    if (!write_out(probe::format_memory_types(*regions)))
      return failure("probe", "cannot write {}", output_.empty() ? "stdout" : output_);
    if (regions->empty()) return failure("probe", "--memory-type: the device has no region with a sparse area to map");
    for (const auto& r : *regions)
      if (r.verdict() != probe::RegionMemoryType::Verdict::normal)
        return failure("probe", "--memory-type: region {} does not behave as Normal memory (R40)", r.index);
    return kExitOk;
  }

  // --map PATH[@OFFSET]: one mapping of a file, the same accesses.
  int map_memory_type() {
    std::string path = map_;
    std::uint64_t offset = 0;
    if (const auto at = map_.rfind('@'); at != std::string::npos) {
      path = map_.substr(0, at);
      auto o = parse_size(map_.substr(at + 1));
      if (!o) return usage_error("--map {}: the offset: {}", map_, o.error().message);
      offset = *o;
    }
    sys::UniqueFd fd(::open(path.c_str(), O_RDWR | O_CLOEXEC));
    if (!fd) return failure("probe", "--map: cannot open {}: {}", path, std::strerror(errno));
    // A device-DAX instance maps only in its own granule (its align); any
    // other file (not an instance: dax_extent says why) in a page.
    std::size_t length = 0;
    if (const auto e = vfio::host::dax_extent(fd.get(), sysfs_)) length = static_cast<std::size_t>(e->align);
    const auto r = probe::probe_mapping_memory_type(fd.get(), offset, length, fmt::format("{}@{:#x}", path, offset));
    if (!write_out(probe::format_memory_types({r}))) return failure("probe", "cannot write {}", output_);
    if (r.verdict() != probe::RegionMemoryType::Verdict::normal)
      return failure("probe", "--memory-type: {} does not behave as Normal memory (R40){}", r.name,
                     r.skipped.empty() ? "" : ": " + r.skipped);
    return kExitOk;
  }

  bool write_out(const std::string& text) const {
    if (output_.empty()) {
      std::cout << text << std::flush;
      return static_cast<bool>(std::cout);
    }
    std::ofstream f(output_, std::ios::trunc);
    return (f << text) && f.flush();
  }

 private:
  CLI::App* cmd_ = nullptr;
  std::string bdf_, socket_, map_;
  std::string api_ = "auto";
  bool noiommu_ = false;
  bool aligned_only_ = false;
  bool memory_type_ = false;
  std::string output_;
  std::string sysfs_ = "/sys", dev_ = "/dev";
};

}  // namespace

std::unique_ptr<Command> make_probe_command() { return std::make_unique<ProbeCommand>(); }

}  // namespace nvgrace::cli
