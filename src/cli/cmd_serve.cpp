// `nvgrace serve`: emulated Grace GPUs over vfio-user, for VMMs that attach
// user-space devices (QEMU 10.1+ vfio-user-pci, cloud-hypervisor).
#include <fcntl.h>
#include <grp.h>
#include <unistd.h>

#include <charconv>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <iterator>
#include <set>

#include "command.hpp"
#include "nvgrace/common/size.hpp"
#include "nvgrace/devices/emulated.hpp"
#include "nvgrace/devices/host.hpp"
#include "nvgrace/log/log.hpp"
#include "nvgrace/pciemu/identity.hpp"
#include "nvgrace/pciemu/profiles.hpp"
#include "nvgrace/serve/fdstore.hpp"
#include "nvgrace/serve/handover.hpp"
#include "nvgrace/serve/keeper.hpp"
#include "nvgrace/serve/server.hpp"
#include "nvgrace/vfio/host/function.hpp"

namespace nvgrace::cli {
namespace {

// "0660" or "660": octal permission bits, at most 0777.
Result<unsigned> parse_mode(std::string_view text) {
  unsigned v = 0;
  auto [p, ec] = std::from_chars(text.data(), text.data() + text.size(), v, 8);
  if (text.empty() || ec != std::errc() || p != text.data() + text.size() || v > 0777)
    return fail("'{}' is not an octal mode such as 0600 or 0660", text);
  return v;
}

// A group name or a numeric gid.
Result<gid_t> parse_group(const std::string& text) {
  if (const group* g = ::getgrnam(text.c_str())) return g->gr_gid;
  unsigned v = 0;
  auto [p, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (!text.empty() && ec == std::errc() && p == text.data() + text.size()) return static_cast<gid_t>(v);
  return fail("no group named '{}' (give a group name or a numeric gid)", text);
}

// R41: what SIGUSR2 execs - the binary at this process's own path and its
// command line, read while both are still the ones it started with.
Result<serve::UpgradeTarget> upgrade_target() {
  serve::UpgradeTarget t;
  std::error_code ec;
  t.binary = std::filesystem::read_symlink("/proc/self/exe", ec).string();
  if (ec) return fail("/proc/self/exe: {}", ec.message());
  std::ifstream in("/proc/self/cmdline", std::ios::binary);
  const std::string all((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  for (std::size_t at = 0; at < all.size();) {
    const auto nul = all.find('\0', at);
    t.argv.push_back(all.substr(at, nul == std::string::npos ? std::string::npos : nul - at));
    if (nul == std::string::npos) break;
    at = nul + 1;
  }
  if (t.argv.empty()) return fail("/proc/self/cmdline is empty");
  return t;
}

// A descriptor number as a predecessor wrote it into the environment.
std::optional<int> descriptor_number(std::string_view text) {
  int fd = -1;
  const auto [p, ec] = std::from_chars(text.data(), text.data() + text.size(), fd);
  if (ec != std::errc() || p != text.data() + text.size() || fd < 0) return std::nullopt;
  return fd;
}

struct KeeperChild {
  serve::StateStore store;
  std::unique_ptr<serve::DescriptorKeeper> keeper;
  std::vector<int> keeper_copies;  // descriptors the records name that `keeper` owns (the fd store's copies)
};
// A keeper's serving process (R41): the store and the control socket its
// keeper gave it, from the environment (left there: an upgrade's successor
// inherits them).
Result<std::optional<KeeperChild>> keeper_from_environment() {
  const char* text = std::getenv(serve::kKeeperEnv);
  if (!text) return std::optional<KeeperChild>();
  const std::string_view v(text);
  const auto comma = v.find(',');
  if (comma == std::string_view::npos) return fail("{}={} is not two descriptor numbers", serve::kKeeperEnv, v);
  const auto store_fd = descriptor_number(v.substr(0, comma));
  const auto control = descriptor_number(v.substr(comma + 1));
  if (!store_fd || !control) return fail("{}={} is not two descriptor numbers", serve::kKeeperEnv, v);
  auto store = serve::StateStore::attach(sys::UniqueFd(*store_fd));
  if (!store) return fail(store.error());
  ::fcntl(*control, F_SETFD, FD_CLOEXEC);
  return std::optional<KeeperChild>(
      KeeperChild{std::move(*store), std::make_unique<serve::KeeperChannel>(sys::UniqueFd(*control)), {}});
}

// --fdstore (R41): the state store of a process systemd restarted (its
// descriptors put back first, from LISTEN_FDS), or the one a predecessor
// upgraded in place left (NVGRACE_FDSTORE_STATE; left there for the next
// upgrade). nullopt: a first start.
Result<std::optional<KeeperChild>> fdstore_from_environment() {
  auto restored = serve::restore_from_fdstore();
  if (!restored) return fail(restored.error().context("taking systemd's stored descriptors back"));
  sys::UniqueFd state;
  std::vector<int> copies;
  if (*restored) {
    state = std::move((*restored)->state);
    copies = (*restored)->copies;
  } else if (const char* text = std::getenv(serve::kFdStoreStateEnv)) {
    const auto fd = descriptor_number(text);
    if (!fd) return fail("{}={} is not a descriptor number", serve::kFdStoreStateEnv, text);
    state = sys::UniqueFd(*fd);
  } else {
    return std::optional<KeeperChild>();
  }
  ::setenv(serve::kFdStoreStateEnv, std::to_string(state.get()).c_str(), 1);
  ::fcntl(state.get(), F_SETFD, FD_CLOEXEC);
  auto store = serve::StateStore::attach(std::move(state));
  if (!store) return fail(store.error());
  auto fdstore = serve::FdStore::connect();
  if (!fdstore) return fail(fdstore.error());
  return std::optional<KeeperChild>(KeeperChild{std::move(*store), std::move(*fdstore), std::move(copies)});
}

// The hand-over a predecessor left in the environment (R41), if any; the
// variables are cleared so that nothing this process starts sees them.
struct Takeover {
  serve::Handover handover;
  bool check_only = false;
};
Result<std::optional<Takeover>> takeover_from_environment() {
  const char* fd_text = std::getenv(serve::kHandoverFdEnv);
  if (!fd_text) return std::optional<Takeover>();
  const bool check = std::getenv(serve::kHandoverCheckEnv) != nullptr;
  const std::string text(fd_text);
  ::unsetenv(serve::kHandoverFdEnv);
  ::unsetenv(serve::kHandoverCheckEnv);
  const auto fd = descriptor_number(text);
  if (!fd) return fail("{}={} is not a descriptor number", serve::kHandoverFdEnv, text);
  sys::UniqueFd state(*fd);
  auto h = serve::read_handover(state.get());
  if (!h) return fail(h.error());
  return std::optional<Takeover>(Takeover{std::move(*h), check});
}

class ServeCommand final : public Command {
 public:
  CLI::App* attach(CLI::App& app) override {
    cmd_ = app.add_subcommand("serve", "Serve GPUs over vfio-user on UNIX sockets, one per GPU, one client at a "
                                       "time each: emulated ones (the default), or real devices bound to vfio-pci "
                                       "(--host). Stops on SIGINT, SIGTERM or SIGHUP and removes its sockets. "
                                       "SIGUSR2 upgrades it in place: the binary at its path takes over every "
                                       "socket, connection and device state without a client noticing (emulated "
                                       "GPUs; see docs/vfio-user.md). With --keeper it also survives its own "
                                       "death (SIGKILL, a crash)");
    cmd_->add_option("--socket", socket_, "Socket path; with --count N > 1 the sockets are PATH.0 .. PATH.N-1")
        ->type_name("PATH")->required();
    add_profile_option(cmd_, profile_, "Built-in emulated device")->capture_default_str();
    cmd_->add_option("--view", view_,
                     "guest: the GPU as the variant gives it to a guest, with fake BAR2/BAR4 over its memory (R10-R20). "
                     "host: the physical function as a Grace host sees it before any variant driver - real BARs, "
                     "readiness registers, no memory behind a BAR (R37); describe its memory with `nvgrace firmware` "
                     "and a guest's own nvgrace-gpu driver binds to it (docs/emulated-host.md)")
        ->check(CLI::IsMember({"guest", "host"}))->type_name("VIEW")->capture_default_str();
    cmd_->add_option("--ready-after", ready_after_ms_,
                     "Emulated GPUs turn ready (R20 registers, or the CXL DVSEC's bits, R31) this long after start and "
                     "after each reset")
        ->check(integer_in(0, 600000, "milliseconds"))->type_name("MS")->capture_default_str();
    cmd_->add_option("--count", count_, "Number of GPUs")->check(integer_in(1, 16))->type_name("N")->capture_default_str();
    cmd_->add_option("--mem-size", mem_size_text_, "Device memory size instead of the profile's, e.g. 0x17E4F00000")
        ->type_name("SIZE");
    cmd_->add_option("--memory-file", memory_file_,
                     "Back device memory with this file (PATH.i with --count > 1) instead of a memfd; usemem at "
                     "offset 0, resmem right after it. A new file is created; an existing one is used only when "
                     "empty or already exactly the backing size")
        ->type_name("PATH");
    cmd_->add_flag("--keeper", keeper_,
                   "Survive the serving process's death: this process stays as a keeper that holds every socket, "
                   "the GPU memory and the state the serving process (its child) publishes, and starts another "
                   "when it dies; its clients notice nothing (R41, docs/vfio-user.md)");
    cmd_->add_flag("--fdstore", fdstore_,
                   "Survive this process's death under systemd: every socket, the GPU memory and the published "
                   "state go to the unit's file-descriptor store, and the process systemd restarts takes them "
                   "back; its clients notice nothing (needs NotifyAccess=main and FileDescriptorStoreMax= in the "
                   "unit; R41, docs/vfio-user.md)")
        ->excludes(cmd_->get_option("--keeper"));
    cmd_->add_option("--socket-mode", socket_mode_text_, "Permissions of the socket files, octal")
        ->type_name("MODE")->capture_default_str();
    cmd_->add_option("--socket-group", socket_group_,
                     "Group of the socket files (name or gid), e.g. the group a VMM such as libvirt's qemu runs in")
        ->type_name("GROUP");
    host_ = cmd_->add_option("--host", host_bdfs_,
                             "Serve this real device, bound to vfio-pci, with fake BARs from the host's ACPI tables "
                             "(repeatable; not with --profile, --count, --mem-size, --memory-file; see docs/host.md)")
                ->type_name("BDF");
    cmd_->add_option("--vfio-api", vfio_api_, "How --host devices are opened: cdev (iommufd), group (type1), or auto "
                                              "(cdev where the kernel has it)")
        ->check(CLI::IsMember({"auto", "cdev", "group"}))->type_name("API")->capture_default_str();
    cmd_->add_flag("--vfio-noiommu", noiommu_,
                   "With --host: accept a device in a no-IOMMU group (vfio.enable_unsafe_noiommu_mode=1). Nothing "
                   "isolates its DMA and no DMA mapping can be made: for config and region semantics only (tests)");
    cmd_->add_flag("--allow-device-memory", allow_device_memory_,
                   "With --host: back the fake BARs with /dev/mem, or --host-memory's device-DAX on an arm64 kernel "
                   "before 6.17, even where the guest then gets the GPU memory as Device memory (R40). The guest's "
                   "driver then faults on unaligned accesses and DC ZVA: for tests that show it only");
    cmd_->add_option("--host-memory", host_memory_,
                     "With --host: the fake BARs' memory from this device-DAX instance (/dev/daxX.Y) instead of "
                     "/dev/mem - Normal write-back memory on arm64 where /dev/mem gives Device memory (R40), with a "
                     "KVM from Linux 6.17 on (earlier ones map it Device at stage 2: refused); each GPU takes the "
                     "instance that holds its usemem (repeat for several). Write-back only: a GPU with resmem is "
                     "refused")
        ->type_name("PATH");
    cmd_->add_option("--assume-device-id", assume_text_,
                     "Testing only: treat a --host device that is not a Grace GPU as this one (e.g. 0x2342). Such a "
                     "stand-in has no R20 readiness registers: readiness is skipped, with a warning")
        ->type_name("ID");
    auto* bug = cmd_->add_flag("--mig-bug", mig_bug_,
                               "Testing only, with --assume-device-id: the stand-in GPU has the MIG hardware bug "
                               "(resmem); without either flag its config space decides (R2), and a stand-in has no "
                               "NVIDIA DVSEC, which means the bug");
    auto* nobug = cmd_->add_flag("--no-mig-bug", no_mig_bug_,
                                 "Testing only, with --assume-device-id: the stand-in GPU has no MIG hardware bug "
                                 "(usemem only, as a GB200's DVSEC says)");
    bug->excludes(nobug);
    cmd_->add_flag("--no-fake-bar-mmap", no_fake_bar_mmap_,
                   "With --host: do not send the client /dev/mem for the fake BARs (an fd that maps physical memory); "
                   "they are reached through REGION_READ/WRITE only. See docs/host.md, security");
    cmd_->add_option("--acpi", acpi_, "ACPI tables for --host devices; none (or no such folder at the default): "
                                       "a device-tree host, whose GPUs are described on their DT nodes")->type_name("PATH")->capture_default_str();
    cmd_->add_option("--sysfs", sysfs_, "sysfs root for --host devices")->type_name("ROOT")->capture_default_str();
    return cmd_;
  }

  [[nodiscard]] spdlog::level::level_enum default_log_level() const override { return spdlog::level::info; }

  int run() override {
    serve::block_shutdown_signals();  // a SIGTERM from now on shuts down cleanly
    if (fdstore_) {
      // First: the descriptors systemd kept go back to their numbers before
      // anything else here opens one.
      auto kept = fdstore_from_environment();
      if (!kept) return failure("serve", "--fdstore: {}", kept.error().message);
      keeper_child_ = std::move(*kept);
    }
    auto takeover = takeover_from_environment();
    if (!takeover) return failure("serve", "cannot take over from the previous server: {}", takeover.error().message);
    takeover_ = std::move(*takeover);
    auto keeper = keeper_from_environment();
    if (!keeper) return failure("serve", "cannot serve for the keeper: {}", keeper.error().message);
    if (*keeper) keeper_child_ = std::move(*keeper);
    serve::SocketAccess access;
    auto mode = parse_mode(socket_mode_text_);
    if (!mode) return usage_error("--socket-mode: {}", mode.error().message);
    access.mode = *mode;
    if (!socket_group_.empty()) {
      auto gid = parse_group(socket_group_);
      if (!gid) return usage_error("--socket-group: {}", gid.error().message);
      access.group = *gid;
    }
    if (!host_->empty()) return serve_host(access);
    if (no_fake_bar_mmap_) return usage_error("--no-fake-bar-mmap goes with --host");
    if (noiommu_) return usage_error("--vfio-noiommu goes with --host");
    if (allow_device_memory_) return usage_error("--allow-device-memory goes with --host");
    if (!host_memory_.empty()) return usage_error("--host-memory goes with --host");
    if (!assume_text_.empty()) return usage_error("--assume-device-id goes with --host");
    if (mig_bug_ || no_mig_bug_) return usage_error("--{}mig-bug goes with --host", mig_bug_ ? "" : "no-");
    if (view_ == "host") return serve_host_view(access);
    std::optional<std::uint64_t> mem_size;
    if (!mem_size_text_.empty()) {
      auto v = parse_size(mem_size_text_);
      if (!v) return usage_error("--mem-size: {}", v.error().message);
      mem_size = *v;
    }
    std::vector<serve::ServedDevice> devices;
    std::vector<std::string> backings;
    for (unsigned i = 0; i < count_; ++i) {
      devices::EmulatedOptions eo;
      eo.profile = profile_;
      eo.index = i;
      eo.mem_size = mem_size;
      eo.timing.ready_after = std::chrono::milliseconds(ready_after_ms_);
      if (!memory_file_.empty()) eo.memory_file = serve::socket_path(memory_file_, i, count_);
      auto emu = devices::make_emulated_device(eo);
      if (!emu) {
        // The profile is a checked name: a device that cannot be built from
        // it is the --mem-size's doing.
        if (emu.error().bad_size) return usage_error("--mem-size: {}", emu.error().error.message);
        return failure("serve", "{}: {}", memory_file_.empty() ? "memfd" : "--memory-file", emu.error().error.message);
      }
      backings.push_back(emu->memory);
      devices.push_back({serve::socket_path(socket_, i, count_), std::move(emu->device), false});
    }
    std::vector<std::string> lines;
    for (unsigned i = 0; i < count_; ++i)
      lines.push_back(fmt::format("serving {} gpu{} on {} ({})", profile_, i, serve::socket_path(socket_, i, count_),
                                  backings[i]));
    return run_server(std::move(devices), lines, access);
  }

 private:
  // --view host: the emulated physical function alone (R37).
  int serve_host_view(const serve::SocketAccess& access) {
    for (const auto* opt : {"--mem-size", "--memory-file"})
      if (!cmd_->get_option(opt)->empty())
        return usage_error("--view host conflicts with {}: the host view has no GPU memory behind a BAR (R37); "
                           "give the size to `nvgrace firmware`", opt);
    std::vector<serve::ServedDevice> devices;
    std::vector<std::string> lines;
    for (unsigned i = 0; i < count_; ++i) {
      devices::EmulatedOptions eo;
      eo.profile = profile_;
      eo.index = i;
      eo.timing.ready_after = std::chrono::milliseconds(ready_after_ms_);
      auto fn = devices::make_emulated_function(eo);
      if (!fn) return failure("serve", "{}", fn.error().message);
      const auto path = serve::socket_path(socket_, i, count_);
      lines.push_back(fmt::format("serving {} gpu{} on {} (host view: {:04x}:{:04x}, real BARs only)", profile_, i,
                                  path, pciemu::kNvidiaVendorId, fn->gpu.profile.device_id));
      devices.push_back({path, std::move(fn->function), false});
    }
    return run_server(std::move(devices), lines, access);
  }

  // --host: real devices, refused with one line where they cannot be served.
  int serve_host(const serve::SocketAccess& access) {
    for (const auto* opt : {"--profile", "--count", "--mem-size", "--memory-file", "--view", "--ready-after"})
      if (!cmd_->get_option(opt)->empty()) return usage_error("--host conflicts with {}: it serves real devices", opt);
    devices::HostQuery q;
    q.bdfs = host_bdfs_;
    q.api = vfio_api_ == "cdev" ? vfio::host::VfioApi::cdev
            : vfio_api_ == "group" ? vfio::host::VfioApi::group : vfio::host::VfioApi::automatic;
    if (!assume_text_.empty()) {
      auto id = parse_id16(assume_text_);
      if (!id) return usage_error("--assume-device-id: {}", id.error().message);
      if (!pciemu::find_identity(*id))
        return usage_error("--assume-device-id: {} is not a Grace GPU nvgrace knows (R1)", assume_text_);
      q.assume_device_id = *id;
    }
    if ((mig_bug_ || no_mig_bug_) && !q.assume_device_id)
      return usage_error("--{}mig-bug goes with --assume-device-id: a Grace GPU's own DVSEC says whether it has the "
                         "MIG bug (R2)",
                         mig_bug_ ? "" : "no-");
    if (mig_bug_ || no_mig_bug_) q.forced_mig_bug = mig_bug_;
    q.acpi = acpi_;
    q.sysfs = sysfs_;
    q.mmap_fake_bars = !no_fake_bar_mmap_;
    q.allow_noiommu = noiommu_;
    q.allow_device_memory = allow_device_memory_;
    q.dax.assign(host_memory_.begin(), host_memory_.end());
    // A serving process upgraded in place takes its devices from its own
    // hand-over; the keeper's records name the keeper's descriptor numbers.
    if (keeper_child_ && !takeover_) {
      if (auto ok = load_keeper_records(); !ok) return failure("serve", "{}", ok.error().message);
    }
    if (takeover_ || keeper_child_) q.adopt = [this](Bdf bdf) { return adopt_host(bdf); };
    auto built = devices::build_host_devices(q);
    if (!built) {
      if (built.error().usage) return usage_error("{}", built.error().line);
      return failure("serve", "{}", built.error().line);
    }
    auto log = module_logger("serve");
    std::vector<serve::ServedDevice> served;
    std::vector<std::string> lines;
    const auto count = static_cast<unsigned>(built->size());
    for (unsigned i = 0; i < count; ++i) {
      auto& d = (*built)[i];
      for (const auto& w : d.warnings) log->warn("{}: {}", d.bdf, w);
      const auto path = serve::socket_path(socket_, i, count);
      lines.push_back(fmt::format("serving {} ({}) on {} {}", d.bdf, d.ids, path, d.how));
      // R30: a real device is reset between clients.
      served.push_back({path, std::move(d.device), true});
    }
    return run_server(std::move(served), lines, access);
  }

  int run_server(std::vector<serve::ServedDevice> devices, const std::vector<std::string>& lines,
                 const serve::SocketAccess& access) {
    auto target = upgrade_target();
    if (takeover_) return take_over(std::move(devices), target);
    if (keeper_child_) return serve_for_keeper(std::move(devices), target);
    auto server = serve::Server::create(std::move(devices), access);
    if (!server) {
      // A socket in use or a path that is not ours: the command line asked
      // for something that cannot be had (exit 2, as for any bad path).
      return usage_error("{}", server.error().message);
    }
    if (keeper_) return keep(**server, lines, target);
    if (fdstore_) {
      if (auto ok = store_all(**server); !ok) return failure("serve", "--fdstore: {}", ok.error().message);
    }
    for (const auto& l : lines) std::cout << l << '\n' << std::flush;
    if (target) (*server)->set_upgrade(std::move(*target));
    else module_logger("serve")->warn("SIGUSR2 will not upgrade this server: {}", target.error().message);
    if (auto ok = (*server)->run(true); !ok) return failure("serve", "{}", ok.error().message);
    return kExitOk;
  }

  // --keeper: this process keeps the descriptors and the state, and runs the
  // serving process (R41).
  int keep(serve::Server& server, const std::vector<std::string>& lines, Result<serve::UpgradeTarget>& target) {
    if (!target) return failure("serve", "--keeper: cannot find this program to run it: {}", target.error().message);
    auto store = serve::StateStore::create(server.size());
    if (!store) return failure("serve", "--keeper: {}", store.error().message);
    server.set_keeper(&*store, nullptr);
    if (auto ok = server.publish_all(); !ok)
      return failure("serve", "--keeper cannot keep this server: {}", ok.error().message);
    for (const auto& l : lines) std::cout << l << '\n' << std::flush;
    serve::KeeperOptions o;
    o.child = *target;
    return serve::run_keeper(server, *store, o);
  }

  // --fdstore, a first start: every socket's record published, then each
  // descriptor the records name and the store itself given to systemd, and
  // from then on connections and records are kept as for a keeper.
  Result<void> store_all(serve::Server& server) {
    auto store = serve::StateStore::create(server.size());
    if (!store) return fail(store.error());
    auto fdstore = serve::FdStore::connect();
    if (!fdstore) return fail(fdstore.error());
    keeper_child_ = KeeperChild{std::move(*store), std::move(*fdstore), {}};
    auto& k = *keeper_child_;
    server.set_keeper(&k.store, nullptr);
    if (auto ok = server.publish_all(); !ok) return fail(ok.error().context("publishing the state"));
    auto& fdstore_ref = static_cast<serve::FdStore&>(*k.keeper);
    std::set<int> named;
    for (std::size_t i = 0; i < k.store.slots(); ++i) {
      auto fds = serve::handover_descriptors(k.store.record(i));
      if (!fds) return fail(fds.error());
      named.insert(fds->begin(), fds->end());
    }
    for (int fd : named)
      if (auto ok = fdstore_ref.store(fd, serve::fdstore_name(fd)); !ok) return fail(ok.error());
    if (auto ok = fdstore_ref.store(k.store.fd(), serve::kFdStoreStateName); !ok) return fail(ok.error());
    ::setenv(serve::kFdStoreStateEnv, std::to_string(k.store.fd()).c_str(), 1);
    server.set_keeper(&k.store, k.keeper.get());
    return k.keeper->ready();
  }

  // The keeper's records, read once (a --host device is adopted from them
  // before the devices are built).
  Result<void> load_keeper_records() {
    if (keeper_records_) return {};
    auto& k = *keeper_child_;
    std::vector<serve::Handover> records;
    for (std::size_t i = 0; i < k.store.slots(); ++i) {
      auto h = serve::decode_handover(k.store.record(i), k.keeper_copies);
      if (!h) return fail("the keeper's record of socket {}: {}", i, h.error().message);
      records.push_back(std::move(*h));
    }
    keeper_records_ = std::move(records);
    return {};
  }

  // R41: the VFIO device of `bdf` as the predecessor (or the keeper) holds
  // it, if a record names it.
  std::optional<Result<vfio::host::OpenedVfio>> adopt_host(Bdf bdf) {
    const auto name = bdf.to_string();
    auto find = [&](const nlohmann::json& record, sys::FdTable& fds) -> std::optional<Result<vfio::host::OpenedVfio>> {
      const auto device = record.find("device");
      if (device == record.end()) return std::nullopt;
      const auto* hs = vfio::host::host_state(*device);
      if (!hs || hs->value("bdf", std::string()) != name) return std::nullopt;
      return vfio::host::adopt_saved_vfio(*hs, fds);
    };
    if (takeover_) {
      auto& h = takeover_->handover;
      if (const auto slots = h.doc.find("slots"); slots != h.doc.end() && slots->is_array())
        for (const auto& r : *slots)
          if (auto got = find(r, h.fds)) return got;
    }
    if (keeper_records_)
      for (auto& r : *keeper_records_)
        if (auto got = find(r.doc, r.fds)) return got;
    return std::nullopt;
  }

  // The keeper's serving process: everything from the keeper's store.
  int serve_for_keeper(std::vector<serve::ServedDevice> devices, Result<serve::UpgradeTarget>& target) {
    auto& k = *keeper_child_;
    if (auto ok = load_keeper_records(); !ok) return failure("serve", "{}", ok.error().message);
    auto& records = *keeper_records_;
    std::uint64_t messages = 0;
    for (const auto& r : records) messages = std::max<std::uint64_t>(messages, r.doc.value("messages", std::uint64_t{0}));
    std::vector<serve::Server::SlotState> slots;
    for (auto& r : records) slots.push_back({&r.doc, &r.fds});
    auto server = serve::Server::adopt(std::move(devices), slots, messages, true);
    if (!server) return failure("serve", "cannot take the keeper's state on: {}", server.error().message);
    (*server)->set_keeper(&k.store, k.keeper.get());
    auto log = module_logger("serve");
    if (auto ok = (*server)->keeper_ready(); !ok) log->warn("{}", ok.error().message);
    std::size_t connections = 0;
    for (const auto& r : records)
      if (const auto c = r.doc["slot"].find("connection"); c != r.doc["slot"].end() && !c->is_null()) ++connections;
    log->info("serving process {} took the state on from {}: {} socket(s), {} connection(s), {} message(s) so far",
              ::getpid(), fdstore_ ? "systemd's file-descriptor store" : "the keeper", records.size(), connections,
              messages);
    if (target) (*server)->set_upgrade(std::move(*target));
    if (auto ok = (*server)->run(true); !ok) return failure("serve", "{}", ok.error().message);
    return kExitOk;
  }

  // R41: the successor of an upgrade. In check mode it only proves that it
  // can take the state on and leaves at once, running no destructor: every
  // descriptor it holds is still the live server's.
  int take_over(std::vector<serve::ServedDevice> devices, Result<serve::UpgradeTarget>& target) {
    auto& h = takeover_->handover;
    const auto from = h.doc.value("from_pid", 0);
    auto slots = serve::Server::slot_states(h.doc, h.fds);
    Result<std::unique_ptr<serve::Server>> server =
        slots ? serve::Server::adopt(std::move(devices), *slots, h.doc.value("messages", std::uint64_t{0}),
                                     !takeover_->check_only)
              : Result<std::unique_ptr<serve::Server>>(fail(slots.error()));
    if (takeover_->check_only) {
      if (!server) {
        std::cout << "cannot take the state on: " << server.error().message << std::endl;
        std::_Exit(1);
      }
      std::cout << "can take the state on" << std::endl;
      std::_Exit(0);
    }
    if (!server) return failure("serve", "cannot take over from the previous server: {}", server.error().message);
    auto log = module_logger("serve");
    if (keeper_child_) {
      (*server)->set_keeper(&keeper_child_->store, keeper_child_->keeper.get());
      if (auto ok = (*server)->keeper_ready(); !ok) log->warn("{}", ok.error().message);
    }
    // CLOCK_MONOTONIC is the system's: the predecessor's pause began at this
    // point of the same clock.
    const std::int64_t paused_at = h.doc.value("paused_at_ns", std::int64_t{0});
    const auto now = std::chrono::duration_cast<std::chrono::nanoseconds>(
                         std::chrono::steady_clock::now().time_since_epoch()).count();
    log->info("upgraded in place: process {} goes on with this binary, every socket and connection kept, {} ms "
              "after the pause began ({} message(s) served so far)", from, (now - paused_at) / 1000000,
              (*server)->messages());
    if (target) (*server)->set_upgrade(std::move(*target));
    else log->warn("SIGUSR2 will not upgrade this server: {}", target.error().message);
    if (auto ok = (*server)->run(true); !ok) return failure("serve", "{}", ok.error().message);
    return kExitOk;
  }

  CLI::App* cmd_ = nullptr;
  std::optional<Takeover> takeover_;
  std::optional<KeeperChild> keeper_child_;
  std::optional<std::vector<serve::Handover>> keeper_records_;
  bool keeper_ = false;
  bool fdstore_ = false;
  CLI::Option* host_ = nullptr;
  std::vector<std::string> host_bdfs_;
  std::string vfio_api_ = "auto";
  std::string assume_text_;
  bool no_fake_bar_mmap_ = false;
  bool noiommu_ = false;
  bool mig_bug_ = false;
  bool no_mig_bug_ = false;
  bool allow_device_memory_ = false;
  std::vector<std::string> host_memory_;
  std::string acpi_ = "/sys/firmware/acpi/tables";
  std::string sysfs_ = "/sys";
  std::string socket_;
  std::string profile_ = "gh200";
  std::string view_ = "guest";
  unsigned ready_after_ms_ = 0;
  unsigned count_ = 1;
  std::string memory_file_;
  std::string mem_size_text_;
  std::string socket_mode_text_ = "0600";
  std::string socket_group_;
};

}  // namespace

std::unique_ptr<Command> make_serve_command() { return std::make_unique<ServeCommand>(); }

}  // namespace nvgrace::cli
