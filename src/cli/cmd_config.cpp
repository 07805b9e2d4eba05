// `nvgrace config`: the emulated config space of a profile, after a sequence
// of guest writes, in the hex format of `lspci -xxxx` (R11-R15).
#include <array>
#include <cstdio>
#include <iostream>
#include <string>
#include <vector>

#include "command.hpp"
#include "nvgrace/devices/emulated.hpp"
#include "nvgrace/common/size.hpp"
#include "nvgrace/pciemu/hexdump.hpp"
#include "json.hpp"
#include "pci_names.hpp"

#include <nlohmann/json.hpp>

namespace nvgrace::cli {
namespace {

struct Access {
  std::size_t offset = 0;
  std::size_t width = 0;
  std::uint32_t value = 0;
};

// "OFFSET:WIDTH" or "OFFSET:WIDTH=VALUE"; numbers decimal or 0x-hex.
Result<Access> parse_access(std::string_view text, bool with_value) {
  const std::string_view orig = text;
  auto form = with_value ? "OFFSET:WIDTH=VALUE, e.g. 0x20:4=0xffffffff" : "OFFSET:WIDTH, e.g. 0x20:4";
  const auto colon = text.find(':');
  const auto eq = text.find('=');
  if (colon == std::string_view::npos || (with_value != (eq != std::string_view::npos)) ||
      (with_value && eq < colon))
    return fail("'{}' is not {}", orig, form);
  auto off = parse_size(text.substr(0, colon));
  auto width = parse_size(text.substr(colon + 1, with_value ? eq - colon - 1 : std::string_view::npos));
  if (!off || !width) return fail("'{}' is not {}", orig, form);
  if (*width != 1 && *width != 2 && *width != 4) return fail("'{}': width must be 1, 2 or 4", orig);
  Access a{static_cast<std::size_t>(*off), static_cast<std::size_t>(*width), 0};
  if (*off >= pciemu::ConfigSpace::kSize || pciemu::ConfigSpace::kSize - *off < *width)
    return fail("'{}': runs past the 4 KiB config space", orig);
  if (with_value) {
    auto v = parse_size(text.substr(eq + 1));
    if (!v) return fail("'{}': {}", orig, v.error().message);
    if (*width < 8 && *v >> (8 * *width) != 0) return fail("'{}': value does not fit in {} bytes", orig, *width);
    a.value = static_cast<std::uint32_t>(*v);
  }
  return a;
}

class ConfigCommand final : public Command {
 public:
  CLI::App* attach(CLI::App& app) override {
    cmd_ = app.add_subcommand("config", "Show an emulated GPU's config space after guest writes (lspci -xxxx format)");
    add_profile_option(cmd_, profile_, "Built-in emulated device")
        ->capture_default_str();
    cmd_->add_option("--write", writes_, "Guest config write OFFSET:WIDTH=VALUE, applied in order (repeatable)")
        ->type_name("W");
    cmd_->add_option("--read", reads_, "Print a guest config read OFFSET:WIDTH after the writes (repeatable)")
        ->type_name("R");
    cmd_->add_flag("--dump", dump_, "Print the config space as `lspci -xxxx` does (the default without --read)");
    cmd_->add_option("--slot", slot_, "PCI slot shown in the dump's device line, [[DDDD:]BB:]DD.F")
        ->type_name("SLOT")->capture_default_str();
    cmd_->add_flag("--json", json_, "Print the reads and the config space as JSON");
    return cmd_;
  }

  int run() override {
    if (auto slot = parse_slot(slot_); !slot) return usage_error("--slot: {}", slot.error().message);
    std::vector<Access> writes, reads;
    for (const auto& w : writes_) {
      auto a = parse_access(w, true);
      if (!a) return usage_error("--write: {}", a.error().message);
      writes.push_back(*a);
    }
    for (const auto& r : reads_) {
      auto a = parse_access(r, false);
      if (!a) return usage_error("--read: {}", a.error().message);
      reads.push_back(*a);
    }
    // The guest's view, as nvgrace serve serves it: the variant over the
    // emulated function (R11-R15).
    devices::EmulatedOptions eo;
    eo.profile = profile_;
    auto emu = devices::make_emulated_device(eo);
    if (!emu) return failure("config", "{}", emu.error().error.message);
    auto& dev = *emu->device;
    for (const auto& w : writes)
      if (auto ok = vfio::config_write(dev, ConfigOffset{static_cast<unsigned>(w.offset)}, w.width, w.value); !ok)
        return usage_error("--write: {}", ok.error().message);
    nlohmann::ordered_json jreads = nlohmann::ordered_json::array();
    for (const auto& r : reads) {
      auto v = vfio::config_read(dev, ConfigOffset{static_cast<unsigned>(r.offset)}, r.width);
      if (!v) return usage_error("--read: {}", v.error().message);
      if (json_)
        jreads.push_back({{"offset", r.offset}, {"width", r.width}, {"value", *v}});
      else
        std::cout << fmt::format("{:#05x}:{} = {:#0{}x}\n", r.offset, r.width, *v, 2 + 2 * r.width);
    }
    auto dump = vfio::config_dump(dev, pciemu::ConfigSpace::kSize);
    if (!dump) return failure("config", "reading the config space back: {}", dump.error().message);
    const auto& bytes = *dump;
    if (json_) {
      std::string hex;
      for (auto b : bytes) hex += fmt::format("{:02x}", b);
      nlohmann::ordered_json j{{"profile", profile_},
                               {"slot", slot_},
                               {"vendor_id", hex_id(pciemu::kNvidiaVendorId)},
                               {"device_id", hex_id(emu->gpu.profile.device_id)},
                               {"reads", std::move(jreads)},
                               {"config_space", hex}};
      std::cout << j.dump(2) << '\n';
    } else if (dump_ || reads.empty()) {
      std::cout << lspci_device_line(slot_, bytes) << '\n' << pciemu::lspci_hex_lines(bytes) << '\n';
    }
    return kExitOk;
  }

 private:
  CLI::App* cmd_ = nullptr;
  std::string profile_ = "gh200";
  std::vector<std::string> writes_, reads_;
  bool dump_ = false;
  std::string slot_ = "01:00.0";
  bool json_ = false;
};

}  // namespace

std::unique_ptr<Command> make_config_command() { return std::make_unique<ConfigCommand>(); }

}  // namespace nvgrace::cli
