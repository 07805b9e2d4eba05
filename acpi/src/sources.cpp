#include "nvgrace/acpi/sources.hpp"

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cstring>
#include <optional>
#include <sstream>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fmt/format.h>

#include "nvgrace/sys/fd.hpp"

namespace nvgrace::acpi {
namespace fs = std::filesystem;
namespace {

// Reads a regular file of at most kMaxTableFileSize bytes. Devices, FIFOs and
// sockets are refused before anything is read (/dev/zero never ends); the cap
// also holds for files whose size stat() cannot tell (procfs reports 0).
Result<std::vector<std::uint8_t>> read_file(const fs::path& p) {
  const sys::UniqueFd owned(::open(p.c_str(), O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK));
  if (!owned) return fail_errno(errno, "cannot open {}: {}", p.string(), std::strerror(errno));
  const int fd = owned.get();
  struct stat st {};
  if (::fstat(fd, &st) != 0) return fail_errno(errno, "cannot stat {}: {}", p.string(), std::strerror(errno));
  if (!S_ISREG(st.st_mode))
    return fail_errno(EINVAL, "{} is not a regular file or a directory of tables", p.string());
  if (static_cast<std::uint64_t>(st.st_size) > kMaxTableFileSize)
    return fail_errno(EFBIG, "{} has {} bytes; ACPI table input is limited to {} MiB per file", p.string(),
                      st.st_size, kMaxTableFileSize >> 20);
  std::vector<std::uint8_t> bytes;
  bytes.reserve(static_cast<std::size_t>(st.st_size));
  std::uint8_t buf[65536];
  for (;;) {
    const ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return fail_errno(errno, "cannot read {}: {}", p.string(), std::strerror(errno));
    if (n == 0) break;
    if (bytes.size() + static_cast<std::size_t>(n) > kMaxTableFileSize)
      return fail_errno(EFBIG, "{} is larger than the {} MiB limit for ACPI table input", p.string(),
                        kMaxTableFileSize >> 20);
    bytes.insert(bytes.end(), buf, buf + n);
  }
  return bytes;
}

bool is_aml_signature(std::string_view sig) { return sig == "DSDT" || sig == "SSDT"; }

// "SSDT12" -> 12, "SSDT" -> 0, "DSDT" -> -1 (sorts first); others nullopt.
std::optional<long> table_rank(const std::string& name) {
  if (name == "DSDT") return -1;
  if (!name.starts_with("SSDT")) return std::nullopt;
  if (name.size() == 4) return 0;
  long n = 0;
  auto [p, ec] = std::from_chars(name.data() + 4, name.data() + name.size(), n);
  if (ec != std::errc() || p != name.data() + name.size()) return std::nullopt;
  return n;
}

int hex_digit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return -1;
}

bool looks_like_acpidump(const std::vector<std::uint8_t>& bytes) {
  std::string_view head(reinterpret_cast<const char*>(bytes.data()), std::min<std::size_t>(bytes.size(), 4096));
  return head.find(" @ 0x") != std::string_view::npos && head.find("0000: ") != std::string_view::npos;
}

Result<void> add_table(LoadedTables& out, std::span<const std::uint8_t> bytes, const std::string& source) {
  auto t = parse_table(bytes, source);
  if (!t) return fail(t.error());
  if (!is_aml_signature(t->header.signature)) {
    out.warnings.push_back(fmt::format("{}: {} table ignored (only DSDT and SSDT hold AML)", source, t->header.signature));
    return {};
  }
  if (!t->checksum_ok) out.warnings.push_back(fmt::format("{}: bad checksum", source));
  out.tables.push_back(std::move(*t));
  return {};
}

}  // namespace

Result<std::vector<Table>> parse_acpidump(std::string_view text, std::string_view source) {
  std::vector<Table> tables;
  std::string sig;
  std::vector<std::uint8_t> bytes;
  std::size_t line_no = 0;
  unsigned ssdt_count = 0;
  auto finish = [&]() -> Result<void> {
    if (sig.empty()) return {};
    std::string name = sig == "SSDT" ? fmt::format("SSDT{}", ++ssdt_count) : sig;
    if (is_aml_signature(sig)) {
      auto t = parse_table(bytes, fmt::format("{}:{}", source, name));
      if (!t) return fail(t.error());
      tables.push_back(std::move(*t));
    }
    sig.clear();
    bytes.clear();
    return {};
  };
  std::istringstream in{std::string(text)};
  std::string line;
  while (std::getline(in, line)) {
    ++line_no;
    if (!line.empty() && line.back() == '\r') line.pop_back();
    // Block header: "DSDT @ 0x0000000000000000"
    if (auto at = line.find(" @ 0x"); at != std::string::npos && at >= 4 && line[0] != ' ') {
      if (auto ok = finish(); !ok) return fail(ok.error());
      sig = line.substr(0, 4);
      continue;
    }
    // Data line: "    0010: 47 52 41 ...  GRACE..."; offset, then 16 slots
    // of "XX " (blank at the end of a short line), then the ASCII column.
    const auto colon = line.find(": ");
    if (sig.empty() || colon == std::string::npos) continue;
    std::string_view off_text(line.data(), colon);
    while (!off_text.empty() && off_text.front() == ' ') off_text.remove_prefix(1);
    std::size_t offset = 0;
    auto [p, ec] = std::from_chars(off_text.data(), off_text.data() + off_text.size(), offset, 16);
    if (ec != std::errc() || p != off_text.data() + off_text.size()) continue;
    if (offset != bytes.size())
      return fail("{} line {}: {} data at offset {:#x}, expected {:#x}", source, line_no, sig, offset, bytes.size());
    std::size_t pos = colon + 2;
    for (int slot = 0; slot < 16; ++slot, pos += 3) {
      if (pos + 1 >= line.size()) break;
      const int hi = hex_digit(line[pos]);
      const int lo = hex_digit(line[pos + 1]);
      if (hi < 0 || lo < 0) break;
      if (pos + 2 < line.size() && line[pos + 2] != ' ') break;
      bytes.push_back(static_cast<std::uint8_t>(hi << 4 | lo));
    }
  }
  if (auto ok = finish(); !ok) return fail(ok.error());
  if (tables.empty()) return fail("{}: no DSDT or SSDT block found in acpidump text", source);
  return tables;
}

Result<LoadedTables> load_tables(const std::vector<fs::path>& paths) {
  LoadedTables out;
  for (const auto& path : paths) {
    std::error_code ec;
    if (fs::is_directory(path, ec)) {
      std::vector<std::pair<long, fs::path>> files;
      for (const auto& entry : fs::directory_iterator(path, ec)) {
        if (!entry.is_regular_file()) continue;
        if (auto rank = table_rank(entry.path().filename().string())) files.emplace_back(*rank, entry.path());
      }
      if (ec) return fail_errno(ec.value(), "cannot list {}: {}", path.string(), ec.message());
      if (files.empty()) return fail("{}: no DSDT or SSDT file in this directory", path.string());
      std::sort(files.begin(), files.end());
      for (const auto& [rank, file] : files) {
        auto bytes = read_file(file);
        if (!bytes) return fail(bytes.error());
        if (auto ok = add_table(out, *bytes, file.filename().string()); !ok) return fail(ok.error());
      }
      continue;
    }
    if (!fs::exists(path, ec)) return fail_errno(ENOENT, "{}: no such file or directory", path.string());
    auto bytes = read_file(path);
    if (!bytes) return fail(bytes.error());
    if (looks_like_acpidump(*bytes)) {
      auto tables = parse_acpidump(std::string_view(reinterpret_cast<const char*>(bytes->data()), bytes->size()),
                                   path.filename().string());
      if (!tables) return fail(tables.error());
      for (auto& t : *tables) {
        if (!t.checksum_ok) out.warnings.push_back(fmt::format("{}: bad checksum", t.source));
        out.tables.push_back(std::move(t));
      }
      continue;
    }
    if (auto ok = add_table(out, *bytes, path.filename().string()); !ok) return fail(ok.error());
  }
  // The OS loads the DSDT before any SSDT.
  std::stable_partition(out.tables.begin(), out.tables.end(),
                        [](const Table& t) { return t.header.signature == "DSDT"; });
  return out;
}

}  // namespace nvgrace::acpi
