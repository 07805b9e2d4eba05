// `nvgrace firmware`: the firmware description of an emulated Grace host
// (nvgrace-model.md R3, R37, R38) - the GPU memory properties as Grace
// firmware writes them, for a VMM's guest: an SSDT (ASL, or AML compiled by
// iasl) scoped to the VMM's device for the function, or a device-tree
// fragment for guests booted with a device tree. With `serve --view host`
// this is what lets the kernel's own nvgrace-gpu driver bind in a guest.
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <iostream>

#include "command.hpp"
#include "nvgrace/acpi/emit.hpp"
#include "nvgrace/common/size.hpp"
#include "nvgrace/pciemu/identity.hpp"
#include "nvgrace/pciemu/layout.hpp"

namespace nvgrace::cli {
namespace {

class FirmwareCommand final : public Command {
 public:
  CLI::App* attach(CLI::App& app) override {
    cmd_ = app.add_subcommand(
        "firmware",
        "Write the firmware description of an emulated Grace host's GPU: the _DSD memory properties as Grace "
        "firmware writes them (R38), as an SSDT for a q35 slot (asl, or aml through iasl) or as a device-tree "
        "fragment for arm64 virt guests (dts). See docs/emulated-host.md");
    add_profile_option(cmd_, profile_, "Built-in device whose memory is described")->capture_default_str();
    cmd_->add_option("--mem-base", mem_base_text_,
                     "Guest physical address of the GPU memory; the guest kernel must leave it alone (x86: "
                     "memmap=SIZE$BASE, which the asl header names; dts: a /reserved-memory no-map node)")
        ->type_name("ADDR")->required();
    cmd_->add_option("--mem-size", mem_size_text_, "GPU memory size instead of the profile's")->type_name("SIZE");
    cmd_->add_option("--pxm-start", pxm_start_, "First NUMA proximity domain of the GPU memory partitions")
        ->type_name("N")->capture_default_str();
    cmd_->add_option("--pxm-count", pxm_count_, "Number of GPU memory proximity domains")
        ->type_name("N")->capture_default_str();
    cmd_->add_option("--egm-base", egm_base_text_, "Extended GPU memory (EGM) base; with --egm-size")
        ->type_name("ADDR");
    cmd_->add_option("--egm-size", egm_size_text_, "EGM size; with --egm-base")->type_name("SIZE");
    cmd_->add_option("--egm-pxm", egm_pxm_, "EGM proximity domain; with --egm-base")->type_name("N");
    cmd_->add_option("--slot", slot_text_,
                     "The function's PCI address on the guest's bus: DEV or DEV.FN in hex, as QEMU's addr=")
        ->type_name("SLOT")->capture_default_str();
    cmd_->add_flag("--root-port", root_port_,
                   "The function is device 0 behind a PCIe root port at --slot (QEMU: -device pcie-root-port,addr=SLOT "
                   "and the GPU on its bus), as on Grace hosts: a PCIe endpoint with extended config space. The _DSD "
                   "goes on q35's device for the port's slot (\\_SB.PCI0.S<devfn>.S00); the DT node under the "
                   "port's node");
    cmd_->add_option("--acpi-device", acpi_device_,
                     "asl/aml: the function's ACPI device instead of q35's \\_SB.PCI0.S<devfn> for --slot")
        ->type_name("PATH");
    cmd_->add_option("--dsdt-revision", dsdt_revision_,
                     "asl/aml: the revision of the DSDT of the VMM the SSDT goes into. Linux (ACPICA) reads every AML "
                     "integer with the DSDT's width - 32 bits below revision 2, as QEMU's q35 DSDT (revision 1) has "
                     "it - so a base or size of 4 GiB or more is refused unless this is 2")
        ->check(CLI::Range(1, 255))->type_name("N")->capture_default_str();
    cmd_->add_option("--host-bridge", host_bridge_,
                     "dts: the PCIe host bridge's node (QEMU virt: /pcie@10000000)")
        ->type_name("NODE")->capture_default_str();
    cmd_->add_option("--format", format_, "asl, aml (compiled by iasl) or dts")
        ->check(CLI::IsMember({"asl", "aml", "dts"}))->type_name("FORMAT")->capture_default_str();
    cmd_->add_option("-o,--output", output_, "Write here instead of stdout (aml needs it unless stdout is a file)")
        ->type_name("FILE");
    return cmd_;
  }

  int run() override {
    auto base = parse_size(mem_base_text_);
    if (!base) return usage_error("--mem-base: {}", base.error().message);
    const auto profile = *pciemu::find_profile(profile_);
    std::uint64_t size = profile.mem_size;
    if (!mem_size_text_.empty()) {
      auto v = parse_size(mem_size_text_);
      if (!v) return usage_error("--mem-size: {}", v.error().message);
      size = *v;
    }
    const auto identity = *pciemu::find_identity(profile.device_id);
    // The description must make a device: the kernel driver would otherwise
    // fall back to plain vfio-pci (R5), and the user asked for a GPU.
    auto layout = pciemu::compute_layout({*base, size, pciemu::mig_bug_expected(identity.generation)});
    if (!layout) return usage_error("--mem-base/--mem-size: {}", layout.error().message);
    if (layout->passthrough) return usage_error("--mem-base/--mem-size: {}", layout->reason);

    acpi::GpuMemoryProperties props;
    props.mem_base_pa = *base;
    props.mem_size = size;
    props.mem_pxm_start = pxm_start_;
    props.mem_pxm_count = pxm_count_;
    const bool egm = !egm_base_text_.empty() || !egm_size_text_.empty() || egm_pxm_;
    if (egm) {
      if (egm_base_text_.empty() || egm_size_text_.empty()) return usage_error("--egm-base and --egm-size go together");
      auto eb = parse_size(egm_base_text_);
      if (!eb) return usage_error("--egm-base: {}", eb.error().message);
      auto es = parse_size(egm_size_text_);
      if (!es) return usage_error("--egm-size: {}", es.error().message);
      props.egm_base_pa = *eb;
      props.egm_size = *es;
      props.egm_pxm = egm_pxm_;
    }
    auto slot = parse_slot_fn(slot_text_);
    if (!slot) return usage_error("--slot: {}", slot.error().message);

    std::vector<std::string> comment{
        fmt::format("nvgrace firmware --profile {}: {} ({:04x}:{:04x}), {} of GPU memory at {:#x}", profile_,
                    identity.model, pciemu::kNvidiaVendorId, profile.device_id, format_size(size), *base),
        fmt::format("(usemem {}{}), for the function at slot {:x}.{:x} of the guest's PCI bus{}.",
                    format_size(layout->usemem ? layout->usemem->length : 0),
                    layout->resmem ? fmt::format(", resmem {}", format_size(layout->resmem->length)) : std::string(),
                    slot->first, slot->second, root_port_ ? ", behind a root port there" : "")};
    std::string text;
    if (format_ == "dts") {
      if (!cmd_->get_option("--acpi-device")->empty()) return usage_error("--acpi-device goes with asl or aml");
      comment.push_back("Append to the VMM's decompiled device tree (dtc -I dtb -O dts), compile with dtc and boot");
      comment.push_back("the guest with it (QEMU: -machine dumpdtb=FILE, then -dtb FILE).");
      auto t = acpi::emit_dts_fragment({host_bridge_, 0, slot->first, slot->second, root_port_, props, comment});
      if (!t) return usage_error("{}", t.error().message);
      text = std::move(*t);
    } else {
      if (!cmd_->get_option("--host-bridge")->empty()) return usage_error("--host-bridge goes with dts");
      acpi::Path device = root_port_ ? acpi::q35_root_port_device(slot->first, slot->second)
                                     : acpi::q35_slot_device(slot->first, slot->second);
      if (!acpi_device_.empty()) {
        auto p = acpi::parse_path(acpi_device_);
        if (!p) return usage_error("--acpi-device: '{}' is not an absolute ACPI path such as \\_SB.PCI0.S18",
                                   acpi_device_);
        device = *p;
      }
      comment.push_back(fmt::format("The guest kernel must leave the memory alone: on x86 boot it with "
                                    "memmap={:#x}${:#x}.",
                                    size, *base));
      auto t = acpi::emit_ssdt_asl({device, props, "NVGRACE", comment});
      if (!t) return usage_error("--acpi-device: {}", t.error().message);
      if (dsdt_revision_ < 2)
        for (const auto& [flag, field] : {std::pair{"--mem-base", props.mem_base_pa}, std::pair{"--mem-size", props.mem_size},
                                          std::pair{"--egm-base", props.egm_base_pa},
                                          std::pair{"--egm-size", props.egm_size}})
          if (const std::uint64_t v = field.value_or(0); v > 0xFFFFFFFFu)
            return usage_error("{} {:#x} does not fit 32 bits, and a VMM whose DSDT is revision {} (QEMU's q35: 1) has "
                               "Linux read every AML integer as 32 bits (ACPICA takes the width from the DSDT): the "
                               "driver would see {:#x}. Keep the memory below 4 GiB, give --dsdt-revision 2 for a "
                               "VMM whose DSDT is, or use the device tree (--format dts)",
                               flag, v, dsdt_revision_, v & 0xFFFFFFFFu);
      text = std::move(*t);
    }
    if (format_ == "aml") {
      if (output_.empty() && ::isatty(STDOUT_FILENO)) return usage_error("--format aml is binary: give --output FILE");
      auto aml = acpi::compile_asl(text);
      if (!aml) return failure("firmware", "{}", aml.error().message);
      return write_out(std::string(aml->begin(), aml->end()));
    }
    return write_out(text);
  }

 private:
  // "3" or "3.0" or "1f.7": device (hex, <= 0x1f) and function (<= 7).
  static Result<std::pair<unsigned, unsigned>> parse_slot_fn(const std::string& text) {
    const auto dot = text.find('.');
    auto dev = parse_size("0x" + text.substr(0, dot));
    auto fn = dot == std::string::npos ? Result<std::uint64_t>(0) : parse_size(text.substr(dot + 1));
    if (text.empty() || !dev || !fn || *dev > 0x1f || *fn > 7 || text.substr(0, dot).empty())
      return fail("'{}' is not DEV or DEV.FN (hex device 0..1f, function 0..7), e.g. 3 or 3.0", text);
    return std::pair{static_cast<unsigned>(*dev), static_cast<unsigned>(*fn)};
  }

  int write_out(const std::string& bytes) {
    if (output_.empty()) {
      std::cout << bytes << std::flush;
      return std::cout ? kExitOk : failure("firmware", "cannot write to stdout");
    }
    std::ofstream f(output_, std::ios::binary | std::ios::trunc);
    if (!f || !f.write(bytes.data(), static_cast<std::streamsize>(bytes.size())) || !f.flush())
      return failure("firmware", "cannot write {}: {}", output_, std::strerror(errno));
    return kExitOk;
  }

  CLI::App* cmd_ = nullptr;
  std::string profile_ = "gh200";
  std::string mem_base_text_, mem_size_text_;
  std::uint64_t pxm_start_ = 16, pxm_count_ = 8;
  std::string egm_base_text_, egm_size_text_;
  std::optional<std::uint64_t> egm_pxm_;
  std::string slot_text_ = "3";
  std::string acpi_device_;
  bool root_port_ = false;
  unsigned dsdt_revision_ = 1;
  std::string host_bridge_ = "/pcie@10000000";
  std::string format_ = "asl";
  std::string output_;
};

}  // namespace

std::unique_ptr<Command> make_firmware_command() { return std::make_unique<FirmwareCommand>(); }

}  // namespace nvgrace::cli
