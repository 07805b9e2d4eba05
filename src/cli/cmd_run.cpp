// `nvgrace run`: the built-in guest against emulated GPUs in a KVM VM - the
// proof that the fake BARs work end to end (R11-R13, R17, R20-R24).
#include <sys/resource.h>

#include <iostream>

#include <nlohmann/json.hpp>

#include "command.hpp"
#include "nvgrace/log/log.hpp"
#include "nvgrace/common/size.hpp"
#include "nvgrace/cpu/model.hpp"
#include "nvgrace/pciemu/profiles.hpp"
#include "nvgrace/runner/runner.hpp"
#include "nvgrace/vm/kvm.hpp"

namespace nvgrace::cli {
namespace {

class RunCommand final : public Command {
 public:
  CLI::App* attach(CLI::App& app) override {
    cmd_ = app.add_subcommand("run", "Run the built-in guest against emulated GPUs under KVM and report each check. "
                                     "Exit 0: every check passed; 1: a check failed, the run failed, or there is "
                                     "no usable /dev/kvm");
    add_profile_option(cmd_, opts_.profile, "Built-in emulated device")->capture_default_str();
    cmd_->add_option("--count", opts_.count, "Number of GPUs, each checked")
        ->check(integer_in(1, 8))->type_name("N")->capture_default_str();
    const auto limits = runner::guest_mem_limits();
    guest_mem_opt_ = cmd_->add_option("--guest-mem", guest_mem_,
                                      fmt::format("Guest RAM, a multiple of {} in {}..{} (default: 64 MiB, or "
                                                  "what --bench needs)",
                                                  format_size(limits.granule), format_size(limits.min),
                                                  format_size(limits.max)))
                         ->type_name("SIZE");
    cmd_->add_option("--cpu", opts_.cpu,
                     "arm64: the vCPU's CPU model - host, neoverse-v2-v1 or grace-v1, with ,feat_FIELD=VALUE, "
                     ",sve=128+256 or ,midr=host after it (R34-R36; `nvgrace cpu` lists them). x86: host only")
        ->type_name("MODEL")->capture_default_str();
    cmd_->add_option("--timeout", timeout_s_, "Give up after this many seconds, set-up included")
        ->check(integer_in(1, 3600, "seconds"))->type_name("S")->capture_default_str();
    cmd_->add_flag("--bench", opts_.bench, "Run the guest's benchmark (BAR4 vs RAM writes, config vs null port I/O)");
    cmd_->add_option("--bench-mib", opts_.bench_mib, "MiB the benchmark writes to BAR4 and to RAM")
        ->check(integer_in(1, 1024, "MiB"))->type_name("N")->capture_default_str();
    cmd_->add_flag("--json", json_, "Print the report as JSON at the end instead of a line per check");
    return cmd_;
  }

  int run() override {
    opts_.guest_mem = opts_.bench ? std::max(kDefaultGuestMem, runner::bench_guest_mem(opts_.bench_mib))
                                  : kDefaultGuestMem;
    if (!guest_mem_opt_->empty()) {
      auto mem = parse_size(guest_mem_);
      if (!mem) return usage_error("--guest-mem: {}", mem.error().message);
      const auto limits = runner::guest_mem_limits();
      if (*mem < limits.min || *mem > limits.max || *mem % limits.granule != 0)
        return usage_error("--guest-mem: {} is not a multiple of {} in {}..{}", format_size(*mem),
                           format_size(limits.granule), format_size(limits.min), format_size(limits.max));
      if (opts_.bench && *mem < runner::bench_guest_mem(opts_.bench_mib))
        return usage_error("--guest-mem: {} is too small for a {} MiB benchmark: give {} or more", format_size(*mem),
                           opts_.bench_mib, format_size(runner::bench_guest_mem(opts_.bench_mib)));
      opts_.guest_mem = *mem;
    }
    // R36: a model named wrong is a usage error; one this host cannot run is
    // refused by the run, field by field.
    if (auto m = cpu::resolve(opts_.cpu); !m) return usage_error("--cpu: {}", m.error().message);
    if (opts_.cpu != "host" && runner::arch_name() != "aarch64")
      return usage_error("--cpu {}: CPU models are for arm64 guests (R36); an {} guest gets the CPUID KVM supports, "
                         "so only 'host' applies here",
                         opts_.cpu, runner::arch_name());
    opts_.timeout = std::chrono::seconds(timeout_s_);
    auto log = module_logger("run");
    opts_.trace = log->should_log(spdlog::level::info);  // -v traces every exit
    if (auto ok = vm::kvm_available(); !ok)
      return failure("run", "{}: nvgrace run needs KVM: load the kvm module for this CPU (kvm_intel, kvm_amd; arm64: "
                            "a kernel booted at EL2), or run inside a VM with nested virtualization, and give this "
                            "user read and write access to /dev/kvm",
                     ok.error().message);
    nlohmann::ordered_json lines = nlohmann::ordered_json::array();
    if (!json_)
      std::cout << fmt::format("nvgrace run: {} x {} under KVM ({}{}), {} guest RAM\n", opts_.count, opts_.profile,
                               runner::arch_name(), opts_.cpu == "host" ? "" : ", --cpu " + opts_.cpu,
                               format_size(opts_.guest_mem))
                << std::flush;
    auto report = runner::run(opts_, [&](const std::string& line) {
      if (json_)
        lines.push_back(line);
      else
        std::cout << line << '\n' << std::flush;
    });
    if (!report) return failure("run", "{}", report.error().message);
    rusage ru{};
    ::getrusage(RUSAGE_SELF, &ru);
    const auto& e = report->exits;
    if (json_) {
      nlohmann::ordered_json j{
          {"arch", report->arch},
          {"cpu", report->cpu},
          {"phys_bits", report->phys_bits},
          {"host_phys_bits", report->host_phys_bits},
          {"profile", opts_.profile},
          {"count", opts_.count},
          {"guest_mem", opts_.guest_mem},
          {"passed", report->passed()},
          {"checks", report->checks},
          {"failed", report->guest_failures + report->host_failures},
          {"lines", std::move(lines)},
          {"exits", {{"total", e.total}, {"io", e.io}, {"mmio", e.mmio}, {"config", e.config}, {"unclaimed", e.unclaimed}}},
          {"memslots_live", report->slots_live},
          {"refused_placements", report->refusals},
          {"unmapped_bars", report->unplaced},
          {"peak_rss_bytes", static_cast<std::uint64_t>(ru.ru_maxrss) * 1024}};
      if (opts_.bench) {
        nlohmann::ordered_json b = nlohmann::ordered_json::object();
        for (const auto& [name, cycles] : report->bench) b[name] = cycles;
        j["bench_cycles"] = std::move(b);
      }
      std::cout << j.dump(2) << '\n';
    } else {
      std::cout << fmt::format("exits: {} (port I/O {}, MMIO {}, config accesses {}, unclaimed MMIO {}); "
                               "memslots live {}; refused placements {}; BARs not mapped {}; peak RSS {} MiB\n",
                               e.total, e.io, e.mmio, e.config, e.unclaimed, report->slots_live, report->refusals,
                               report->unplaced, ru.ru_maxrss / 1024);
      if (opts_.bench)
        for (const auto& [name, cycles] : report->bench)  // x86: TSC cycles; arm64: CNTVCT ticks
          std::cout << fmt::format("{}: {} {}\n", name, cycles, report->arch == "x86_64" ? "cycles" : "ticks");
      else
        std::cout << fmt::format("{}: {} checks, {} failed\n", report->passed() ? "PASS" : "FAIL", report->checks,
                                 report->guest_failures + report->host_failures);
    }
    if (opts_.bench) return kExitOk;
    return report->passed() ? kExitOk : kExitFailure;
  }

 private:
  static constexpr std::uint64_t kDefaultGuestMem = 64ull << 20;
  CLI::App* cmd_ = nullptr;
  CLI::Option* guest_mem_opt_ = nullptr;
  runner::RunOptions opts_;
  std::string guest_mem_;
  long timeout_s_ = 60;
  bool json_ = false;
};

}  // namespace

std::unique_ptr<Command> make_run_command() { return std::make_unique<RunCommand>(); }

}  // namespace nvgrace::cli
