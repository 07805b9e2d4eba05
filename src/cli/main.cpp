// nvgrace: the command-line entry point. Builds every sub-command, parses,
// runs the one named. Bad input never shows a stack trace: one line, exit 2.
#include <algorithm>
#include <cstdio>
#include <exception>
#include <memory>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include "command.hpp"
#include "nvgrace/log/log.hpp"

#ifndef NVGRACE_VERSION
#error "NVGRACE_VERSION is set by the build"
#endif

namespace {

using namespace nvgrace::cli;

// The first argument that is not a global option: the command the user typed.
std::optional<std::string> command_word(int argc, char** argv) {
  for (int i = 1; i < argc; ++i) {
    const std::string_view a = argv[i];
    if (a == "--log-level") {
      ++i;
      continue;
    }
    if (a.starts_with("-")) continue;
    return std::string(a);
  }
  return std::nullopt;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    CLI::App app{"NVIDIA Grace GPU coherent memory as guest PCI BARs, in user space: emulated GH200/GB200 "
                 "devices by default; real ACPI tables and VFIO devices where present. "
                 "Run 'nvgrace help COMMAND' for a command's options.",
                 "nvgrace"};
    app.formatter(std::make_shared<HelpFormatter>());
    app.set_version_flag("--version", "nvgrace " NVGRACE_VERSION, "Print the version and exit");
    app.require_subcommand(1);
    app.fallthrough();  // global options may follow the sub-command
    int verbose = 0;
    std::string level = "warn";
    app.add_flag("-v,--verbose", verbose, "More log output on stderr, one step per -v: warn, info, debug, trace");
    auto* level_opt = app.add_option("--log-level", level, "trace, debug, info, warn, error, critical or off "
                                     "(default: warn; info for serve)")
                          ->check(CLI::IsMember({"trace", "debug", "info", "warn", "error", "critical", "off"}))
                          ->type_name("LEVEL");

    std::vector<std::unique_ptr<Command>> commands;
    commands.push_back(make_inspect_command());
    commands.push_back(make_config_command());
    commands.push_back(make_region_command());
    commands.push_back(make_run_command());
    commands.push_back(make_serve_command());
    commands.push_back(make_cpu_command());
    commands.push_back(make_firmware_command());
    commands.push_back(make_probe_command());
    std::vector<std::pair<CLI::App*, Command*>> attached;
    for (auto& c : commands) attached.emplace_back(c->attach(app), c.get());
    std::vector<std::string> names;
    for (auto& [sub, cmd] : attached) names.push_back(sub->get_name());

    auto* help = app.add_subcommand("help", "Show the help of nvgrace, or of one command");
    std::string topic;
    help->add_option("command", topic, "The command to explain")->type_name("COMMAND");

    auto list = [&] {
      std::string s;
      for (const auto& n : names) s += (s.empty() ? "" : ", ") + n;
      return s + ", help";
    };
    if (auto word = command_word(argc, argv); word && *word != "help" &&
                                              std::find(names.begin(), names.end(), *word) == names.end())
      return usage_error("unknown command '{}': the commands are {}", *word, list());

    // CLI11 answers help() with the selected sub-command's help once parsed:
    // take the top-level text first.
    const std::string main_help = app.help();
    try {
      app.parse(argc, argv);
    } catch (const CLI::ParseError& e) {
      if (e.get_exit_code() == 0) return app.exit(e);  // --help, --version
      if (std::string(e.what()) == "A subcommand is required")
        return usage_error("no command given: the commands are {} (see 'nvgrace help')", list());
      return usage_error("{}", e.what());
    }

    if (help->parsed()) {
      if (topic.empty()) {
        fmt::print("{}", main_help);
        return kExitOk;
      }
      for (auto& [sub, cmd] : attached)
        if (sub->get_name() == topic) {
          fmt::print("{}", sub->help(app.get_name()));
          return kExitOk;
        }
      return usage_error("help: unknown command '{}': the commands are {}", topic, list());
    }

    for (auto& [sub, cmd] : attached) {
      if (!sub->parsed()) continue;
      auto lvl = cmd->default_log_level();
      if (!level_opt->empty()) lvl = spdlog::level::from_str(level);
      else lvl = static_cast<spdlog::level::level_enum>(std::max(0, static_cast<int>(lvl) - verbose));
      nvgrace::set_log_level(lvl);
      return cmd->run();
    }
    return usage_error("no command given: the commands are {} (see 'nvgrace help')", list());
  } catch (const std::exception& e) {
    fmt::print(stderr, "nvgrace: internal error: {}\n", e.what());
    return kExitFailure;
  }
}
