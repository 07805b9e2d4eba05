// `nvgrace region`: peek and poke the regions of one emulated variant device
// as VFIO would serve them (R14, R16-R20). Steps run in command-line order.
#include <cstring>
#include <iostream>
#include <string>
#include <vector>

#include "command.hpp"
#include "nvgrace/pciemu/emulated.hpp"
#include "nvgrace/common/size.hpp"
#include "nvgrace/vfio/device.hpp"

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

std::string errno_name(int e) {
  const char* n = ::strerrorname_np(e);
  return n ? n : fmt::format("errno {}", e);
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
    write_ = cmd_->add_option("--write", writes_, "Write IDX:OFFSET=HEXBYTES (repeatable)");
    read_ = cmd_->add_option("--read", reads_, "Read IDX:OFFSET:LEN and print it in hex (repeatable)");
    reset_ = cmd_->add_flag("--reset", resets_, "Reset the device (R14, R20) at this point of the sequence (repeatable)");
    cmd_->add_option("--ready-after", ready_after_ms_, "Emulated GPU turns ready this many ms after open/reset (R20)")
        ->capture_default_str();
    cmd_->add_option("--ready-timeout", ready_timeout_ms_, "Give up waiting for readiness after this many ms")
        ->capture_default_str();
    cmd_->add_option("--ready-poll", ready_poll_ms_, "Poll readiness every this many ms")->capture_default_str();
    cmd_->add_option("--memory-file", memory_file_, "Back device memory with this file (default: a memfd)");
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

    auto gpu = pciemu::make_emulated_gpu(profile_, 0);
    if (!gpu) return usage_error("--profile: {}", gpu.error().message);
    auto backend = memory_file_.empty() ? vfio::make_memfd_backend(gpu->layout, "nvgrace-" + profile_)
                                        : vfio::make_file_backend(gpu->layout, memory_file_);
    if (!backend) return usage_error("{}: {}", memory_file_.empty() ? "memfd" : "--memory-file", backend.error().message);
    vfio::ReadinessOptions ready{std::chrono::milliseconds(ready_after_ms_), std::chrono::milliseconds(ready_poll_ms_),
                                 std::chrono::milliseconds(ready_timeout_ms_)};
    auto dev = vfio::VariantDevice::create(std::move(gpu->config), gpu->layout, std::move(*backend), ready);
    if (!dev) return usage_error("{}", dev.error().message);

    for (const auto& s : steps) {
      if (s.kind == Step::reset) {
        (*dev)->reset();
        std::cout << "reset\n";
        continue;
      }
      std::vector<std::uint8_t> buf = s.kind == Step::write ? s.data : std::vector<std::uint8_t>(s.length);
      const auto dropped_before = (*dev)->dropped_writes();
      auto n = s.kind == Step::write ? (*dev)->write(s.index, s.offset, buf) : (*dev)->read(s.index, s.offset, buf);
      if (!n) {
        fmt::print(stderr, "nvgrace: region {} {} at {:#x}: {}: {}\n", s.index, s.kind == Step::write ? "write" : "read",
                   s.offset, errno_name(n.error().err), n.error().message);
        return kExitFailure;
      }
      if (s.kind == Step::write) {
        const auto dropped = (*dev)->dropped_writes() - dropped_before;
        std::cout << fmt::format("write {}:{:#x}: {} of {} bytes{}\n", s.index, s.offset, *n, buf.size(),
                                 dropped ? fmt::format(", {} dropped in the unbacked tail (R17)", dropped) : "");
      } else {
        std::cout << fmt::format("read {}:{:#x}: {} of {} bytes\n", s.index, s.offset, *n, buf.size());
        print_hex(s.offset, std::span(buf).first(*n));
      }
    }
    return kExitOk;
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
};

}  // namespace

std::unique_ptr<Command> make_region_command() { return std::make_unique<RegionCommand>(); }

}  // namespace nvgrace::cli
