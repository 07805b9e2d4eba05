// The arm64 machine, laid out like QEMU's virt where it can be: RAM at 1 GiB,
// a report page at 0x09000000, the high ECAM at 256 GiB + 256 MiB and the
// 64-bit BAR window after it, naturally aligned and sized from the guest plan
// (R25); the VM's IPA space sized to cover all of it (R32). The vCPU gets
// PSCI 0.2 (the guest powers off with SYSTEM_OFF), SVE with the CPU model's
// vector lengths (R34) and the model's ID registers (R35, R36); no interrupt
// controller, nothing here needs one.
#include <linux/kvm.h>

#include <algorithm>
#include <bit>
#include <cstring>
#include <optional>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "nvgrace/guest/aarch64/layout.h"
#include "nvgrace/common/checked.hpp"
#include "nvgrace/common/size.hpp"
#include "nvgrace/pciemu/emulated.hpp"
#include "nvgrace/plan/guest_plan.hpp"
#include "nvgrace/runner/platform.hpp"
#include "nvgrace/vm/aarch64/vcpu.hpp"

extern "C" const std::uint8_t nvgrace_guest_image[];
extern "C" const std::uint8_t nvgrace_guest_image_end[];

namespace nvgrace::runner {
namespace {

namespace arm = vm::aarch64;
namespace cpu = nvgrace::cpu;

constexpr std::uint64_t kReportSize = 0x1000;

// The ID registers the guest reads, in protocol order (guest/protocol.h).
struct GuestIdReg {
  nvg_idreg index;
  const char* name;
  unsigned op0, op1, crn, crm, op2;
};
constexpr GuestIdReg kGuestIdRegs[] = {
    {NVG_IDREG_MIDR, "MIDR_EL1", 3, 0, 0, 0, 0},          {NVG_IDREG_PFR0, "ID_AA64PFR0_EL1", 3, 0, 0, 4, 0},
    {NVG_IDREG_PFR1, "ID_AA64PFR1_EL1", 3, 0, 0, 4, 1},   {NVG_IDREG_PFR2, "ID_AA64PFR2_EL1", 3, 0, 0, 4, 2},
    {NVG_IDREG_ZFR0, "ID_AA64ZFR0_EL1", 3, 0, 0, 4, 4},   {NVG_IDREG_SMFR0, "ID_AA64SMFR0_EL1", 3, 0, 0, 4, 5},
    {NVG_IDREG_DFR0, "ID_AA64DFR0_EL1", 3, 0, 0, 5, 0},   {NVG_IDREG_ISAR0, "ID_AA64ISAR0_EL1", 3, 0, 0, 6, 0},
    {NVG_IDREG_ISAR1, "ID_AA64ISAR1_EL1", 3, 0, 0, 6, 1}, {NVG_IDREG_ISAR2, "ID_AA64ISAR2_EL1", 3, 0, 0, 6, 2},
    {NVG_IDREG_ISAR3, "ID_AA64ISAR3_EL1", 3, 0, 0, 6, 3}, {NVG_IDREG_MMFR0, "ID_AA64MMFR0_EL1", 3, 0, 0, 7, 0},
    {NVG_IDREG_MMFR1, "ID_AA64MMFR1_EL1", 3, 0, 0, 7, 1}, {NVG_IDREG_MMFR2, "ID_AA64MMFR2_EL1", 3, 0, 0, 7, 2},
    {NVG_IDREG_MMFR3, "ID_AA64MMFR3_EL1", 3, 0, 0, 7, 3}, {NVG_IDREG_MMFR4, "ID_AA64MMFR4_EL1", 3, 0, 0, 7, 4},
};
static_assert(std::size(kGuestIdRegs) == NVG_IDREG_COUNT);

constexpr std::uint64_t sysreg_id(const GuestIdReg& r) {
  return KVM_REG_ARM64 | KVM_REG_SIZE_U64 | KVM_REG_ARM64_SYSREG | std::uint64_t{r.op0} << 14 |
         std::uint64_t{r.op1} << 11 | std::uint64_t{r.crn} << 7 | std::uint64_t{r.crm} << 3 | r.op2;
}

std::uint64_t next_pow2(std::uint64_t v) { return v <= 1 ? 1 : std::uint64_t{1} << (64 - std::countl_zero(v - 1)); }

// The 64-bit window: the guest plan's highmem-mmio-size (R25), grown to a
// power of two that also holds one more of the largest BAR, which the guest
// moves BAR4 into; placed after the ECAM, aligned to its size as QEMU virt
// places it.
struct Window {
  std::uint64_t base = 0, size = 0, plan_size = 0;
};
Result<Window> plan_window(const RunOptions& opts) {
  std::vector<std::vector<pciemu::GuestBar>> gpus;
  std::uint64_t packed = 0, largest = 0;
  std::vector<std::uint64_t> sizes;
  for (unsigned i = 0; i < opts.count; ++i) {
    auto emu = pciemu::make_emulated_gpu(opts.profile, i);
    if (!emu) return fail(emu.error());
    for (const auto& b : emu->bars) sizes.push_back(b.size);
    gpus.push_back(emu->bars);
  }
  auto plan = plan::plan_guest(gpus, 1);
  if (!plan) return fail(plan.error());
  // The guest packs every BAR largest first, naturally aligned (checks.c).
  std::sort(sizes.rbegin(), sizes.rend());
  for (auto s : sizes) {
    packed = *align_up(packed, s) + s;
    largest = std::max(largest, s);
  }
  Window w;
  w.plan_size = plan->highmem_mmio_size;
  w.size = std::max(w.plan_size, next_pow2(*align_up(packed, largest) + largest));
  w.base = *align_up(NVG_ECAM_BASE + NVG_ECAM_SIZE, w.size);
  return w;
}

// Translation tables for the guest's first instructions (4 KiB granule,
// 48-bit VA): RAM write-back, the report page device memory; the guest adds
// the rest (aarch64/arch.c).
void build_boot_state(Machine& m, std::uint64_t ram_size) {
  constexpr std::uint64_t kTable = 3, kBlockWb = 1 | (NVG_MAIR_WB << 2) | (3u << 8) | (1u << 10);
  constexpr std::uint64_t kBlockDevice = 1 | (NVG_MAIR_DEVICE << 2) | (1u << 10) | (3ull << 53);
  auto table = [&](std::uint64_t gpa) { return m.guest<std::uint64_t>(GuestPhysAddr{gpa}); };
  table(NVG_PT_L0_ADDR)[0] = NVG_PT_L1_LOW_ADDR | kTable;
  table(NVG_PT_L1_LOW_ADDR)[0] = NVG_PT_L2_DEV_ADDR | kTable;
  table(NVG_PT_L1_LOW_ADDR)[1] = NVG_PT_L2_RAM_ADDR | kTable;
  table(NVG_PT_L2_DEV_ADDR)[NVG_REPORT_BASE >> 21] = NVG_REPORT_BASE | kBlockDevice;
  for (std::uint64_t off = 0; off < ram_size; off += 2 * MiB)
    table(NVG_PT_L2_RAM_ADDR)[off >> 21] = (NVG_RAM_BASE + off) | kBlockWb;
  const auto image = static_cast<std::size_t>(nvgrace_guest_image_end - nvgrace_guest_image);
  std::memcpy(m.guest<std::uint8_t>(GuestPhysAddr{NVG_LOAD_ADDR}), nvgrace_guest_image, image);
}

// After the guest powered off: what it read with MRS against the model and
// against KVM, and the Z register it filled (R34-R36).
void cpu_checks(Machine& m, const vm::Vcpu& vcpu, const arm::AppliedModel& a) {
  const auto& info = m.boot_info().cpu;
  if (!info.idregs_read) {
    m.host_check(false, "cpu the guest left no ID registers to check");
    return;
  }
  // Every field the model sets reads as the model's value in the guest.
  for (const auto& g : kGuestIdRegs) {
    const std::uint64_t seen = info.idreg[g.index];
    if (g.index == NVG_IDREG_MIDR) {
      if (a.model.midr)
        m.host_check(seen == *a.model.midr, fmt::format("cpu MIDR_EL1 reads {:#x} in the guest, the model's {:#x}",
                                                        seen, *a.model.midr));
      continue;
    }
    const auto it = a.model.regs.find(g.name);
    if (it == a.model.regs.end()) continue;
    const auto [value, mask] = it->second;
    std::string wrong;
    unsigned fields = 0;
    for (const auto* f : a.model.set_fields) {
      if (f->reg != g.name) continue;
      ++fields;
      if (f->extract(seen) != f->extract(value))
        wrong += fmt::format(" {}={:#x} (model {:#x})", f->name, f->extract(seen), f->extract(value));
    }
    m.host_check((seen & mask) == (value & mask),
                 wrong.empty() ? fmt::format("cpu {} reads {:#x} in the guest: {}'s {} field(s) (R36)", g.name,
                                             seen, a.model.name, fields)
                               : fmt::format("cpu {} reads {:#x} in the guest, fields differ:{}", g.name, seen, wrong));
  }
  // What the guest read is what KVM reports for the vCPU.
  std::string differ;
  for (const auto& g : kGuestIdRegs) {
    auto kvm_value = arm::get_reg(vcpu, sysreg_id(g));
    const std::uint64_t k = kvm_value ? *kvm_value : 0;  // ENOENT: unknown to this kernel, reads as 0
    if (kvm_value || kvm_value.error().err == ENOENT) {
      if (k != info.idreg[g.index]) differ += fmt::format(" {} guest {:#x} KVM {:#x}", g.name, info.idreg[g.index], k);
    } else {
      differ += fmt::format(" {} unreadable: {}", g.name, kvm_value.error().message);
    }
  }
  m.host_check(differ.empty(), differ.empty()
                                   ? fmt::format("cpu the guest's {} ID registers (MRS) are what KVM_GET_ONE_REG reports",
                                                 std::size(kGuestIdRegs))
                                   : fmt::format("cpu the guest's ID registers differ from KVM's:{}", differ));
  // R34: the Z register the guest filled, read through KVM.
  if (info.sve_vl_bytes) {
    if (info.zreg != 7) {
      m.host_check(false, "cpu the guest did not fill Z7 (see its SVE lines)");
      return;
    }
    auto z = arm::get_zreg(vcpu, 7);
    unsigned bad = 0;
    if (z)
      for (unsigned i = 0; i < 256; ++i) bad += (*z)[i] != (i < info.sve_vl_bytes ? nvg_zreg_byte(i) : 0);
    m.host_check(z && bad == 0,
                 z ? fmt::format("cpu Z7 read through KVM_GET_ONE_REG holds the guest's pattern in its {} bytes, "
                                 "zeros past them (R34){}",
                                 info.sve_vl_bytes, bad ? fmt::format(": {} bytes differ", bad) : "")
                   : fmt::format("cpu Z7 unreadable: {}", z.error().message));
  }
}

class Arm64Platform final : public Platform {
 public:
  std::string_view arch() const override { return "aarch64"; }
  GuestMemLimits mem_limits() const override { return {32ull << 20, NVG_MAX_RAM, 2ull << 20}; }

  Result<std::string> check(const RunOptions& opts) override {
    auto model = cpu::resolve(opts.cpu);
    if (!model) return fail_errno(EINVAL, "--cpu: {}", model.error().message);
    model_ = std::move(*model);
    return model_->spec;
  }

  // R32: an IPA space that covers RAM, the ECAM and the guest plan's window.
  Result<vm::Kvm> open_vm(const RunOptions& opts) override {
    auto window = plan_window(opts);
    if (!window) return fail(window.error());
    window_ = *window;
    auto kvm = vm::Kvm::open(window_.base + window_.size);
    if (!kvm)
      return fail(kvm.error().context(fmt::format("{} x {}: RAM at {:#x}, ECAM at {:#x}, a {} 64-bit window at {:#x}",
                                                  opts.count, opts.profile, NVG_RAM_BASE, NVG_ECAM_BASE,
                                                  format_size(window_.size), window_.base)));
    return kvm;
  }

  MemoryMap memory_map(const vm::Kvm&, const RunOptions&) const override {
    MemoryMap map;
    map.ram_base = GuestPhysAddr{NVG_RAM_BASE};
    map.ecam_base = GuestPhysAddr{NVG_ECAM_BASE};
    map.ecam_size = NVG_ECAM_SIZE;
    map.mmio64_base = GuestPhysAddr{window_.base};
    map.mmio64_limit = GuestPhysAddr{window_.base + window_.size};
    map.fixed_mmio = {{GuestPhysAddr{NVG_REPORT_BASE}, kReportSize, "report page"}};
    return map;
  }

  GuestPhysAddr boot_info_gpa() const override { return GuestPhysAddr{NVG_BOOT_INFO_ADDR}; }

  Result<vm::Vcpu> boot(Machine& m, vm::Kvm& kvm) override {
    const auto& opts = m.options();
    const auto& model = *model_;
    build_boot_state(m, opts.guest_mem);
    // MIDR_EL1 is writable only if asked for before the vCPU exists.
    const bool midr_writable = model.midr ? arm::enable_writable_midr(kvm) : false;
    auto vcpu = vm::Vcpu::create(kvm, 0);
    if (!vcpu) return fail(vcpu.error());
    const bool sve = arm::host_has_sve(kvm) && !(model.sve && arm::max_vl_bytes(*model.sve) == 0);
    if (auto ok = arm::init(kvm, *vcpu, sve); !ok) return fail(ok.error());
    auto applied = arm::apply_model(kvm, *vcpu, model, midr_writable, sve);
    if (!applied) return fail(applied.error());
    if (auto ok = arm::set_reg(*vcpu, arm::reg_pc(), NVG_LOAD_ADDR); !ok) return fail(ok.error());
    if (auto ok = arm::set_reg(*vcpu, arm::reg_x(0), NVG_BOOT_INFO_ADDR); !ok) return fail(ok.error());
    auto& bi = m.boot_info();
    bi.cpu.sve_vl_bytes = applied->vls ? arm::max_vl_bytes(*applied->vls) : 0;

    m.line(fmt::format("note vm IPA {} bits of the host's {} (R32): RAM {} at {:#x}, ECAM at {:#x}, 64-bit window {} "
                       "at {:#x} (the guest plan's highmem-mmio-size {}{})",
                       kvm.phys_bits(), kvm.shape().host_limit_bits, format_size(opts.guest_mem), NVG_RAM_BASE,
                       NVG_ECAM_BASE, format_size(window_.size), window_.base, format_size(window_.plan_size),
                       window_.size > window_.plan_size ? ", doubled to hold the BAR4 move" : ""));
    unsigned changed = 0;
    for (const auto& c : applied->checks) changed += c.verdict == cpu::Verdict::set && !c.field.empty();
    m.line(fmt::format("note cpu {}: {} ID-register field(s) set by the model, {} of them changed from the host's, {} "
                       "register(s) written; SVE {}; MIDR_EL1 {}",
                       model.spec, model.set_fields.size(), changed, applied->written.size(),
                       applied->vls ? arm::format_vls(*applied->vls) + " bits" : std::string("off"),
                       model.midr ? fmt::format("{:#x}", *model.midr) : "the host's"));
    const auto pfnmap = arm::cacheable_pfnmap(kvm);
    m.line(fmt::format("note R33 KVM_CAP_ARM_CACHEABLE_PFNMAP_SUPPORTED = {} on Linux {}: {}", pfnmap.answer,
                       pfnmap.kernel, pfnmap.meaning));
    applied_ = std::move(*applied);
    return vcpu;
  }

  Result<ExitAction> exit(Machine& m, kvm_run& run) override {
    const bool trace = m.options().trace;
    auto& log = *m.log();
    switch (run.exit_reason) {
      case KVM_EXIT_MMIO: {
        const std::uint64_t gpa = run.mmio.phys_addr;
        if (trace) log.info("exit MMIO {} {:#x} len {}", run.mmio.is_write ? "write" : "read", gpa, run.mmio.len);
        if (gpa >= NVG_REPORT_BASE && gpa < NVG_REPORT_BASE + kReportSize) {
          ++m.report().exits.mmio;
          std::uint32_t v = 0;
          std::memcpy(&v, run.mmio.data, std::min<unsigned>(run.mmio.len, 4));
          const auto off = gpa - NVG_REPORT_BASE;
          if (!run.mmio.is_write) std::memset(run.mmio.data, 0, run.mmio.len);
          else if (off == NVG_REPORT_CHAR) m.report_char(static_cast<char>(v));
          else if (off == NVG_REPORT_DONE) m.report_done(v);
          return ExitAction::resume;
        }
        m.mmio(GuestPhysAddr{gpa}, run.mmio.data, run.mmio.len, run.mmio.is_write != 0);
        return ExitAction::resume;
      }
      case KVM_EXIT_SYSTEM_EVENT:
        if (trace) log.info("exit SYSTEM_EVENT type {}", run.system_event.type);
        if (run.system_event.type != KVM_SYSTEM_EVENT_SHUTDOWN)
          return fail_errno(EPROTO, "the guest asked for system event {} (not SYSTEM_OFF)", run.system_event.type);
        if (!m.done()) return fail_errno(EPROTO, "the guest powered off before reporting done");
        return ExitAction::finished;
      default:
        return Machine::unexpected_exit(run);
    }
  }

  void after(Machine& m, const vm::Vcpu& vcpu) override { cpu_checks(m, vcpu, *applied_); }

 private:
  std::optional<cpu::ResolvedModel> model_;
  Window window_;
  std::optional<arm::AppliedModel> applied_;
};

}  // namespace

std::unique_ptr<Platform> make_platform() { return std::make_unique<Arm64Platform>(); }

}  // namespace nvgrace::runner
