// `nvgrace run`: the built-in guest against emulated GPUs in a KVM VM - the
// proof that the fake BARs work end to end (R11-R13, R17, R20-R24).
#include <sys/resource.h>

#include <iostream>

#include "command.hpp"
#include "log.hpp"
#include "nvgrace/common/size.hpp"
#include "nvgrace/pciemu/profiles.hpp"
#include "runner/runner.hpp"
#include "vm/kvm.hpp"

namespace nvgrace::cli {
namespace {

// ctest's SKIP_RETURN_CODE: no /dev/kvm here.
constexpr int kExitSkip = 77;

class RunCommand final : public Command {
 public:
  CLI::App* attach(CLI::App& app) override {
    cmd_ = app.add_subcommand("run", "Run the built-in guest against emulated GPUs under KVM and report each check");
    add_profile_option(cmd_, opts_.profile, "Built-in emulated device")
        ->capture_default_str();
    cmd_->add_option("--count", opts_.count, "Number of GPUs, each checked")->check(CLI::Range(1, 8))
        ->capture_default_str();
    cmd_->add_option("--guest-mem", guest_mem_, "Guest RAM (multiple of 2 MiB, 32 MiB and up)")->capture_default_str();
    cmd_->add_option("--timeout", timeout_s_, "Give up after this many seconds")->check(CLI::Range(1, 3600))
        ->capture_default_str();
    cmd_->add_flag("--bench", opts_.bench, "Run the guest's benchmark (BAR4 vs RAM writes, config vs null port I/O)");
    cmd_->add_option("--bench-mib", opts_.bench_mib, "MiB the benchmark writes to BAR4 and to RAM")
        ->check(CLI::Range(1, 1024))->capture_default_str();
    return cmd_;
  }

  int run() override {
    auto mem = parse_size(guest_mem_);
    if (!mem) return usage_error("--guest-mem: {}", mem.error().message);
    opts_.guest_mem = *mem;
    opts_.timeout = std::chrono::seconds(timeout_s_);
    auto log = module_logger("run");
    opts_.trace = log->should_log(spdlog::level::info);  // -v traces every exit
    if (auto ok = vm::kvm_available(); !ok) {
      fmt::print(stderr, "nvgrace: run skipped: {} (needs a usable /dev/kvm)\n", ok.error().message);
      return kExitSkip;
    }
    std::cout << fmt::format("nvgrace run: {} x {} under KVM, {} guest RAM\n", opts_.count, opts_.profile,
                             format_size(opts_.guest_mem))
              << std::flush;
    auto report = runner::run(opts_, [](const std::string& line) { std::cout << line << '\n' << std::flush; });
    if (!report) {
      fmt::print(stderr, "nvgrace: run failed: {}\n", report.error().message);
      return kExitFailure;
    }
    rusage ru{};
    ::getrusage(RUSAGE_SELF, &ru);
    const auto& e = report->exits;
    std::cout << fmt::format("exits: {} (port I/O {}, MMIO {}, config accesses {}, unclaimed MMIO {}); "
                             "memslots live {}; refused placements {}; peak RSS {} MiB\n",
                             e.total, e.io, e.mmio, e.config, e.unclaimed, report->slots_live, report->refusals,
                             ru.ru_maxrss / 1024);
    if (opts_.bench) {
      for (const auto& [name, cycles] : report->bench) std::cout << fmt::format("{}: {} cycles\n", name, cycles);
      return kExitOk;
    }
    std::cout << fmt::format("{}: {} checks, {} failed\n", report->passed() ? "PASS" : "FAIL", report->checks,
                             report->guest_failures + report->host_failures);
    return report->passed() ? kExitOk : kExitFailure;
  }

 private:
  CLI::App* cmd_ = nullptr;
  runner::RunOptions opts_;
  std::string guest_mem_ = "64MiB";
  long timeout_s_ = 60;
};

}  // namespace

std::unique_ptr<Command> make_run_command() { return std::make_unique<RunCommand>(); }

}  // namespace nvgrace::cli
