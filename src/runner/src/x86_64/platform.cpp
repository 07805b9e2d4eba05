// The x86-64 machine: RAM from 0, ECAM for bus 0 at 0xB0000000, the 64-bit
// BAR window from 1 TiB to the CPU's physical-address limit, configuration
// mechanism #1 and the report on I/O ports; the vCPU starts in long mode.
#include <linux/kvm.h>

#include <cstring>
#include <optional>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "nvgrace/guest/x86_64/layout.h"
#include "nvgrace/common/size.hpp"
#include "nvgrace/runner/platform.hpp"
#include "nvgrace/vm/x86_64/vcpu.hpp"

extern "C" const std::uint8_t nvgrace_guest_image[];
extern "C" const std::uint8_t nvgrace_guest_image_end[];

namespace nvgrace::runner {
namespace {

constexpr std::uint64_t kEcamSize = 1 * MiB;  // bus 0 only

// Configuration mechanism #1 (PCI Local Bus 3.0, section 3.2.2.3.2), the
// debug port the guest reports on, and the null port for the benchmark.
class PortIo {
 public:
  explicit PortIo(Machine& m) : m_(m) {}

  Result<void> exit(kvm_run& run) {
    ++m_.report().exits.io;
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
        const unsigned reg = (cf8_ & 0xFC) + (port - NVG_PORT_CONFIG_DATA);
        const unsigned devfn = (cf8_ >> 8) & 0xFF;
        const bool enabled = (cf8_ & 0x80000000u) && ((cf8_ >> 16) & 0xFF) == 0;
        if (out) {
          if (enabled) m_.cfg_write(devfn, reg, size, v);
        } else {
          const std::uint32_t r = enabled ? m_.cfg_read(devfn, reg, size) : 0xFFFFFFFF;
          std::memcpy(data, &r, size);
        }
      } else if (port == NVG_PORT_DEBUG && out) {
        for (unsigned b = 0; b < size; ++b) m_.report_char(static_cast<char>(data[b]));
      } else if (port == NVG_PORT_DONE && out) {
        m_.report_done(v);
      } else if (port >= NVG_PORT_NULL && port < NVG_PORT_NULL + 4) {  // the guest's arch_null_read
        if (!out) std::memset(data, 0, size);
      } else {
        return fail_errno(EPROTO, "unexpected port I/O: {} of {} bytes at port {:#x}", out ? "OUT" : "IN", size, port);
      }
    }
    return {};
  }

 private:
  Machine& m_;
  std::uint32_t cf8_ = 0;
};

// GDT and the first page tables: the first 1 GiB identity mapped with 2 MiB
// pages (no 1 GiB pages: they crash guests on this project's CI machine's
// paravirtual KVM), and the guest image.
void build_boot_state(Machine& m) {
  auto* gdt = m.guest<std::uint64_t>(GuestPhysAddr{NVG_GDT_ADDR});
  gdt[0] = 0;
  gdt[1] = 0x00AF9B000000FFFFull;  // 64-bit code (0x08)
  gdt[2] = 0x00CF93000000FFFFull;  // data (0x10)
  m.guest<std::uint64_t>(GuestPhysAddr{NVG_PML4_ADDR})[0] = NVG_PDPT_ADDR | 3;
  m.guest<std::uint64_t>(GuestPhysAddr{NVG_PDPT_ADDR})[0] = NVG_PD_ADDR | 3;
  for (std::uint64_t i = 0; i < 512; ++i) m.guest<std::uint64_t>(GuestPhysAddr{NVG_PD_ADDR})[i] = i * 2 * MiB | 0x83;
  const auto image = static_cast<std::size_t>(nvgrace_guest_image_end - nvgrace_guest_image);
  std::memcpy(m.guest<std::uint8_t>(GuestPhysAddr{NVG_LOAD_ADDR}), nvgrace_guest_image, image);
}

class X86Platform final : public Platform {
 public:
  std::string_view arch() const override { return "x86_64"; }
  GuestMemLimits mem_limits() const override { return {32ull << 20, NVG_ECAM_BASE, 2ull << 20}; }

  Result<std::string> check(const RunOptions& opts) override {
    if (opts.cpu != "host")
      return fail_errno(EINVAL, "--cpu {}: CPU models are for arm64 guests (R36); an x86 guest gets the CPUID KVM "
                                "supports, so only 'host' applies here",
                        opts.cpu);
    return std::string("host");
  }

  Result<vm::Kvm> open_vm(const RunOptions&) override { return vm::Kvm::open(); }

  MemoryMap memory_map(const vm::Kvm& kvm, const RunOptions&) const override {
    MemoryMap map;
    map.ram_base = GuestPhysAddr{NVG_RAM_BASE};
    map.ecam_base = GuestPhysAddr{NVG_ECAM_BASE};
    map.ecam_size = kEcamSize;
    map.mmio64_base = GuestPhysAddr{NVG_MMIO64_BASE};
    map.mmio64_limit = GuestPhysAddr{std::uint64_t{1} << kvm.phys_bits()};
    return map;
  }

  GuestPhysAddr boot_info_gpa() const override { return GuestPhysAddr{NVG_BOOT_INFO_ADDR}; }

  Result<vm::Vcpu> boot(Machine& m, vm::Kvm& kvm) override {
    build_boot_state(m);
    auto vcpu = vm::Vcpu::create(kvm, 0);
    if (!vcpu) return fail(vcpu.error());
    const vm::x86_64::LongModeStart start{NVG_PML4_ADDR, NVG_GDT_ADDR, 3 * 8 - 1, NVG_LOAD_ADDR, NVG_STACK_TOP,
                                          NVG_BOOT_INFO_ADDR};
    if (auto ok = vm::x86_64::start_long_mode(kvm, *vcpu, start); !ok) return fail(ok.error());
    ports_.emplace(m);
    return vcpu;
  }

  Result<ExitAction> exit(Machine& m, kvm_run& run) override {
    const bool trace = m.options().trace;
    auto& log = *m.log();
    switch (run.exit_reason) {
      case KVM_EXIT_IO:
        if (trace)
          log.info("exit IO {} port {:#x} size {}", run.io.direction == KVM_EXIT_IO_OUT ? "out" : "in", run.io.port,
                   run.io.size);
        if (auto ok = ports_->exit(run); !ok) return fail(ok.error());
        return ExitAction::resume;
      case KVM_EXIT_MMIO:
        if (trace)
          log.info("exit MMIO {} {:#x} len {}", run.mmio.is_write ? "write" : "read", run.mmio.phys_addr,
                   run.mmio.len);
        m.mmio(GuestPhysAddr{run.mmio.phys_addr}, run.mmio.data, run.mmio.len, run.mmio.is_write != 0);
        return ExitAction::resume;
      case KVM_EXIT_HLT:
        if (trace) log.info("exit HLT");
        if (!m.done()) return fail_errno(EPROTO, "the guest halted before reporting done");
        return ExitAction::finished;
      case KVM_EXIT_SHUTDOWN:
        return fail_errno(EPROTO, "the guest shut down (triple fault)");
      default:
        return Machine::unexpected_exit(run);
    }
  }

 private:
  std::optional<PortIo> ports_;
};

}  // namespace

std::unique_ptr<Platform> make_platform() { return std::make_unique<X86Platform>(); }

}  // namespace nvgrace::runner
