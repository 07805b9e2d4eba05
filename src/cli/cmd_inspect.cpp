// `nvgrace inspect`: BAR sizing and the guest plan for emulated or described
// Grace GPUs (nvgrace-model.md R1, R2, R5, R7-R10, R25).
#include <iostream>
#include <optional>
#include <string>
#include <vector>

#include "command.hpp"
#include "inspect.hpp"
#include "json.hpp"
#include "nvgrace/common/size.hpp"
#include "nvgrace/devices/discovery.hpp"
#include "nvgrace/log/log.hpp"
#include "nvgrace/pciemu/profiles.hpp"
#include "nvgrace/plan/targets.hpp"
#include "nvgrace/vm/cpu_host.hpp"

namespace nvgrace::cli {
namespace {

class InspectCommand final : public Command {
 public:
  CLI::App* attach(CLI::App& app) override {
    cmd_ = app.add_subcommand("inspect", "Show the BARs a guest will see for each GPU, and the guest plan");
    add_profile_option(cmd_, profiles_, "Built-in emulated device (repeat for several)");
    cmd_->add_option("--count", count_, "Number of GPUs of the one --profile (default: 1)")
        ->check(integer_in(1, 64))->type_name("N");
    device_id_ = cmd_->add_option("--device-id", device_id_text_,
                                  "PCI device id, decimal or 0x-hex, e.g. 0x2342 (R1)")->type_name("ID");
    mem_base_ = cmd_->add_option("--mem-base", mem_base_text_, "Host physical base of device memory, e.g. 0x400000000000")
                    ->type_name("ADDR");
    mem_size_ = cmd_->add_option("--mem-size", mem_size_text_, "Device memory size: 96GiB, 0x17E4F00000, ...")
                    ->type_name("SIZE");
    auto* bug = cmd_->add_flag("--mig-bug", mig_bug_, "The GPU has the MIG hardware bug (default: from the device id)");
    auto* nobug = cmd_->add_flag("--no-mig-bug", no_mig_bug_, "The GPU does not have the MIG hardware bug");
    bug->excludes(nobug);
    cmd_->add_option("--phys-bits", phys_bits_, "Host physical address width")
        ->check(integer_in(1, 64))->type_name("N")->capture_default_str();
    cmd_->add_option("--guest-numa-nodes", guest_numa_nodes_,
                     "Guest memory NUMA nodes; GI nodes follow them (QEMU takes node ids 0..127, one GPU needs 8)")
        ->check(integer_in(1, plan::kMaxGuestNumaNodes))->type_name("N")->capture_default_str();
    cmd_->add_option("--target", target_name_,
                     "Write the guest plan for qemu-virt, qemu-q35, libvirt (a domain XML fragment) or "
                     "cloud-hypervisor")
        ->check(CLI::IsMember(plan::target_names()))->type_name("VMM")->capture_default_str();
    libvirt_version_ = cmd_->add_option("--libvirt-version", libvirt_version_text_,
                                        "libvirt version the fragment is for; 11.8+ gets <acpi nodeset> "
                                        "(default: 11.3, Debian trixie's)")
                           ->type_name("X.Y");
    libvirt_machine_ = cmd_->add_option("--libvirt-machine", libvirt_machine_name_,
                                        "Machine of the libvirt domain: virt or q35 (default: virt)")
                           ->check(CLI::IsMember({"virt", "q35"}))->type_name("NAME");
    socket_ = cmd_->add_option("--socket", socket_path_,
                               "nvgrace serve's socket: the plan attaches GPU i over vfio-user there (PATH.i "
                               "for several GPUs, as serve names them)")
                  ->type_name("PATH");
    cmd_->add_option("--acpi", acpi_, "ACPI tables: a directory like /sys/firmware/acpi/tables, acpidump text, "
                     "or .aml/.dat files (repeatable; each file at most 32 MiB); none: a host booted with a device tree, whose "
                     "GPUs are described on their DT nodes (sysfs of_node)")->type_name("PATH");
    sysfs_ = cmd_->add_option("--sysfs", sysfs_root_, "sysfs root for BDF -> ACPI node, device id and config (R6)")
                 ->type_name("ROOT");
    cmd_->add_option("--device", bdfs_, "Only this PCI device, e.g. 0009:01:00.0 (repeatable; needs --sysfs)")
        ->type_name("BDF");
    assume_ = cmd_->add_option("--assume-device-id", assume_text_,
                               "Testing only: treat the --device functions as this Grace GPU whatever their id, as "
                               "`serve --assume-device-id` does")
                  ->type_name("ID");
    auto* all = cmd_->add_flag("--all", all_, "Every GPU in the tables and sysfs (the default with --acpi; not with --device)");
    all->excludes(cmd_->get_option("--device"));
    cmd_->add_flag("--host", host_, "This host: --acpi /sys/firmware/acpi/tables --sysfs /sys --dev /dev; also says "
                                    "whether `serve --host` can open each GPU and what is missing");
    dev_ = cmd_->add_option("--dev", dev_root_, "Device-node root to check what `serve --host` needs (with --sysfs)")
               ->type_name("ROOT");
    cmd_->add_flag("--regions", regions_, "Also list each GPU's VFIO regions as VFIO_DEVICE_GET_REGION_INFO reports them");
    cmd_->add_flag("--json", json_, "Print the JSON report instead of the table");
    return cmd_;
  }

  int run() override {
    std::vector<DeviceSpec> specs;
    if (int rc = collect(specs); rc != kExitOk) return rc;
    PlanOptions opts;
    if (int rc = plan_options(opts); rc != kExitOk) return rc;
    // A target that attaches the GPUs itself (libvirt, cloud-hypervisor)
    // needs a vfio-user socket or a host PCI address for each.
    if (opts.target->attaches_gpus && !opts.socket) {
      for (const auto& s : specs)
        if (!s.bdf && !s.absent_reason)
          return usage_error("--target {} attaches the GPUs: give --socket (nvgrace serve's), or --acpi with --sysfs "
                             "for host PCI addresses ({} has none)",
                             target_name_, s.name);
    }
    auto report = devices::build_report(specs, opts);
    if (!report) return usage_error("{}", report.error().message);
    report->acpi = acpi_diagnostics_;
    auto log = module_logger("cli");
    for (const auto& d : report->devices)
      if (d.status == DeviceStatus::unusable) log->warn("{}: unusable: {}", d.spec.name, d.reason);
      else if (d.status != DeviceStatus::fake_bars) log->info("{}: {}: {}", d.spec.name, devices::to_string(d.status), d.reason);
    if (report->plan_error) log->warn("guest plan: {}", *report->plan_error);
    // On an arm64 host: what KVM will do with usemem at stage 2 (R33).
    std::optional<vm::CacheablePfnmapReport> pfnmap;
    std::string pfnmap_error;
    if (host_) {
      if (auto r = vm::query_cacheable_pfnmap(); r) pfnmap = *r;
      else if (r.error().err != ENOTSUP) pfnmap_error = r.error().message;
    }
    if (json_) {
      auto j = to_json(*report, regions_);
      if (pfnmap)
        j["kvm"] = {{"cacheable_pfnmap", pfnmap->answer}, {"kernel", pfnmap->kernel}, {"meaning", pfnmap->meaning}};
      else if (!pfnmap_error.empty())
        j["kvm"] = {{"error", pfnmap_error}};
      std::cout << j.dump(2) << '\n';
    } else {
      std::cout << to_table(*report, regions_);
      if (pfnmap)
        std::cout << fmt::format("KVM (R33): KVM_CAP_ARM_CACHEABLE_PFNMAP_SUPPORTED = {} on Linux {}: {}\n",
                                 pfnmap->answer, pfnmap->kernel, pfnmap->meaning);
      else if (!pfnmap_error.empty())
        std::cout << fmt::format("KVM (R33): not asked: {}\n", pfnmap_error);
    }
    return report->any_unusable() ? kExitFailure : kExitOk;
  }

 private:
  int plan_options(PlanOptions& opts) const {
    opts.guest_numa_nodes = guest_numa_nodes_;
    opts.target = plan::find_target(target_name_);  // checked by CLI::IsMember
    const bool libvirt = opts.target->name == "libvirt";
    if (!libvirt && !libvirt_version_->empty()) return usage_error("--libvirt-version goes with --target libvirt");
    if (!libvirt && !libvirt_machine_->empty()) return usage_error("--libvirt-machine goes with --target libvirt");
    if (!libvirt_version_->empty()) {
      auto v = plan::parse_libvirt_version(libvirt_version_text_);
      if (!v) return usage_error("--libvirt-version: {}", v.error().message);
      if (*v < plan::kLibvirtQemuOverride)
        return usage_error("--libvirt-version: {} is older than {}, which the fragment needs for <qemu:override>",
                           plan::to_string(*v), plan::to_string(plan::kLibvirtQemuOverride));
      opts.libvirt_version = *v;
    }
    if (!libvirt_machine_->empty()) opts.libvirt_machine = *plan::parse_machine(libvirt_machine_name_);
    if (!socket_->empty()) {
      if (socket_path_.empty()) return usage_error("--socket: the path is empty");
      opts.socket = socket_path_;
    }
    return kExitOk;
  }

  int collect(std::vector<DeviceSpec>& specs) {
    std::optional<bool> forced;
    if (mig_bug_) forced = true;
    if (no_mig_bug_) forced = false;
    if (host_ || !acpi_.empty()) return collect_acpi(specs, forced);
    if (!sysfs_->empty() || !bdfs_.empty() || all_ || !dev_->empty() || !assume_->empty())
      return usage_error("--sysfs, --dev, --device, --assume-device-id and --all go with --acpi or --host");

    const bool explicit_dev = !device_id_->empty() || !mem_base_->empty() || !mem_size_->empty();
    if (!profiles_.empty() && explicit_dev)
      return usage_error("--profile conflicts with --device-id/--mem-base/--mem-size: describe a GPU one way");
    if (profiles_.empty() && !explicit_dev)
      return usage_error("give --profile NAME, or --device-id, --mem-base and --mem-size");
    if (count_ && profiles_.size() > 1) return usage_error("--count takes exactly one --profile");
    if (count_ && explicit_dev) return usage_error("--count goes with --profile");

    if (explicit_dev) {
      for (auto* opt : {device_id_, mem_base_, mem_size_})
        if (opt->empty()) return usage_error("{} is required with --device-id/--mem-base/--mem-size", opt->get_name());
      auto id = parse_device_id();
      if (!id) return usage_error("--device-id: {}", id.error().message);
      auto base = parse_size(mem_base_text_);
      if (!base) return usage_error("--mem-base: {}", base.error().message);
      auto size = parse_size(mem_size_text_);
      if (!size) return usage_error("--mem-size: {}", size.error().message);
      auto spec = devices::spec_from_numbers("gpu0", *id, *base, *size, forced, phys_bits_);
      if (!spec) return usage_error("--device-id: {}", spec.error().message);
      specs.push_back(std::move(*spec));
      return kExitOk;
    }
    const unsigned n = count_.value_or(1);
    for (unsigned c = 0; c < n; ++c) {
      for (const auto& name : profiles_) {
        const auto index = static_cast<unsigned>(specs.size());
        auto spec = devices::spec_from_profile(fmt::format("gpu{}", index), name, index, forced, phys_bits_);
        if (!spec) return usage_error("--profile: {}", spec.error().message);  // names are checked by CLI::IsMember
        specs.push_back(std::move(*spec));
      }
    }
    return kExitOk;
  }

  int collect_acpi(std::vector<DeviceSpec>& specs, std::optional<bool> forced) {
    if (!profiles_.empty() || count_ || !mem_base_->empty() || !mem_size_->empty())
      return usage_error("--acpi/--host conflict with --profile, --count, --mem-base and --mem-size: the tables "
                         "describe the memory");
    if (host_ && (!acpi_.empty() || !sysfs_->empty() || !dev_->empty()))
      return usage_error("--host conflicts with --acpi, --sysfs and --dev: it means --acpi /sys/firmware/acpi/tables "
                         "--sysfs /sys --dev /dev");
    devices::AcpiQuery q;
    auto tables = devices::acpi_table_paths(host_ ? std::vector<std::string>{devices::kLiveAcpiTables} : acpi_);
    if (!tables) return usage_error("{}", tables.error().message);
    q.tables = std::move(*tables);
    if (host_) q.sysfs = "/sys";
    else if (!sysfs_->empty()) q.sysfs = sysfs_root_;
    if (host_) q.dev = "/dev";
    else if (!dev_->empty()) q.dev = dev_root_;
    if (q.dev && !q.sysfs) return usage_error("--dev goes with --sysfs");
    q.bdfs = bdfs_;
    if (!assume_->empty()) {
      if (bdfs_.empty()) return usage_error("--assume-device-id goes with --device");
      auto id = parse_id16(assume_text_);
      if (!id) return usage_error("--assume-device-id: {}", id.error().message);
      if (!pciemu::find_identity(*id))
        return usage_error("--assume-device-id: {} is not a Grace GPU nvgrace knows (R1)", assume_text_);
      q.assume_device_id = *id;
    }
    q.forced_mig_bug = forced;
    q.phys_addr_bits = phys_bits_;
    if (!device_id_->empty()) {
      auto id = parse_device_id();
      if (!id) return usage_error("--device-id: {}", id.error().message);
      q.device_id = *id;
    }
    auto found = devices::collect_acpi_devices(q);
    if (!found) return usage_error("{}", found.error().message);
    specs = std::move(found->specs);
    auto log = module_logger("acpi");
    for (const auto& w : found->diagnostics.warnings) log->warn("{}", w);
    for (const auto& e : found->diagnostics.errors) log->warn("AML: {}", e);
    for (const auto& n : found->diagnostics.notes) log->debug("{}", n);
    acpi_diagnostics_ = std::move(found->diagnostics);
    return kExitOk;
  }

  // Decimal or 0x-hex; must name a Grace GPU (R1). A decimal number that
  // reads as a Grace id in hex gets a hint.
  Result<std::uint16_t> parse_device_id() const {
    auto id = parse_id16(device_id_text_);
    if (!id) return fail(id.error());
    if (pciemu::find_identity(*id)) return *id;
    std::string hint;
    if (auto as_hex = parse_id16("0x" + device_id_text_); as_hex && pciemu::find_identity(*as_hex))
      hint = fmt::format("; did you mean 0x{}?", device_id_text_);
    return fail("{} ({}) is not a Grace GPU nvgrace knows (R1){}", device_id_text_, hex_id(*id), hint);
  }

  CLI::App* cmd_ = nullptr;
  std::vector<std::string> profiles_;
  std::optional<unsigned> count_;
  CLI::Option* device_id_ = nullptr;
  CLI::Option* mem_base_ = nullptr;
  CLI::Option* mem_size_ = nullptr;
  std::string device_id_text_, mem_base_text_, mem_size_text_;
  bool mig_bug_ = false;
  bool no_mig_bug_ = false;
  unsigned phys_bits_ = 64;
  unsigned guest_numa_nodes_ = 1;
  std::string target_name_ = "qemu-virt";
  CLI::Option* libvirt_version_ = nullptr;
  std::string libvirt_version_text_;
  CLI::Option* libvirt_machine_ = nullptr;
  std::string libvirt_machine_name_;
  CLI::Option* socket_ = nullptr;
  std::string socket_path_;
  bool json_ = false;
  bool regions_ = false;
  std::vector<std::string> acpi_;
  CLI::Option* sysfs_ = nullptr;
  std::string sysfs_root_;
  CLI::Option* dev_ = nullptr;
  std::string dev_root_;
  CLI::Option* assume_ = nullptr;
  std::string assume_text_;
  std::vector<std::string> bdfs_;
  bool all_ = false;
  bool host_ = false;
  std::optional<devices::AcpiDiagnostics> acpi_diagnostics_;
};

}  // namespace

std::unique_ptr<Command> make_inspect_command() { return std::make_unique<InspectCommand>(); }

}  // namespace nvgrace::cli
