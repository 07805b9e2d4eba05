#include "nvgrace/acpi/sysfs.hpp"

#include <algorithm>
#include <charconv>
#include <cstring>
#include <fstream>

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

Result<PciFunction> read_pci_function(const fs::path& sysfs_root, const Bdf& bdf) {
  const fs::path dir = sysfs_root / "bus/pci/devices" / bdf.to_string();
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
    auto bdf = Bdf::parse(name);
    if (!bdf || bdf->to_string() != name) continue;  // sysfs names functions DDDD:BB:DD.F
    auto f = read_pci_function(sysfs_root, *bdf);
    if (f && f->vendor == vendor) out.push_back(std::move(*f));
  }
  return out;
}

}  // namespace nvgrace::acpi
