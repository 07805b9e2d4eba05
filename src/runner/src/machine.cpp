#include "nvgrace/runner/machine.hpp"

#include <linux/pci_regs.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/time.h>
#include <unistd.h>

#include <cstring>

#include <fmt/format.h>

#include "nvgrace/log/log.hpp"
#include "nvgrace/common/checked.hpp"
#include "nvgrace/common/size.hpp"
#include "nvgrace/devices/emulated.hpp"
#include "nvgrace/runner/platform.hpp"
#include "nvgrace/sys/memfd.hpp"

namespace nvgrace::runner {
namespace {

// SIGALRM without SA_RESTART makes KVM_RUN return EINTR once a second, so a
// guest that never exits cannot hang the run. Restored on destruction.
class Watchdog {
 public:
  Watchdog() {
    struct sigaction sa {};
    sa.sa_handler = [](int) {};
    sigemptyset(&sa.sa_mask);
    ::sigaction(SIGALRM, &sa, &old_action_);
    itimerval t{{1, 0}, {1, 0}};
    ::setitimer(ITIMER_REAL, &t, &old_timer_);
  }
  ~Watchdog() {
    ::setitimer(ITIMER_REAL, &old_timer_, nullptr);
    ::sigaction(SIGALRM, &old_action_, nullptr);
  }
  Watchdog(const Watchdog&) = delete;
  Watchdog& operator=(const Watchdog&) = delete;

 private:
  struct sigaction old_action_ {};
  itimerval old_timer_{};
};

}  // namespace

Machine::Machine(vm::Kvm& kvm, const RunOptions& opts, const std::function<void(const std::string&)>& on_line,
                 std::chrono::steady_clock::time_point deadline, MemoryMap map)
    : kvm_(kvm), slots_(kvm_), opts_(opts), on_line_(on_line), log_(module_logger("run")), deadline_(deadline),
      map_(std::move(map)) {
  fixed_ = {{map_.ram_base, opts_.guest_mem, "RAM"}, {map_.ecam_base, map_.ecam_size, "ECAM"}};
  fixed_.insert(fixed_.end(), map_.fixed_mmio.begin(), map_.fixed_mmio.end());
}

Result<void> Machine::check_deadline(std::string_view doing) const {
  if (std::chrono::steady_clock::now() <= deadline_) return {};
  return fail_errno(ETIMEDOUT, "--timeout: {} s passed while {}", opts_.timeout.count(), doing);
}

Result<void> Machine::setup_ram() {
  const auto limits = guest_mem_limits();
  if (opts_.guest_mem < limits.min || opts_.guest_mem % limits.granule != 0 || opts_.guest_mem > limits.max)
    return fail_errno(EINVAL, "guest memory {} is not a multiple of {} in {}..{}", format_size(opts_.guest_mem),
                      format_size(limits.granule), format_size(limits.min), format_size(limits.max));
  // RAM is a memfd like device memory, so the benchmark compares like with like.
  auto fd = sys::make_memfd("nvgrace-guest-ram", opts_.guest_mem);
  if (!fd) return fail(fd.error().context("guest RAM"));
  ram_fd_ = std::move(*fd);
  auto map = sys::Mapping::map(ram_fd_.get(), 0, opts_.guest_mem, sys::huge_alignment(opts_.guest_mem),
                                PROT_READ | PROT_WRITE, MAP_SHARED | MAP_NORESERVE);
  if (!map) return fail(map.error().context("guest RAM"));
  ram_ = std::move(*map);
  auto slot = slots_.map(map_.ram_base, opts_.guest_mem, ram_.address());
  if (!slot) return fail(slot.error().context("guest RAM memslot"));
  ram_slot_ = std::move(*slot);
  return {};
}

Result<void> Machine::setup_gpus(nvg_boot_info& bi) {
  // Host bridge at 00.0 (Intel Q35 ids, class 0x0600), read-only.
  const pciemu::RegDef bridge[] = {{PCI_VENDOR_ID, 2, 0x8086, 0, 0, "Vendor"},
                                   {PCI_DEVICE_ID, 2, 0x29C0, 0, 0, "Device"},
                                   {PCI_CLASS_REVISION, 4, 0x06000000, 0, 0, "Class"}};
  if (auto ok = host_bridge_.define_all(bridge); !ok) return ok;
  const GuestPhysAddr limit{kvm_.phys_bits() >= 64 ? ~0ull : (std::uint64_t{1} << kvm_.phys_bits())};
  for (unsigned i = 0; i < opts_.count; ++i) {
    if (auto ok = check_deadline(fmt::format("setting up gpu{}", i)); !ok) return ok;
    const auto name = fmt::format("gpu{}", i);
    // The same device nvgrace serve serves: the variant over an emulated
    // function, its memory a sparse memfd.
    devices::EmulatedOptions eo;
    eo.profile = opts_.profile;
    eo.index = i;
    auto emu = devices::make_emulated_device(eo);
    if (!emu) return fail(emu.error().error.context(name));
    const auto layout = emu->gpu.layout;
    const auto bars = emu->gpu.bars;
    Gpu g;
    g.name = name;
    g.devfn = (i + 1) << 3;
    g.device = std::move(emu->device);
    auto mapper = vm::BarMapper::create(name, slots_, *g.device, limit, log_);
    if (!mapper) return fail(mapper.error());
    g.mapper = std::move(*mapper);
    auto& plan = bi.gpu[i];
    plan.devfn = g.devfn;
    plan.device_id = emu->gpu.profile.device_id;
    plan.usemem_len = layout.usemem->length;
    plan.resmem_len = layout.resmem ? layout.resmem->length : 0;
    for (const auto& b : bars) plan.bar_size[b.index.value()] = b.size;
    gpus_.push_back(std::move(g));
  }
  return {};
}

Result<void> Machine::setup(GuestPhysAddr boot_info_gpa) {
  if (opts_.count == 0 || opts_.count > NVG_MAX_GPUS) return fail_errno(EINVAL, "--count must be 1..{}", NVG_MAX_GPUS);
  if (opts_.bench && bench_guest_mem(opts_.bench_mib) > opts_.guest_mem)
    return fail_errno(EINVAL, "--guest-mem {} is too small for a {} MiB benchmark: give {} or more",
                      format_size(opts_.guest_mem), opts_.bench_mib, format_size(bench_guest_mem(opts_.bench_mib)));
  if (auto ok = setup_ram(); !ok) return ok;
  boot_info_gpa_ = boot_info_gpa;
  auto& bi = boot_info();
  bi = {};
  bi.magic = NVG_BOOT_MAGIC;
  bi.ngpus = opts_.count;
  bi.ecam_base = map_.ecam_base.value();
  bi.mmio64_base = map_.mmio64_base.value();
  bi.mmio64_limit = map_.mmio64_limit.value();
  bi.ram_base = map_.ram_base.value();
  bi.ram_size = opts_.guest_mem;
  bi.mode = opts_.bench ? NVG_MODE_BENCH : NVG_MODE_CHECKS;
  bi.bench_mib = opts_.bench_mib;
  bi.bench_iters = opts_.bench_iters;
  return setup_gpus(bi);
}

std::uint32_t Machine::cfg_read(unsigned devfn, unsigned reg, unsigned len) {
  ++report_.exits.config;
  if (devfn == 0) return host_bridge_.read(reg, len).value_or(0xFFFFFFFF);
  for (auto& g : gpus_) {
    if (g.devfn != devfn) continue;
    std::uint32_t v = 0;
    auto n = g.device->read(vfio::kConfigRegion, reg, std::span(reinterpret_cast<std::uint8_t*>(&v), len));
    return n ? v : 0xFFFFFFFF;
  }
  return len == 4 ? 0xFFFFFFFF : (1u << (8 * len)) - 1;  // no device: master abort
}

void Machine::cfg_write(unsigned devfn, unsigned reg, unsigned len, std::uint32_t value) {
  ++report_.exits.config;
  for (auto& g : gpus_) {
    if (g.devfn != devfn) continue;
    (void)g.device->write(vfio::kConfigRegion, reg, std::span(reinterpret_cast<const std::uint8_t*>(&value), len));
    sync_bars();  // R21: the memslots follow the config space
  }
}

// Called on every config write: the fixed ranges are built once, the list of
// the other GPUs' claims reuses its storage.
void Machine::sync_bars() {
  for (auto& g : gpus_) {
    others_.clear();
    for (auto& o : gpus_)
      if (&o != &g) o.mapper->append_ranges(others_);
    g.mapper->sync(fixed_, others_);
  }
}

void Machine::line(const std::string& text) {
  if (text.starts_with("ok ") || text.starts_with("FAIL")) ++report_.checks;
  if (text.starts_with("bench ")) {
    const auto sp = text.find(' ', 6);
    report_.bench.emplace_back(text.substr(6, sp - 6), std::stoull(text.substr(sp + 1)));
  }
  on_line_(text);
}

void Machine::host_check(bool ok, const std::string& what) {
  if (!ok) ++report_.host_failures;
  line(fmt::format("{} host {}", ok ? "ok  " : "FAIL", what));
}

void Machine::report_char(char c) {
  if (c == '\n') {
    line(text_);
    text_.clear();
  } else {
    text_ += c;
  }
}

void Machine::report_done(std::uint32_t failures) {
  report_.guest_failures = failures;
  done_ = true;
}

void Machine::mmio(GuestPhysAddr gpa, std::uint8_t* data, unsigned len, bool write) {
  ++report_.exits.mmio;
  if (gpa >= map_.ecam_base && gpa - map_.ecam_base < map_.ecam_size) {
    // ECAM (PCIe Base 6.0, 7.2.2): bus in bits 27:20, devfn 19:12, register 11:0.
    const std::uint64_t off = gpa - map_.ecam_base;
    if ((off >> 20) != 0) {  // only bus 0 has devices
      if (!write) std::memset(data, 0xFF, len);
      return;
    }
    const unsigned devfn = static_cast<unsigned>(off >> 12) & 0xFF;
    const unsigned reg = static_cast<unsigned>(off & 0xFFF);
    for (unsigned done = 0; done < len; done += 4) {
      const unsigned n = std::min(4u, len - done);
      if (write) {
        std::uint32_t v = 0;
        std::memcpy(&v, data + done, n);
        cfg_write(devfn, reg + done, n, v);
      } else {
        const std::uint32_t v = cfg_read(devfn, reg + done, n);
        std::memcpy(data + done, &v, n);
      }
    }
    return;
  }
  for (auto& g : gpus_) {
    if (const auto* c = g.mapper->claim_at(gpa)) {
      // BAR0 registers and fake-BAR tails trap here (R20, R22).
      const std::span buf(data, len);
      const auto region = vfio::bar_region(c->index);
      if (write) (void)g.device->write(region, gpa - c->base, buf);
      else if (!g.device->read(region, gpa - c->base, buf)) std::memset(data, 0xFF, len);
      return;
    }
  }
  // Nothing decodes here (decode off, a refused BAR): master abort.
  ++report_.exits.unclaimed;
  if (!write) std::memset(data, 0xFF, len);
}

void Machine::host_checks() {
  for (unsigned i = 0; i < gpus_.size(); ++i) {
    auto& g = gpus_[i];
    const auto& layout = g.device->layout();
    auto check = [&](bool ok, const std::string& what) { host_check(ok, fmt::format("gpu{} {}", i, what)); };
    const auto use = g.device->memory().range(pciemu::MemRole::usemem);
    auto at = [](const vfio::MemoryRange& r, std::uint64_t off) {
      std::uint64_t v = 0;
      std::memcpy(&v, r.data + off, 8);
      return v;
    };
    check(at(*use, 0x1000) == nvg_pattern(i, 4, 0x1000), "usemem holds the guest's pattern at +0x1000");
    check(at(*use, NVG_HOST_CHECK_USEMEM_OFFSET) == NVG_HOST_CHECK_VALUE(i, 4),
          fmt::format("usemem holds the value written through the moved BAR4 at +{:#x}", NVG_HOST_CHECK_USEMEM_OFFSET));
    if (layout.resmem) {
      const auto res = g.device->memory().range(pciemu::MemRole::resmem);
      check(at(*res, NVG_HOST_CHECK_RESMEM_OFFSET) == NVG_HOST_CHECK_VALUE(i, 2),
            fmt::format("resmem holds the guest's value at +{:#x} (memfd offset {:#x})", NVG_HOST_CHECK_RESMEM_OFFSET,
                        res->fd_offset + NVG_HOST_CHECK_RESMEM_OFFSET));
    }
    // R21: every fake BAR the guest left placed, with decode on, is a memslot.
    for (const auto* m : {&layout.usemem, &layout.resmem}) {
      if (!*m) continue;
      const vm::BarClaim* claim = nullptr;
      for (const auto& c : g.mapper->claims())
        if (c.index == (*m)->bar_index) claim = &c;
      std::string why;
      for (const auto& u : g.mapper->unplaced())
        if (u.index == (*m)->bar_index) why = u.reason;
      check(claim && claim->mapped,
            claim ? fmt::format("BAR{} is a memslot at {:#x} (R21)", (*m)->bar_index, claim->base)
                  : fmt::format("BAR{} is a memslot (R21): it is not mapped: {}", (*m)->bar_index, why));
    }
    if (layout.usemem->tail() > 0) check(g.device->dropped_writes() >= 8, "the write into the BAR4 tail was dropped and counted (R22)");
  }
}

Result<ExitAction> Machine::unexpected_exit(const kvm_run& run) {
  switch (run.exit_reason) {
    case KVM_EXIT_INTERNAL_ERROR:
      return fail_errno(EPROTO, "KVM internal error (suberror {})", run.internal.suberror);
    case KVM_EXIT_FAIL_ENTRY:
      return fail_errno(EPROTO, "VM entry failed (reason {:#x})", run.fail_entry.hardware_entry_failure_reason);
    default:
      return fail_errno(EPROTO, "unexpected exit reason {}", run.exit_reason);
  }
}

Result<void> Machine::run_vcpu(vm::Vcpu& vcpu, const std::function<Result<ExitAction>(kvm_run&)>& handle) {
  // An unexpected stop is one line for the user; the vCPU's registers go to
  // the log for whoever debugs it.
  auto stopped = [&](const Error& e) -> Result<void> {
    log_->warn("vCPU registers at the stop ({}):\n{}", e.message, vcpu.register_dump());
    return fail(e);
  };
  Watchdog watchdog;
  for (;;) {
    const auto ran = vcpu.run();
    // Checked after every exit, not only on the watchdog's EINTR: a guest that
    // keeps exiting never sees KVM_RUN interrupted.
    if (auto ok = check_deadline("the guest ran"); !ok)
      return stopped(Error(fmt::format("{}; it did not finish", ok.error().message), ETIMEDOUT));
    if (!ran) {
      if (ran.error().err == EINTR || ran.error().err == EAGAIN) continue;
      return stopped(ran.error());
    }
    ++report_.exits.total;
    auto action = handle(vcpu.state());
    if (!action) return stopped(action.error());
    if (*action == ExitAction::finished) return {};
  }
}

RunReport Machine::finish() {
  if (!opts_.bench) host_checks();
  report_.refusals = 0;
  for (auto& g : gpus_) {
    report_.refusals += g.mapper->refusals();
    // Every BAR that decodes nothing at the end, and why (R21, R23).
    for (const auto& u : g.mapper->unplaced()) {
      ++report_.unplaced;
      line(fmt::format("note {} BAR{} is not mapped: {}", g.name, u.index, u.reason));
    }
  }
  report_.slots_live = slots_.live();
  report_.phys_bits = kvm_.phys_bits();
  report_.host_phys_bits = kvm_.shape().host_limit_bits;
  return report_;
}

std::uint64_t bench_guest_mem(unsigned bench_mib) {
  return *align_up(NVG_BENCH_RAM_OFFSET + (std::uint64_t{bench_mib} << 20), guest_mem_limits().granule);
}

std::string_view arch_name() { return make_platform()->arch(); }

GuestMemLimits guest_mem_limits() { return make_platform()->mem_limits(); }

// The one run loop, for every architecture: the platform opens the VM and
// lays it out, the machine sets up RAM and the GPUs, the platform boots the
// vCPU and decodes its exits, the machine checks what the guest left.
Result<RunReport> run(const RunOptions& opts, const std::function<void(const std::string&)>& on_line) {
  const auto deadline = std::chrono::steady_clock::now() + opts.timeout;
  auto platform = make_platform();
  auto cpu = platform->check(opts);
  if (!cpu) return fail(cpu.error());
  auto kvm = platform->open_vm(opts);
  if (!kvm) return fail(kvm.error());
  Machine m(*kvm, opts, on_line, deadline, platform->memory_map(*kvm, opts));
  if (auto ok = m.setup(platform->boot_info_gpa()); !ok) return fail(ok.error());
  m.report().arch = platform->arch();
  m.report().cpu = *cpu;
  auto vcpu = platform->boot(m, *kvm);
  if (!vcpu) return fail(vcpu.error());
  auto ran = m.run_vcpu(*vcpu, [&](kvm_run& run) { return platform->exit(m, run); });
  if (!ran) return fail(ran.error());
  if (!opts.bench) platform->after(m, *vcpu);
  return m.finish();
}

}  // namespace nvgrace::runner
