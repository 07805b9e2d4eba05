// The shape every `nvgrace` sub-command takes. main() builds all of them,
// lets CLI11 parse, then runs the one that was named.
#pragma once

#include <memory>
#include <string_view>
#include <vector>

#include <CLI/CLI.hpp>
#include <fmt/format.h>
#include <spdlog/common.h>

#include "nvgrace/pciemu/profiles.hpp"
#include "options.hpp"

namespace nvgrace::cli {

// Exit codes shared by all commands.
inline constexpr int kExitOk = 0;
inline constexpr int kExitFailure = 1;  // the command ran and found a problem, or refused an operation
inline constexpr int kExitUsage = 2;    // bad command line: one line on stderr naming the flag

class Command {
 public:
  virtual ~Command() = default;
  // Adds the sub-command and its options to `app`; returns the sub-command.
  virtual CLI::App* attach(CLI::App& app) = 0;
  // Runs after a successful parse. Returns the process exit code.
  virtual int run() = 0;
  // The log level when neither -v nor --log-level is given. A server logs
  // its connections; a report command stays quiet.
  [[nodiscard]] virtual spdlog::level::level_enum default_log_level() const { return spdlog::level::warn; }
};

// The --profile option every command takes: `target` is a string or a vector
// of strings; only built-in profile names are accepted (CLI11 names the flag
// and the choices when one is not).
template <class T>
CLI::Option* add_profile_option(CLI::App* cmd, T& target, const std::string& help) {
  std::vector<std::string> names;
  for (const auto& p : pciemu::all_profiles()) names.emplace_back(p.name);
  return cmd->add_option("--profile", target, help)->check(CLI::IsMember(names))->type_name("NAME");
}

std::unique_ptr<Command> make_inspect_command();
std::unique_ptr<Command> make_config_command();
std::unique_ptr<Command> make_region_command();
std::unique_ptr<Command> make_run_command();
std::unique_ptr<Command> make_serve_command();
std::unique_ptr<Command> make_cpu_command();
std::unique_ptr<Command> make_firmware_command();
std::unique_ptr<Command> make_probe_command();

// Prints "nvgrace: error: <message>" on stderr and returns kExitUsage.
template <class... Args>
int usage_error(fmt::format_string<Args...> f, Args&&... args) {
  fmt::print(stderr, "nvgrace: error: {}\n", fmt::format(f, std::forward<Args>(args)...));
  return kExitUsage;
}

// Prints "nvgrace: <command>: <message>" on stderr and returns kExitFailure:
// the command line was fine, the operation was refused or failed.
template <class... Args>
int failure(std::string_view command, fmt::format_string<Args...> f, Args&&... args) {
  fmt::print(stderr, "nvgrace: {}: {}\n", command, fmt::format(f, std::forward<Args>(args)...));
  return kExitFailure;
}

}  // namespace nvgrace::cli
