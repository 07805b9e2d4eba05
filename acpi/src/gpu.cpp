#include "nvgrace/acpi/gpu.hpp"

#include <algorithm>
#include <set>

#include <fmt/format.h>

namespace nvgrace::acpi {
namespace {

bool is_uuid(const Value& v, const std::array<std::uint8_t, 16>& uuid) {
  const Buffer* b = v.buffer();
  return b && b->bytes.size() == 16 && std::equal(uuid.begin(), uuid.end(), b->bytes.begin());
}

std::optional<std::string> hid_string(const Value* v) {
  if (!v) return std::nullopt;
  if (const auto* s = v->string()) return *s;
  if (const auto* i = v->integer()) return eisa_id_to_string(static_cast<std::uint32_t>(*i));
  return std::nullopt;
}

bool is_host_bridge(const Namespace& ns, const Path& p) {
  const Object* o = ns.find(p);
  if (!o || o->kind != ObjectKind::device) return false;
  auto matches = [](const std::optional<std::string>& id) { return id == "PNP0A08" || id == "PNP0A03"; };
  if (matches(hid_string(ns.child_value(p, "_HID")))) return true;
  if (const Value* cid = ns.child_value(p, "_CID")) {
    if (matches(hid_string(cid))) return true;
    if (const auto* pkg = cid->package())
      for (const auto& e : *pkg)
        if (matches(hid_string(&e))) return true;
  }
  return false;
}

}  // namespace

DeviceProperties parse_dsd(const Value& dsd) {
  DeviceProperties out;
  const Package* top = dsd.package();
  if (!top) {
    out.problems.push_back(fmt::format("_DSD is {}, not a package", dsd.type_name()));
    return out;
  }
  if (top->size() % 2 != 0) out.problems.push_back("_DSD has an odd number of elements; the last one is ignored");
  for (std::size_t i = 0; i + 1 < top->size(); i += 2) {
    const Value& uuid = (*top)[i];
    const Value& data = (*top)[i + 1];
    if (!uuid.buffer() || uuid.buffer()->bytes.size() != 16) {
      out.problems.push_back(fmt::format("_DSD element {} is {}, not a 16-byte UUID", i, uuid.type_name()));
      continue;
    }
    if (!is_uuid(uuid, kDevicePropertiesUuid)) {
      ++out.other_uuids;
      continue;
    }
    const Package* props = data.package();
    if (!props) {
      out.problems.push_back(fmt::format("_DSD device properties are {}, not a package", data.type_name()));
      continue;
    }
    for (const auto& entry : *props) {
      const Package* kv = entry.package();
      if (!kv || kv->size() != 2 || !(*kv)[0].string()) {
        out.problems.push_back("_DSD property is not a {name, value} pair");
        continue;
      }
      out.properties.push_back({*(*kv)[0].string(), (*kv)[1]});
    }
  }
  return out;
}

GpuNode describe_node(const Namespace& ns, const Path& path) {
  GpuNode g;
  g.path = path;
  if (const Object* o = ns.find(path)) g.table = o->table;

  // Walk up to the host bridge, collecting _ADR on the way (R6).
  std::vector<std::uint64_t> adrs;
  for (Path p = path; !p.empty(); p.pop_back()) {
    if (is_host_bridge(ns, p)) {
      g.host_bridge = p;
      if (const Value* seg = ns.child_value(p, "_SEG"); seg && seg->integer()) g.segment = *seg->integer();
      if (const Value* bbn = ns.child_value(p, "_BBN"); bbn && bbn->integer()) g.bus = *bbn->integer();
      break;
    }
    if (const Value* adr = ns.child_value(p, "_ADR"); adr && adr->integer()) adrs.push_back(*adr->integer());
  }
  // Without a host bridge (an SSDT read on its own) the segment is unknown
  // and reported as 0; the memory properties are still good.
  g.adr_chain.assign(adrs.rbegin(), adrs.rend());

  Path dsd_path = path;
  dsd_path.push_back("_DSD");
  const Object* dsd_obj = ns.find(dsd_path);
  const Value* dsd = ns.child_value(path, "_DSD");
  if (!dsd) {
    g.problems.push_back(dsd_obj && dsd_obj->kind == ObjectKind::method
                             ? "_DSD is a method that does not simply return a package; it cannot be read (R4)"
                             : "no _DSD (R3)");
    return g;
  }
  auto props = parse_dsd(*dsd);
  g.problems.insert(g.problems.end(), props.problems.begin(), props.problems.end());

  std::set<std::string_view> present;  // mistyped ones too: they are reported as such, not as missing
  for (const auto& prop : props.properties) {
    for (const auto& f : kGpuMemoryFields) {
      if (prop.name != f.name) continue;
      present.insert(f.name);
      if (const auto* i = prop.value.integer())
        g.mem.*f.member = *i;
      else
        g.problems.push_back(fmt::format("{} is {}, not an integer", f.name, prop.value.type_name()));
    }
  }
  // R5: the two properties the layout needs.
  for (std::string_view required : kRequiredGpuMemoryProperties)
    if (!present.count(required)) g.problems.push_back(fmt::format("{} is missing from _DSD", required));
  return g;
}

std::vector<GpuNode> find_gpus(const Namespace& ns) {
  std::vector<GpuNode> out;
  for (const auto& [key, obj] : ns.objects) {
    // A Scope too: an SSDT read without the DSDT that defines its device
    // (as `nvgrace firmware` writes one for a VMM's slot device) opens the
    // device as an implicit scope.
    if (obj.kind != ObjectKind::device && obj.kind != ObjectKind::scope) continue;
    const Value* dsd = ns.child_value(obj.path, "_DSD");
    if (!dsd) continue;
    auto props = parse_dsd(*dsd);
    const bool grace = std::any_of(props.properties.begin(), props.properties.end(),
                                   [](const Property& p) { return p.name.starts_with("nvidia,gpu-mem-"); });
    if (grace) out.push_back(describe_node(ns, obj.path));
  }
  // Stable, readable order: by segment, then bus, then path.
  std::sort(out.begin(), out.end(), [](const GpuNode& a, const GpuNode& b) {
    return std::tie(a.segment, a.bus, a.adr_chain, a.path) < std::tie(b.segment, b.bus, b.adr_chain, b.path);
  });
  return out;
}

}  // namespace nvgrace::acpi
