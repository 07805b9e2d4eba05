// nvgrace: the command-line entry point. Builds every sub-command, parses,
// runs the one named. Bad input never shows a stack trace: one line, exit 2.
#include <cstdio>
#include <exception>
#include <memory>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include "command.hpp"
#include "log.hpp"

int main(int argc, char** argv) {
  using namespace nvgrace::cli;
  try {
    CLI::App app{"nvgrace: NVIDIA Grace GPU coherent memory as guest PCI BARs, in user space.\n"
                 "Emulated GH200/GB200 devices by default; real ACPI tables and VFIO devices where present."};
    app.require_subcommand(1);
    app.fallthrough();  // global options may follow the sub-command
    int verbose = 0;
    std::string level = "warn";
    app.add_flag("-v,--verbose", verbose, "More log output on stderr (-v info, -vv debug, -vvv trace)");
    auto* level_opt = app.add_option("--log-level", level, "trace, debug, info, warn, error, critical or off")
                          ->check(CLI::IsMember({"trace", "debug", "info", "warn", "error", "critical", "off"}));

    std::vector<std::unique_ptr<Command>> commands;
    commands.push_back(make_inspect_command());
    commands.push_back(make_config_command());
    commands.push_back(make_region_command());
    commands.push_back(make_run_command());
    commands.push_back(make_serve_command());
    std::vector<std::pair<CLI::App*, Command*>> attached;
    for (auto& c : commands) attached.emplace_back(c->attach(app), c.get());

    try {
      app.parse(argc, argv);
    } catch (const CLI::ParseError& e) {
      if (e.get_exit_code() == 0) return app.exit(e);  // --help
      return usage_error("{}", e.what());
    }

    auto lvl = spdlog::level::from_str(level);
    if (level_opt->empty() && verbose > 0)
      lvl = verbose == 1 ? spdlog::level::info : verbose == 2 ? spdlog::level::debug : spdlog::level::trace;
    nvgrace::set_log_level(lvl);

    for (auto& [sub, cmd] : attached)
      if (sub->parsed()) return cmd->run();
    return usage_error("no command given (see --help)");
  } catch (const std::exception& e) {
    fmt::print(stderr, "nvgrace: internal error: {}\n", e.what());
    return kExitFailure;
  }
}
