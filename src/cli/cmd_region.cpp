// `nvgrace region`: peek and poke the regions of one emulated variant device
// as VFIO would serve them (R14, R16-R20). Steps run in command-line order.
#include <cstring>
#include <iostream>
#include <string>
#include <vector>

#include "command.hpp"
#include "nvgrace/devices/emulated.hpp"
#include "nvgrace/common/size.hpp"
#include "nvgrace/vfio/variant/variant.hpp"
#include "json.hpp"

#include <nlohmann/json.hpp>

namespace nvgrace::cli {
namespace {

constexpr std::uint64_t kMaxReadLen = 64 * KiB;

struct Step {
  enum Kind { read, write, reset } kind = read;
  unsigned index = 0;
  std::uint64_t offset = 0;
  std::uint64_t length = 0;
  std::vector<std::uint8_t> data;
  std::string text;
};

Result<unsigned> parse_index(std::string_view s, std::string_view orig) {
  if (s.size() != 1 || s[0] < '0' || s[0] > '8') return fail("'{}': region index must be 0..8", orig);
  return static_cast<unsigned>(s[0] - '0');
}

// IDX:OFFSET=HEXBYTES
Result<Step> parse_write(std::string_view text) {
  const auto colon = text.find(':');
  const auto eq = text.find('=');
  if (colon == std::string_view::npos || eq == std::string_view::npos || eq < colon)
    return fail("'{}' is not IDX:OFFSET=HEXBYTES, e.g. 4:0x1000=deadbeef", text);
  Step s{Step::write, 0, 0, 0, {}, std::string(text)};
  auto idx = parse_index(text.substr(0, colon), text);
  if (!idx) return fail(idx.error());
  s.index = *idx;
  auto off = parse_size(text.substr(colon + 1, eq - colon - 1));
  if (!off) return fail("'{}': {}", text, off.error().message);
  s.offset = *off;
  std::string_view hex = text.substr(eq + 1);
  if (hex.starts_with("0x")) hex.remove_prefix(2);
  if (hex.empty() || hex.size() % 2 != 0) return fail("'{}': HEXBYTES needs an even number of hex digits", text);
  for (std::size_t i = 0; i < hex.size(); i += 2) {
    auto byte = parse_hex16(hex.substr(i, 2));
    if (!byte) return fail("'{}': '{}' is not a hex byte", text, hex.substr(i, 2));
    s.data.push_back(static_cast<std::uint8_t>(*byte));
  }
  return s;
}

// IDX:OFFSET:LEN
Result<Step> parse_read(std::string_view text) {
  const auto c1 = text.find(':');
  const auto c2 = c1 == std::string_view::npos ? c1 : text.find(':', c1 + 1);
  if (c2 == std::string_view::npos) return fail("'{}' is not IDX:OFFSET:LEN, e.g. 4:0x17bffffff8:16", text);
  Step s{Step::read, 0, 0, 0, {}, std::string(text)};
  auto idx = parse_index(text.substr(0, c1), text);
  if (!idx) return fail(idx.error());
  s.index = *idx;
  auto off = parse_size(text.substr(c1 + 1, c2 - c1 - 1));
  auto len = parse_size(text.substr(c2 + 1));
  if (!off) return fail("'{}': {}", text, off.error().message);
  if (!len) return fail("'{}': {}", text, len.error().message);
  if (*len > kMaxReadLen) return fail("'{}': at most {} bytes per read", text, kMaxReadLen);
  s.offset = *off;
  s.length = *len;
  return s;
}

void print_hex(std::uint64_t offset, std::span<const std::uint8_t> bytes) {
  for (std::size_t i = 0; i < bytes.size(); i += 16) {
    std::string line = fmt::format("  {:#014x}:", offset + i);
    for (std::size_t j = i; j < std::min(bytes.size(), i + 16); ++j) line += fmt::format(" {:02x}", bytes[j]);
    std::cout << line << '\n';
  }
}

class RegionCommand final : public Command {
 public:
  CLI::App* attach(CLI::App& app) override {
    cmd_ = app.add_subcommand("region", "Read and write an emulated GPU's VFIO regions, in order (R16-R20)");
    add_profile_option(cmd_, profile_, "Built-in emulated device")->capture_default_str();
    write_ = cmd_->add_option("--write", writes_, "Write IDX:OFFSET=HEXBYTES (repeatable)")->type_name("W");
    read_ = cmd_->add_option("--read", reads_, "Read IDX:OFFSET:LEN, at most 64 KiB, and print it in hex (repeatable)")
                ->type_name("R");
    reset_ = cmd_->add_flag("--reset", resets_, "Reset the device (R14, R20) at this point of the sequence (repeatable)");
    cmd_->add_option("--ready-after", ready_after_ms_, "Emulated GPU turns ready this many ms after open/reset (R20)")
        ->check(integer_in(0, 3600000, "milliseconds"))->type_name("MS")->capture_default_str();
    cmd_->add_option("--ready-timeout", ready_timeout_ms_, "Give up waiting for readiness after this many ms (R20)")
        ->check(integer_in(1, 3600000, "milliseconds"))->type_name("MS")->capture_default_str();
    cmd_->add_option("--ready-poll", ready_poll_ms_, "Poll readiness every this many ms (R20)")
        ->check(integer_in(1, 3600000, "milliseconds"))->type_name("MS")->capture_default_str();
    cmd_->add_option("--memory-file", memory_file_,
                     "Back device memory with this file (default: a memfd). A new file is created; an existing "
                     "one is used only when empty or already exactly the backing size")
        ->type_name("PATH");
    cmd_->add_flag("--json", json_, "Print the steps and their results as JSON");
    return cmd_;
  }

  int run() override {
    // Steps in the order given: CLI11 records the order of every occurrence.
    std::vector<Step> steps;
    std::size_t wi = 0, ri = 0;
    for (const CLI::Option* opt : cmd_->parse_order()) {
      if (opt == write_) {
        auto s = parse_write(writes_.at(wi++));
        if (!s) return usage_error("--write: {}", s.error().message);
        steps.push_back(std::move(*s));
      } else if (opt == read_) {
        auto s = parse_read(reads_.at(ri++));
        if (!s) return usage_error("--read: {}", s.error().message);
        steps.push_back(std::move(*s));
      } else if (opt == reset_) {
        steps.push_back({Step::reset, 0, 0, 0, {}, "--reset"});
      }
    }
    if (steps.empty()) return usage_error("give at least one --read, --write or --reset");

    devices::EmulatedOptions eo;
    eo.profile = profile_;
    if (!memory_file_.empty()) eo.memory_file = memory_file_;
    eo.timing.ready_after = std::chrono::milliseconds(ready_after_ms_);
    eo.ready = {std::chrono::milliseconds(ready_poll_ms_), std::chrono::milliseconds(ready_timeout_ms_)};
    auto emu = devices::make_emulated_device(eo);
    if (!emu) {
      if (emu.error().bad_size) return failure("region", "{}", emu.error().error.message);
      return failure("region", "{}: {}", memory_file_.empty() ? "memfd" : "--memory-file", emu.error().error.message);
    }
    const std::string backing = emu->memory;
    auto& dev = emu->device;

    nlohmann::ordered_json jsteps = nlohmann::ordered_json::array();
    if (!json_) std::cout << fmt::format("backing: {}\n", backing);
    int rc = kExitOk;
    for (const auto& s : steps) {
      if (s.kind == Step::reset) {
        dev->reset();
        if (json_) jsteps.push_back({{"op", "reset"}});
        else std::cout << "reset\n";
        continue;
      }
      const bool write = s.kind == Step::write;
      std::vector<std::uint8_t> buf = write ? s.data : std::vector<std::uint8_t>(s.length);
      const auto dropped_before = dev->dropped_writes();
      auto n = write ? dev->write(RegionIndex{s.index}, s.offset, buf) : dev->read(RegionIndex{s.index}, s.offset, buf);
      nlohmann::ordered_json j{{"op", write ? "write" : "read"}, {"region", s.index}, {"offset", s.offset},
                               {"requested", buf.size()}};
      if (!n) {
        if (json_) {
          j["error"] = {{"errno", errno_name(n.error().err)}, {"message", n.error().message}};
          jsteps.push_back(std::move(j));
        } else {
          fmt::print(stderr, "nvgrace: region: {} {}:{:#x}: {}: {}\n", write ? "write" : "read", s.index, s.offset,
                     errno_name(n.error().err), n.error().message);
        }
        rc = kExitFailure;
        break;
      }
      j["done"] = *n;
      if (write) {
        const auto dropped = dev->dropped_writes() - dropped_before;
        j["dropped"] = dropped;
        if (!json_)
          std::cout << fmt::format("write {}:{:#x}: {} of {} bytes{}\n", s.index, s.offset, *n, buf.size(),
                                   dropped ? fmt::format(", {} dropped in the unbacked tail (R17)", dropped) : "");
      } else {
        std::string hex;
        for (std::size_t i = 0; i < *n; ++i) hex += fmt::format("{:02x}", buf[i]);
        j["data"] = hex;
        if (!json_) {
          std::cout << fmt::format("read {}:{:#x}: {} of {} bytes\n", s.index, s.offset, *n, buf.size());
          print_hex(s.offset, std::span(buf).first(*n));
        }
      }
      jsteps.push_back(std::move(j));
    }
    if (json_)
      std::cout << nlohmann::ordered_json{{"profile", profile_}, {"backing", backing}, {"steps", std::move(jsteps)}}.dump(2)
                << '\n';
    return rc;
  }

 private:
  CLI::App* cmd_ = nullptr;
  CLI::Option* write_ = nullptr;
  CLI::Option* read_ = nullptr;
  CLI::Option* reset_ = nullptr;
  std::string profile_ = "gh200";
  std::vector<std::string> writes_, reads_;
  int resets_ = 0;
  long ready_after_ms_ = 0;
  long ready_timeout_ms_ = 30000;
  long ready_poll_ms_ = 1000;
  std::string memory_file_;
  bool json_ = false;
};

}  // namespace

std::unique_ptr<Command> make_region_command() { return std::make_unique<RegionCommand>(); }

}  // namespace nvgrace::cli
