// libFuzzer target for the ACPI table and AML readers (R3-R6). Any input is
// treated as one table: its header is parsed, then its AML walked and GPU
// nodes looked for. The reader must return, never crash, on every input.
#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "nvgrace/acpi/aml.hpp"
#include "nvgrace/acpi/gpu.hpp"
#include "nvgrace/acpi/sources.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace nvgrace::acpi;
  std::span<const std::uint8_t> bytes(data, size);
  // Text inputs exercise the acpidump reader too.
  (void)parse_acpidump(std::string_view(reinterpret_cast<const char*>(data), size), "fuzz");
  auto table = parse_table(bytes, "FUZZ");
  if (!table) return 0;
  std::vector<Table> tables{*table};
  auto ns = read_namespace(tables);
  for (const auto& g : find_gpus(ns)) (void)g.problems.size();
  return 0;
}
