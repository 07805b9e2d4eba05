#include "nvgrace/log/log.hpp"

#include <string>

#include <spdlog/sinks/stdout_color_sinks.h>

namespace nvgrace {

std::shared_ptr<spdlog::logger> module_logger(std::string_view module) {
  const std::string name(module);
  if (auto existing = spdlog::get(name)) return existing;
  auto logger = spdlog::stderr_color_mt(name);
  logger->set_pattern("%^%l%$ [%n] %v");
  logger->set_level(spdlog::get_level());
  return logger;
}

void set_log_level(spdlog::level::level_enum level) { spdlog::set_level(level); }

}  // namespace nvgrace
