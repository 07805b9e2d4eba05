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

// The device-tree node behind <bdf>/of_node (a link into
// <root>/firmware/devicetree/base), as the node path in the tree.
std::optional<std::string> of_node_path(const fs::path& link) {
  std::error_code ec;
  const auto target = fs::canonical(link, ec);
  if (ec) return std::nullopt;
  const std::string t = target.string();
  constexpr std::string_view base = "/firmware/devicetree/base";
  const auto at = t.find(base);
  if (at == std::string::npos) return t;
  const auto rest = t.substr(at + base.size());
  return rest.empty() ? std::string("/") : rest;
}

// R38 on a device tree: each property a 64-bit big-endian value. Linux's
// device_property_read_u64 refuses a shorter one (-EOVERFLOW) and reads
// the first 8 bytes of a longer one; so does this.
void read_of_properties(const fs::path& node, PciFunction& f) {
  for (const auto& field : kGpuMemoryFields) {
    std::ifstream in(node / std::string(field.name), std::ios::binary);
    if (!in) continue;
    if (field.name.starts_with("nvidia,gpu-mem-")) f.of_has_gpu_properties = true;
    std::vector<std::uint8_t> b(std::istreambuf_iterator<char>(in), {});
    if (b.size() < 8) {
      f.of_problems.push_back(fmt::format("{} is {} bytes on the device-tree node; it needs 8 (/bits/ 64)",
                                          field.name, b.size()));
      continue;
    }
    std::uint64_t v = 0;
    for (int i = 0; i < 8; ++i) v = (v << 8) | b[static_cast<std::size_t>(i)];
    f.of_properties.*field.member = v;
  }
  if (!f.of_has_gpu_properties) return;
  for (auto required : kRequiredGpuMemoryProperties) {
    const bool have = std::any_of(kGpuMemoryFields.begin(), kGpuMemoryFields.end(), [&](const GpuMemoryField& fld) {
      return fld.name == required && (f.of_properties.*fld.member).has_value();
    });
    const bool reported = std::any_of(f.of_problems.begin(), f.of_problems.end(),
                                      [&](const std::string& p) { return p.starts_with(required); });
    if (!have && !reported) f.of_problems.push_back(fmt::format("{} is missing from the device-tree node", required));
  }
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
  if (fs::exists(dir / "of_node", ec)) {
    f.of_node = of_node_path(dir / "of_node");
    read_of_properties(dir / "of_node", f);
  }
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
