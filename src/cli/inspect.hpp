// `nvgrace inspect`: the report (devices/report.hpp) as JSON and as a table.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "nvgrace/devices/report.hpp"

namespace nvgrace::cli {

using devices::DeviceReport;
using devices::DeviceSpec;
using devices::DeviceStatus;
using devices::InspectReport;
using devices::PlanOptions;

// With `regions`, each device also lists its VFIO regions as
// VFIO_DEVICE_GET_REGION_INFO reports them (R16).
[[nodiscard]] nlohmann::ordered_json to_json(const InspectReport& r, bool regions = false);
// Human-readable report for an 80-column terminal.
[[nodiscard]] std::string to_table(const InspectReport& r, bool regions = false);

}  // namespace nvgrace::cli
