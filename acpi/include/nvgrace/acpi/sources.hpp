// Where ACPI tables come from: a directory laid out like
// /sys/firmware/acpi/tables, the text output of `acpidump`, or single binary
// table files (.aml/.dat).
#pragma once

#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

#include "nvgrace/acpi/table.hpp"
#include "nvgrace/common/result.hpp"

namespace nvgrace::acpi {

// ACPI tables are at most a few MiB; acpidump text is about 4.5 times its
// tables. Anything larger is refused, not read.
inline constexpr std::size_t kMaxTableFileSize = 32u << 20;

struct LoadedTables {
  std::vector<Table> tables;          // DSDT first, then SSDTs in order
  std::vector<std::string> warnings;  // bad checksums, ignored files
};

// Each path is a directory (DSDT, SSDT, SSDT1..N are read; other tables and
// sub-directories are ignored), an acpidump text file (recognised by its
// "XXXX @ 0x" block headers), or a binary table. Only DSDT and SSDT tables are
// kept. A truncated table is an error naming the table and byte offset; a bad
// checksum is a warning. Paths that are neither directories nor regular files
// (devices, FIFOs) and files over kMaxTableFileSize are refused.
[[nodiscard]] Result<LoadedTables> load_tables(const std::vector<std::filesystem::path>& paths);

// The DSDT/SSDT tables of one acpidump text (its hex-dump blocks).
[[nodiscard]] Result<std::vector<Table>> parse_acpidump(std::string_view text, std::string_view source);

}  // namespace nvgrace::acpi
