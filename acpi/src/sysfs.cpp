#include "nvgrace/acpi/sysfs.hpp"

#include <algorithm>
#include <charconv>
#include <cstring>
#include <fstream>
#include <regex>

#include <fmt/format.h>

namespace nvgrace::acpi {
namespace fs = std::filesystem;
namespace {

std::optional<std::string> read_line(const fs::path& p) {
  std::ifstream in(p);
  std::string s;
  if (!in || !std::getline(in, s)) return std::nullopt;
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
  return s;
}

}  // namespace

std::optional<std::uint16_t> read_sysfs_id(const fs::path& p) {
  auto s = read_line(p);
  if (!s) return std::nullopt;
  std::string_view v(*s);
  if (v.starts_with("0x")) v.remove_prefix(2);
  unsigned id = 0;
  auto [ptr, ec] = std::from_chars(v.data(), v.data() + v.size(), id, 16);
  if (ec != std::errc() || ptr != v.data() + v.size() || id > 0xFFFF) return std::nullopt;
  return static_cast<std::uint16_t>(id);
}

Result<std::string> normalize_bdf(std::string_view text) {
  static const std::regex full("^[0-9a-fA-F]{4}:[0-9a-fA-F]{2}:[0-1][0-9a-fA-F]\\.[0-7]$");
  static const std::regex short_form("^[0-9a-fA-F]{2}:[0-1][0-9a-fA-F]\\.[0-7]$");
  std::string s(text);
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  if (std::regex_match(s, full)) return s;
  if (std::regex_match(s, short_form)) return "0000:" + s;
  return fail("'{}' is not a PCI address (expected DDDD:BB:DD.F, e.g. 0009:01:00.0)", text);
}

Result<PciFunction> read_pci_function(const fs::path& sysfs_root, const std::string& bdf) {
  const fs::path dir = sysfs_root / "bus/pci/devices" / bdf;
  std::error_code ec;
  if (!fs::exists(dir, ec)) return fail_errno(ENOENT, "no PCI device {} under {}", bdf, (sysfs_root / "bus/pci/devices").string());
  PciFunction f;
  f.bdf = bdf;
  f.vendor = read_sysfs_id(dir / "vendor");
  f.device = read_sysfs_id(dir / "device");
  f.acpi_path = read_line(dir / "firmware_node/path");
  std::ifstream cfg(dir / "config", std::ios::binary);
  if (!cfg) {
    f.config_error = fmt::format("cannot read {}: {}", (dir / "config").string(), std::strerror(errno));
  } else {
    f.config.assign(std::istreambuf_iterator<char>(cfg), std::istreambuf_iterator<char>());
  }
  return f;
}

Result<std::vector<PciFunction>> list_pci_functions(const fs::path& sysfs_root, std::uint16_t vendor) {
  const fs::path dir = sysfs_root / "bus/pci/devices";
  std::error_code ec;
  std::vector<std::string> names;
  for (const auto& entry : fs::directory_iterator(dir, ec)) names.push_back(entry.path().filename().string());
  if (ec) return fail_errno(ec.value(), "cannot list {}: {}", dir.string(), ec.message());
  std::sort(names.begin(), names.end());
  std::vector<PciFunction> out;
  for (const auto& name : names) {
    if (!normalize_bdf(name)) continue;
    auto f = read_pci_function(sysfs_root, name);
    if (f && f->vendor == vendor) out.push_back(std::move(*f));
  }
  return out;
}

}  // namespace nvgrace::acpi
