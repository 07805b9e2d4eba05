// Logging set-up: one spdlog logger per module, all writing to stderr so that
// stdout stays clean for tables and JSON.
#pragma once

#include <memory>
#include <string_view>

#include <spdlog/spdlog.h>

namespace nvgrace {

// The logger of `module` ("cli", "acpi", ...), created on first use.
std::shared_ptr<spdlog::logger> module_logger(std::string_view module);

// Applies a level to every module logger, present and future.
void set_log_level(spdlog::level::level_enum level);

}  // namespace nvgrace
