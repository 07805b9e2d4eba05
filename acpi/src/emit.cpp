#include "nvgrace/acpi/emit.hpp"

#include <fcntl.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cctype>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iterator>
#include <sstream>

#include <fmt/format.h>

extern char** environ;

namespace nvgrace::acpi {
namespace {

// An ACPI name segment: a letter or '_', then up to three of letters, digits
// and '_' (ACPI 6.5, 20.2.2 Name Objects Encoding).
bool valid_segment(std::string_view s) {
  if (s.empty() || s.size() > 4) return false;
  auto upper = [](char c) { return c >= 'A' && c <= 'Z'; };
  auto digit = [](char c) { return c >= '0' && c <= '9'; };
  if (!upper(s[0]) && s[0] != '_') return false;
  for (char c : s.substr(1))
    if (!upper(c) && !digit(c) && c != '_') return false;
  return true;
}

// A DT node path: '/'-separated names of node-name characters (DTSpec 2.2.1).
bool valid_node_path(std::string_view p) {
  if (p.size() < 2 || p.front() != '/' || p.back() == '/') return false;
  for (char c : p)
    if (!(std::isalnum(static_cast<unsigned char>(c)) || std::string_view(",._+-@/").find(c) != std::string_view::npos))
      return false;
  return p.find("//") == std::string_view::npos;
}

std::string comment_block(const std::vector<std::string>& lines, std::string_view open, std::string_view prefix,
                          std::string_view close) {
  if (lines.empty()) return {};
  std::string s{open};
  for (const auto& l : lines) s += fmt::format("{}{}\n", prefix, l);
  s += close;
  return s;
}

}  // namespace

Path q35_slot_device(unsigned slot, unsigned function) {
  return {"_SB_", "PCI0", fmt::format("S{:02X}", (slot << 3) | function)};
}

Path q35_root_port_device(unsigned slot, unsigned function) {
  auto p = q35_slot_device(slot, function);
  p.push_back("S00");
  return p;
}

Result<std::string> emit_ssdt_asl(const SsdtRequest& r) {
  if (r.device.empty()) return fail("no ACPI device to put the _DSD on");
  for (const auto& seg : r.device)
    if (!valid_segment(seg)) return fail("'{}' is not an ACPI name segment (in {})", seg, to_string(r.device));
  if (r.oem_table_id.empty() || r.oem_table_id.size() > 8)
    return fail("OEM table id '{}' must be 1 to 8 characters", r.oem_table_id);
  const auto device = to_string(r.device);
  std::string s = comment_block(r.comment, "/*\n", " * ", " */\n");
  // Revision 2 (64-bit integers), though Linux's ACPICA takes the width
  // from the DSDT alone: under QEMU q35's revision 1 DSDT every integer is
  // read as 32 bits (the firmware command refuses values that do not fit).
  s += fmt::format("DefinitionBlock (\"\", \"SSDT\", 2, \"NVGRCE\", \"{}\", 1)\n{{\n", r.oem_table_id);
  s += fmt::format("    External ({}, DeviceObj)\n\n", device);
  s += fmt::format("    Scope ({})\n    {{\n", device);
  const std::string in = "        ";
  s += in + "Name (_DSD, Package ()\n" + in + "{\n";
  s += in + "    ToUUID (\"daffd814-6eba-4d8c-8a91-bc9bbf4aa301\"),\n";
  s += in + "    Package ()\n" + in + "    {\n";
  for (const auto& f : kGpuMemoryFields)
    if (const auto& v = r.props.*f.member)
      s += fmt::format("{}        Package () {{ \"{}\", {:#x} }},\n", in, f.name, *v);
  s += in + "    }\n" + in + "})\n";
  s += "    }\n}\n";
  return s;
}

Result<std::string> emit_dts_fragment(const DtsRequest& r) {
  if (!valid_node_path(r.host_bridge)) return fail("'{}' is not a device-tree node path", r.host_bridge);
  if (r.bus > 255 || r.slot > 31 || r.function > 7)
    return fail("{:02x}:{:02x}.{} is not a PCI address (bus <= 0xff, slot <= 0x1f, function <= 7)", r.bus, r.slot,
                r.function);
  if (!r.props.mem_base_pa || !r.props.mem_size) return fail("the memory base and size are required");
  const auto base = *r.props.mem_base_pa, size = *r.props.mem_size;
  std::string s = comment_block(r.comment, "/*\n", " * ", " */\n");
  // The memory: kept from the guest kernel as Grace keeps it out of the
  // host's linear map (R37). The root of QEMU's virt has 2 address and 2
  // size cells.
  s += "/ {\n\treserved-memory {\n\t\t#address-cells = <2>;\n\t\t#size-cells = <2>;\n\t\tranges;\n\n";
  s += fmt::format("\t\tnvgrace-gpu-memory@{:x} {{\n\t\t\treg = <{:#x} {:#x} {:#x} {:#x}>;\n\t\t\tno-map;\n\t\t}};\n",
                   base, base >> 32, base & 0xffffffffu, size >> 32, size & 0xffffffffu);
  s += "\t};\n};\n\n";
  // The function's node: a PCI child is matched by the devfn in the first
  // cell of its reg (IEEE 1275 PCI binding: bus << 16 | devfn << 8); behind
  // a root port, the port's node holds the function's (Linux matches the
  // devfn only; the bus is the port's secondary bus, 1 here).
  const unsigned devfn = (r.slot << 3) | r.function;
  const auto unit = r.function ? fmt::format("{:x},{:x}", r.slot, r.function) : fmt::format("{:x}", r.slot);
  const auto props = [&](std::string_view in) {
    std::string p;
    for (const auto& f : kGpuMemoryFields)
      if (const auto& v = r.props.*f.member) p += fmt::format("{}{} = /bits/ 64 <{:#x}>;\n", in, f.name, *v);
    return p;
  };
  s += fmt::format("&{{{}}} {{\n", r.host_bridge);
  if (r.behind_root_port) {
    s += fmt::format("\tpci@{} {{\n\t\treg = <{:#x} 0x0 0x0 0x0 0x0>;\n\t\tdevice_type = \"pci\";\n"
                     "\t\t#address-cells = <3>;\n\t\t#size-cells = <2>;\n\t\tranges;\n\n",
                     unit, (r.bus << 16) | (devfn << 8));
    s += fmt::format("\t\tgpu@0 {{\n\t\t\treg = <{:#x} 0x0 0x0 0x0 0x0>;\n", (r.bus + 1) << 16);
    s += props("\t\t\t") + "\t\t};\n\t};\n};\n";
  } else {
    s += fmt::format("\tgpu@{} {{\n\t\treg = <{:#x} 0x0 0x0 0x0 0x0>;\n", unit, (r.bus << 16) | (devfn << 8));
    s += props("\t\t") + "\t};\n};\n";
  }
  return s;
}

Result<std::vector<std::uint8_t>> compile_asl(const std::string& asl) {
  const char* tmp = std::getenv("TMPDIR");
  std::string dir = fmt::format("{}/nvgrace-iasl-XXXXXX", tmp && *tmp ? tmp : "/tmp");
  if (!::mkdtemp(dir.data())) return fail_errno(errno, "mkdtemp {}", dir);
  struct Cleanup {
    std::string dir;
    ~Cleanup() {
      for (const char* f : {"/in.asl", "/out.aml", "/iasl.log"}) ::unlink((dir + f).c_str());
      ::rmdir(dir.c_str());
    }
  } cleanup{dir};
  {
    std::ofstream in(dir + "/in.asl");
    in << asl;
    if (!in.flush()) return fail("cannot write {}/in.asl", dir);
  }
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  const std::string log = dir + "/iasl.log";
  posix_spawn_file_actions_addopen(&actions, STDOUT_FILENO, log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
  posix_spawn_file_actions_adddup2(&actions, STDOUT_FILENO, STDERR_FILENO);
  std::string out = dir + "/out", in = dir + "/in.asl";
  std::string a0 = "iasl", a1 = "-p";
  char* argv[] = {a0.data(), a1.data(), out.data(), in.data(), nullptr};
  pid_t pid = 0;
  const int rc = ::posix_spawnp(&pid, "iasl", &actions, nullptr, argv, environ);
  posix_spawn_file_actions_destroy(&actions);
  if (rc != 0) return fail("cannot run iasl ({}): install ACPICA's iasl (Debian: acpica-tools)", std::strerror(rc));
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0)
    if (errno != EINTR) return fail_errno(errno, "waitpid iasl");
  auto slurp = [](const std::string& path) {
    std::ifstream f(path, std::ios::binary);
    return std::vector<std::uint8_t>(std::istreambuf_iterator<char>(f), {});
  };
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    const auto msg = slurp(log);
    std::string text(msg.begin(), msg.end());
    // iasl's banner comes first; its error lines are the ones worth showing.
    std::string errors;
    std::istringstream lines(text);
    for (std::string l; std::getline(lines, l);)
      if (l.find("Error") != std::string::npos || l.find("error") != std::string::npos) errors += l + "; ";
    return fail("iasl refused the table: {}", errors.empty() ? text : errors);
  }
  auto aml = slurp(out + ".aml");
  if (aml.empty()) return fail("iasl wrote no table ({}.aml)", out);
  return aml;
}

}  // namespace nvgrace::acpi
