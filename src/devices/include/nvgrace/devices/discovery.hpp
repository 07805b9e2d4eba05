// GPUs described by real ACPI tables (and, on a live host, sysfs), turned
// into DeviceSpecs (nvgrace-model.md R2-R6). Reads files; logs nothing: what
// it noticed comes back as diagnostics for the caller to show.
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "nvgrace/common/result.hpp"
#include "nvgrace/common/types.hpp"
#include "nvgrace/devices/spec.hpp"

namespace nvgrace::devices {

// Where a live host's ACPI tables are.
inline constexpr const char* kLiveAcpiTables = "/sys/firmware/acpi/tables";

// The --acpi arguments as table paths. "none" (alone) is a host without ACPI
// tables, booted with a device tree: the GPUs are described on their
// device-tree nodes (R38); so is the live default kLiveAcpiTables where the
// host has no such folder. Errors name the flag.
[[nodiscard]] Result<std::vector<std::filesystem::path>> acpi_table_paths(const std::vector<std::string>& args);

struct AcpiQuery {
  std::vector<std::filesystem::path> tables;   // --acpi; empty: no ACPI (a device-tree host)
  std::optional<std::filesystem::path> sysfs;  // --sysfs
  std::optional<std::filesystem::path> dev;    // --dev (or /dev with --host): check what `serve --host` needs
  std::vector<std::string> bdfs;               // --device (empty: every GPU), as given
  std::optional<std::uint16_t> device_id;      // --device-id, for GPUs without sysfs
  // Treat every function as this Grace GPU whatever its real id (serve
  // --assume-device-id: a stand-in device for tests).
  std::optional<std::uint16_t> assume_device_id;
  std::string device_flag = "--device";        // how the command names the BDF option, for messages
  std::optional<bool> forced_mig_bug;          // --mig-bug / --no-mig-bug
  unsigned phys_addr_bits = 64;
  // The kernel whose KVM decides device-DAX memory's stage-2 type (R40), as
  // uname's release; empty: the running kernel (tests name one).
  std::string kernel_release;
};

// What reading the tables showed: each table, and the reader's errors and
// warnings (AML it could not read, checksums). `notes` are details for a
// debug log (where the MIG bug came from, and why).
struct AcpiDiagnostics {
  struct Table {
    std::string source, signature;
    std::uint32_t length = 0;
    bool checksum_ok = true;
  };
  std::vector<Table> tables;
  std::vector<std::string> errors, warnings, notes;
};

struct AcpiDevices {
  std::vector<DeviceSpec> specs;
  AcpiDiagnostics diagnostics;
};

// Errors are problems with the command line or its inputs (unreadable or
// truncated tables, an unknown BDF, a missing device id); their messages name
// the flag at fault. Problems with a GPU's description are not errors: they
// make that GPU "passthrough" with the reason (R5).
[[nodiscard]] Result<AcpiDevices> collect_acpi_devices(const AcpiQuery& q);

}  // namespace nvgrace::devices
