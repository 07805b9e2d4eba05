#include "runner/runner.hpp"

#include <linux/kvm.h>
#include <linux/pci_regs.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/time.h>
#include <unistd.h>

#include <cstring>
#include <memory>

#include <fmt/format.h>

#include "nvgrace/pciemu/emulated.hpp"
#include "guest/protocol.h"
#include "log.hpp"
#include "nvgrace/common/checked.hpp"
#include "nvgrace/common/size.hpp"
#include "vm/kvm.hpp"
#include "vm/memslots.hpp"

extern "C" const std::uint8_t nvgrace_guest_image[];
extern "C" const std::uint8_t nvgrace_guest_image_end[];

namespace nvgrace::runner {
namespace {

constexpr std::uint64_t kEcamBase = 0xB0000000;  // bus 0 only: 1 MiB
constexpr std::uint64_t kEcamSize = 1 * MiB;
constexpr std::uint64_t kMmio64Base = 1 * TiB;   // where the guest assigns 64-bit BARs

struct Gpu {
  std::string name;
  unsigned devfn = 0;
  std::unique_ptr<vfio::VariantDevice> device;
  std::unique_ptr<vm::BarMapper> mapper;
  std::uint64_t tail_drops_before = 0;
};

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

class Machine {
 public:
  Machine(vm::Kvm kvm, const RunOptions& opts, const std::function<void(const std::string&)>& on_line,
          std::chrono::steady_clock::time_point deadline)
      : kvm_(std::move(kvm)), slots_(kvm_), opts_(opts), on_line_(on_line), log_(module_logger("run")),
        deadline_(deadline) {}

  Result<void> setup();
  Result<RunReport> loop();

 private:
  Result<void> setup_ram();
  Result<void> setup_gpus(nvg_boot_info& bi);
  std::uint32_t cfg_read(unsigned devfn, unsigned reg, unsigned len);
  void cfg_write(unsigned devfn, unsigned reg, unsigned len, std::uint32_t value);
  void sync_bars();
  Result<void> io(kvm_run& run);
  void mmio(std::uint64_t gpa, std::uint8_t* data, unsigned len, bool write);
  void line(const std::string& text);
  void host_checks();
  template <class T>
  T* guest(std::uint64_t gpa) { return reinterpret_cast<T*>(ram_.data() + gpa); }

  vm::Kvm kvm_;
  vm::MemslotManager slots_;
  RunOptions opts_;
  const std::function<void(const std::string&)>& on_line_;
  std::shared_ptr<spdlog::logger> log_;
  // --timeout bounds the whole run, set-up included: checked between GPUs
  // while setting up, after every exit, and on each watchdog tick.
  std::chrono::steady_clock::time_point deadline_;
  [[nodiscard]] Result<void> check_deadline(std::string_view doing) const;
  vfio::UniqueFd ram_fd_;
  vfio::Mapping ram_;
  vm::Memslot ram_slot_;
  pciemu::ConfigSpace host_bridge_;
  std::vector<Gpu> gpus_;
  std::uint32_t cf8_ = 0;
  std::string text_;
  bool done_ = false;
  RunReport report_;
};

Result<void> Machine::check_deadline(std::string_view doing) const {
  if (std::chrono::steady_clock::now() <= deadline_) return {};
  return fail_errno(ETIMEDOUT, "--timeout: {} s passed while {}", opts_.timeout.count(), doing);
}

Result<void> Machine::setup_ram() {
  static_assert(kMaxGuestMem <= kEcamBase);
  if (opts_.guest_mem < kMinGuestMem || opts_.guest_mem % kGuestMemGranule != 0 || opts_.guest_mem > kMaxGuestMem)
    return fail_errno(EINVAL, "guest memory {} is not a multiple of 2 MiB in {}..{}", format_size(opts_.guest_mem),
                      format_size(kMinGuestMem), format_size(kMaxGuestMem));
  // RAM is a memfd like device memory, so the benchmark compares like with like.
  ram_fd_ = vfio::UniqueFd(::memfd_create("nvgrace-guest-ram", MFD_CLOEXEC));
  if (!ram_fd_ || ::ftruncate(ram_fd_.get(), static_cast<off_t>(opts_.guest_mem)) != 0)
    return fail_errno(errno, "guest RAM memfd: {}", std::strerror(errno));
  auto map = vfio::Mapping::map(ram_fd_.get(), 0, opts_.guest_mem, vfio::huge_alignment(opts_.guest_mem),
                                PROT_READ | PROT_WRITE, MAP_SHARED | MAP_NORESERVE);
  if (!map) return fail(map.error().context("guest RAM"));
  ram_ = std::move(*map);
  auto slot = slots_.map(0, opts_.guest_mem, ram_.data());
  if (!slot) return fail(slot.error().context("guest RAM memslot"));
  ram_slot_ = std::move(*slot);

  // GDT: null, 64-bit code (0x08), data (0x10).
  auto* gdt = guest<std::uint64_t>(NVG_GDT_ADDR);
  gdt[0] = 0;
  gdt[1] = 0x00AF9B000000FFFFull;
  gdt[2] = 0x00CF93000000FFFFull;
  // Page tables: the first 1 GiB identity mapped with 2 MiB pages. No 1 GiB
  // pages: they crash guests on this machine's paravirtual KVM.
  guest<std::uint64_t>(NVG_PML4_ADDR)[0] = NVG_PDPT_ADDR | 3;
  guest<std::uint64_t>(NVG_PDPT_ADDR)[0] = NVG_PD_ADDR | 3;
  for (std::uint64_t i = 0; i < 512; ++i) guest<std::uint64_t>(NVG_PD_ADDR)[i] = i * 2 * MiB | 0x83;
  const auto image = static_cast<std::size_t>(nvgrace_guest_image_end - nvgrace_guest_image);
  std::memcpy(guest<std::uint8_t>(NVG_LOAD_ADDR), nvgrace_guest_image, image);
  return {};
}

Result<void> Machine::setup_gpus(nvg_boot_info& bi) {
  // Host bridge at 00.0 (Intel Q35 ids, class 0x0600), read-only.
  const pciemu::RegDef bridge[] = {{PCI_VENDOR_ID, 2, 0x8086, 0, 0, "Vendor"},
                                   {PCI_DEVICE_ID, 2, 0x29C0, 0, 0, "Device"},
                                   {PCI_CLASS_REVISION, 4, 0x06000000, 0, 0, "Class"}};
  if (auto ok = host_bridge_.define_all(bridge); !ok) return ok;
  const std::uint64_t limit = kvm_.phys_bits() >= 64 ? ~0ull : (std::uint64_t{1} << kvm_.phys_bits());
  for (unsigned i = 0; i < opts_.count; ++i) {
    if (auto ok = check_deadline(fmt::format("setting up gpu{}", i)); !ok) return ok;
    auto emu = pciemu::make_emulated_gpu(opts_.profile, i);
    if (!emu) return fail(emu.error());
    const auto name = fmt::format("gpu{}", i);
    auto backend = vfio::make_memfd_backend(emu->layout, "nvgrace-" + name);
    if (!backend) return fail(backend.error().context(name));
    const auto layout = emu->layout;
    const auto bars = emu->bars;
    auto dev = vfio::VariantDevice::create(std::move(emu->config), layout, std::move(*backend));
    if (!dev) return fail(dev.error().context(name));
    Gpu g;
    g.name = name;
    g.devfn = (i + 1) << 3;
    g.device = std::move(*dev);
    g.mapper = std::make_unique<vm::BarMapper>(name, slots_, *g.device, limit, log_);
    auto& plan = bi.gpu[i];
    plan.devfn = g.devfn;
    plan.device_id = emu->profile.device_id;
    plan.usemem_len = layout.usemem->length;
    plan.resmem_len = layout.resmem ? layout.resmem->length : 0;
    for (const auto& b : bars) plan.bar_size[b.index] = b.size;
    gpus_.push_back(std::move(g));
  }
  return {};
}

Result<void> Machine::setup() {
  if (opts_.count == 0 || opts_.count > NVG_MAX_GPUS) return fail_errno(EINVAL, "--count must be 1..{}", NVG_MAX_GPUS);
  if (auto ok = setup_ram(); !ok) return ok;
  auto& bi = *guest<nvg_boot_info>(NVG_BOOT_INFO_ADDR);
  bi = {};
  bi.magic = NVG_BOOT_MAGIC;
  bi.ngpus = opts_.count;
  bi.ecam_base = kEcamBase;
  bi.mmio64_base = kMmio64Base;
  bi.mmio64_limit = std::uint64_t{1} << kvm_.phys_bits();
  bi.ram_size = opts_.guest_mem;
  bi.mode = opts_.bench ? NVG_MODE_BENCH : NVG_MODE_CHECKS;
  bi.bench_mib = opts_.bench_mib;
  bi.bench_iters = opts_.bench_iters;
  if (opts_.bench && bench_guest_mem(opts_.bench_mib) > opts_.guest_mem)
    return fail_errno(EINVAL, "--guest-mem {} is too small for a {} MiB benchmark: give {} or more",
                      format_size(opts_.guest_mem), opts_.bench_mib, format_size(bench_guest_mem(opts_.bench_mib)));
  return setup_gpus(bi);
}

std::uint32_t Machine::cfg_read(unsigned devfn, unsigned reg, unsigned len) {
  ++report_.exits.config;
  if (devfn == 0) return host_bridge_.read(reg, len).value_or(0xFFFFFFFF);
  for (auto& g : gpus_) {
    if (g.devfn != devfn) continue;
    std::uint32_t v = 0;
    auto n = g.device->read(7, reg, std::span(reinterpret_cast<std::uint8_t*>(&v), len));
    return n ? v : 0xFFFFFFFF;
  }
  return len == 4 ? 0xFFFFFFFF : (1u << (8 * len)) - 1;  // no device: master abort
}

void Machine::cfg_write(unsigned devfn, unsigned reg, unsigned len, std::uint32_t value) {
  ++report_.exits.config;
  for (auto& g : gpus_) {
    if (g.devfn != devfn) continue;
    (void)g.device->write(7, reg, std::span(reinterpret_cast<const std::uint8_t*>(&value), len));
    sync_bars();  // R21: the memslots follow the config space
  }
}

void Machine::sync_bars() {
  const std::vector<vm::GuestRange> fixed{{0, opts_.guest_mem, "RAM"}, {kEcamBase, kEcamSize, "ECAM"}};
  for (auto& g : gpus_) {
    std::vector<vm::GuestRange> others;
    for (auto& o : gpus_)
      if (&o != &g) {
        auto r = o.mapper->ranges();
        others.insert(others.end(), r.begin(), r.end());
      }
    g.mapper->sync(fixed, others);
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

Result<void> Machine::io(kvm_run& run) {
  ++report_.exits.io;
  auto* data = reinterpret_cast<std::uint8_t*>(&run) + run.io.data_offset;
  const bool out = run.io.direction == KVM_EXIT_IO_OUT;
  const unsigned size = run.io.size;
  for (std::uint32_t i = 0; i < run.io.count; ++i, data += size) {
    std::uint32_t v = 0;
    std::memcpy(&v, data, size);
    const std::uint16_t port = run.io.port;
    if (port == NVG_PORT_CONFIG_ADDRESS && size == 4) {
      if (out) cf8_ = v;
      else std::memcpy(data, &cf8_, 4);
    } else if (port >= NVG_PORT_CONFIG_DATA && port < NVG_PORT_CONFIG_DATA + 4) {
      // Configuration mechanism #1 (PCI Local Bus 3.0, section 3.2.2.3.2).
      const unsigned reg = (cf8_ & 0xFC) + (port - NVG_PORT_CONFIG_DATA);
      const unsigned devfn = (cf8_ >> 8) & 0xFF;
      const bool enabled = (cf8_ & 0x80000000u) && ((cf8_ >> 16) & 0xFF) == 0;
      if (out) {
        if (enabled) cfg_write(devfn, reg, size, v);
      } else {
        const std::uint32_t r = enabled ? cfg_read(devfn, reg, size) : 0xFFFFFFFF;
        std::memcpy(data, &r, size);
      }
    } else if (port == NVG_PORT_DEBUG && out) {
      for (unsigned b = 0; b < size; ++b) {
        const char c = static_cast<char>(data[b]);
        if (c == '\n') {
          line(text_);
          text_.clear();
        } else {
          text_ += c;
        }
      }
    } else if (port == NVG_PORT_DONE && out) {
      report_.guest_failures = v;
      done_ = true;
    } else if (port == NVG_PORT_NULL) {
      if (!out) std::memset(data, 0, size);
    } else {
      return fail_errno(EPROTO, "unexpected port I/O: {} of {} bytes at port {:#x}", out ? "OUT" : "IN", size, port);
    }
  }
  return {};
}

void Machine::mmio(std::uint64_t gpa, std::uint8_t* data, unsigned len, bool write) {
  ++report_.exits.mmio;
  if (gpa >= kEcamBase && gpa - kEcamBase < kEcamSize) {
    const std::uint64_t off = gpa - kEcamBase;
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
      if (write) (void)g.device->write(c->index, gpa - c->base, buf);
      else if (!g.device->read(c->index, gpa - c->base, buf)) std::memset(data, 0xFF, len);
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
    auto check = [&](bool ok, const std::string& what) {
      if (!ok) ++report_.host_failures;
      line(fmt::format("{} host gpu{} {}", ok ? "ok  " : "FAIL", i, what));
    };
    const auto use = g.device->backend().range(pciemu::MemRole::usemem);
    auto at = [](const vfio::MemoryRange& r, std::uint64_t off) {
      std::uint64_t v = 0;
      std::memcpy(&v, r.data + off, 8);
      return v;
    };
    check(at(*use, 0x1000) == nvg_pattern(i, 4, 0x1000), "usemem holds the guest's pattern at +0x1000");
    check(at(*use, NVG_HOST_CHECK_USEMEM_OFFSET) == NVG_HOST_CHECK_VALUE(i, 4),
          fmt::format("usemem holds the value written through the moved BAR4 at +{:#x}", NVG_HOST_CHECK_USEMEM_OFFSET));
    if (layout.resmem) {
      const auto res = g.device->backend().range(pciemu::MemRole::resmem);
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

Result<RunReport> Machine::loop() {
  vm::LongModeStart start{NVG_PML4_ADDR, NVG_GDT_ADDR, 3 * 8 - 1, NVG_LOAD_ADDR, NVG_STACK_TOP, NVG_BOOT_INFO_ADDR};
  auto vcpu = vm::Vcpu::create(kvm_, start);
  if (!vcpu) return fail(vcpu.error());
  // An unexpected stop is one line for the user; the vCPU's registers go to
  // the log for whoever debugs it.
  auto stopped = [&](int err, std::string why) -> Result<RunReport> {
    log_->warn("vCPU registers at the stop ({}):\n{}", why, vcpu->register_dump());
    return fail_errno(err, "{}", why);
  };
  Watchdog watchdog;
  for (;;) {
    const auto ran = vcpu->run();
    // Checked after every exit, not only on the watchdog's EINTR: a guest that
    // keeps exiting never sees KVM_RUN interrupted.
    if (auto ok = check_deadline("the guest ran"); !ok)
      return stopped(ETIMEDOUT, fmt::format("{}; it did not finish", ok.error().message));
    if (!ran) {
      if (ran.error().err == EINTR || ran.error().err == EAGAIN) continue;
      return fail(ran.error());
    }
    ++report_.exits.total;
    auto& run = vcpu->state();
    switch (run.exit_reason) {
      case KVM_EXIT_IO:
        if (opts_.trace)
          log_->info("exit IO {} port {:#x} size {}", run.io.direction == KVM_EXIT_IO_OUT ? "out" : "in", run.io.port,
                     run.io.size);
        if (auto ok = io(run); !ok) return stopped(EPROTO, ok.error().message);
        break;
      case KVM_EXIT_MMIO:
        if (opts_.trace)
          log_->info("exit MMIO {} {:#x} len {}", run.mmio.is_write ? "write" : "read", run.mmio.phys_addr,
                     run.mmio.len);
        mmio(run.mmio.phys_addr, run.mmio.data, run.mmio.len, run.mmio.is_write != 0);
        break;
      case KVM_EXIT_HLT:
        if (opts_.trace) log_->info("exit HLT");
        if (!done_) return stopped(EPROTO, "the guest halted before reporting done");
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
        return report_;
      case KVM_EXIT_SHUTDOWN:
        return stopped(EPROTO, "the guest shut down (triple fault)");
      case KVM_EXIT_FAIL_ENTRY:
        return stopped(EPROTO, fmt::format("VM entry failed (reason {:#x})", run.fail_entry.hardware_entry_failure_reason));
      case KVM_EXIT_INTERNAL_ERROR:
        return stopped(EPROTO, fmt::format("KVM internal error (suberror {})", run.internal.suberror));
      default:
        return stopped(EPROTO, fmt::format("unexpected exit reason {}", run.exit_reason));
    }
  }
}

}  // namespace

std::uint64_t bench_guest_mem(unsigned bench_mib) {
  return *align_up(NVG_BENCH_RAM + (std::uint64_t{bench_mib} << 20), kGuestMemGranule);
}

Result<RunReport> run(const RunOptions& opts, const std::function<void(const std::string&)>& on_line) {
  const auto deadline = std::chrono::steady_clock::now() + opts.timeout;
  auto kvm = vm::Kvm::open();
  if (!kvm) return fail(kvm.error());
  auto m = std::make_unique<Machine>(std::move(*kvm), opts, on_line, deadline);
  if (auto ok = m->setup(); !ok) return fail(ok.error());
  return m->loop();
}

}  // namespace nvgrace::runner
