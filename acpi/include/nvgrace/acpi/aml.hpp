// A small AML reader: walks DSDT and SSDTs far enough to build the ACPI
// namespace of Scope/Device/Name/Method objects and to read the data objects
// nvgrace needs (_ADR, _SEG, _BBN, _HID, _CID, _UID, _DSD) - nvgrace-model.md
// R3, R4, R6.
//
// Hand-written because Debian packages no ACPICA library (acpica-tools ships
// only executables). It is not an interpreter: it never executes control
// flow. Blocks it does not need (Field, If, While, method bodies, ...) are
// skipped by their PkgLength. A Method is "evaluated" only when its body
// returns a constant at its top level (`Method(_DSD) { Return(Package(){...}) }`,
// R4). Where it truly cannot continue it records an error naming the table
// and byte offset, skips the enclosing block (or stops that table) and keeps
// what it found elsewhere.
//
// Thread-safety: none needed; values only. Ownership: plain values.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <variant>
#include <vector>

#include "nvgrace/acpi/table.hpp"

namespace nvgrace::acpi {

// An ACPI path as 4-character segments, root first: {"_SB_", "PCI9", "RP00"}.
using Path = std::vector<std::string>;
// "\_SB_.PCI9.RP00" - the form the kernel writes to firmware_node/path (R6).
[[nodiscard]] std::string to_string(const Path& p);
// Parses "\_SB_.PCI9.RP00" or "\_SB.PCI9.RP00" (segments padded with '_').
[[nodiscard]] std::optional<Path> parse_path(std::string_view text);

struct Buffer {
  std::vector<std::uint8_t> bytes;
};
struct NameRef {
  std::string path;  // as written, e.g. "\_SB_.PCI0" or "GPU0"
};
struct Value;
using Package = std::vector<Value>;

// An AML data object: Integer, String, Buffer, Package, or a name reference
// inside a package.
struct Value {
  std::variant<std::uint64_t, std::string, Buffer, Package, NameRef> data;

  [[nodiscard]] const std::uint64_t* integer() const { return std::get_if<std::uint64_t>(&data); }
  [[nodiscard]] const std::string* string() const { return std::get_if<std::string>(&data); }
  [[nodiscard]] const Buffer* buffer() const { return std::get_if<Buffer>(&data); }
  [[nodiscard]] const Package* package() const { return std::get_if<Package>(&data); }
  [[nodiscard]] std::string_view type_name() const;
};

// A problem found while reading a table, located in it.
struct Diagnostic {
  std::string table;  // source name, e.g. "SSDT2" or "gpu.aml"
  std::size_t offset = 0;  // byte offset in the table, header included
  std::string message;
  [[nodiscard]] std::string to_string() const;
};

enum class ObjectKind { scope, device, name, method, other };

struct Object {
  ObjectKind kind = ObjectKind::other;
  bool external = false;  // only declared by External(); a definition replaces it
  Path path;
  std::string table;
  std::size_t offset = 0;
  std::optional<Value> value;  // Name: its value; Method: its constant return, when it has one
  unsigned method_args = 0;
};

struct Namespace {
  std::map<std::string, Object> objects;  // keyed by to_string(path)
  std::vector<Diagnostic> errors;
  std::vector<Diagnostic> warnings;

  [[nodiscard]] const Object* find(const Path& p) const;
  // The value of `name` (a 4-char segment) directly under `parent`: a Name's
  // value, or a Method's constant return.
  [[nodiscard]] const Value* child_value(const Path& parent, std::string_view name) const;
};

// Limits that keep hostile tables from exhausting the stack or the clock.
inline constexpr int kMaxNesting = 64;

// Reads the tables in order (DSDT first, then SSDTs, as the OS loads them).
// Tables with other signatures are ignored with a warning. The DSDT's
// revision sets the width of every integer (below 2: 32 bits, a wider
// constant is cut, with a warning), as Linux's ACPICA does; without a DSDT,
// 64 bits.
[[nodiscard]] Namespace read_namespace(std::span<const Table> tables);

// EisaId("PNP0A08") is stored as an integer; turn it back into the string.
[[nodiscard]] std::string eisa_id_to_string(std::uint32_t id);

}  // namespace nvgrace::acpi
