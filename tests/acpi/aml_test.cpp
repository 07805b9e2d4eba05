// The AML reader and _DSD properties: nvgrace-model.md R3-R6, on ASL fixtures
// compiled by iasl at build time, and on hand-made malformed AML.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cstring>
#include <fstream>
#include <random>

#include "nvgrace/acpi/aml.hpp"
#include "nvgrace/acpi/gpu.hpp"
#include "nvgrace/acpi/sources.hpp"
#include "fixtures.hpp"

using namespace nvgrace::acpi;

namespace {

const std::string kFixtures = nvgrace::test::fixture_dir();

LoadedTables load(std::vector<std::filesystem::path> paths) {
  auto t = load_tables(paths);
  INFO((t ? std::string() : t.error().message));
  REQUIRE(t.has_value());
  return std::move(*t);
}

const GpuNode& gpu(const std::vector<GpuNode>& gpus, const std::string& path) {
  for (const auto& g : gpus)
    if (to_string(g.path) == path) return g;
  FAIL("no GPU at " << path);
  throw;
}

bool has_problem(const GpuNode& g, const std::string& text) {
  return std::any_of(g.problems.begin(), g.problems.end(),
                     [&](const std::string& p) { return p.find(text) != std::string::npos; });
}

// A DSDT around hand-written AML bytes, with a correct length and checksum.
Table make_dsdt(const std::vector<std::uint8_t>& body, const char* sig = "DSDT", std::uint8_t revision = 2) {
  std::vector<std::uint8_t> t(kTableHeaderSize, 0);
  std::memcpy(t.data(), sig, 4);
  t[8] = revision;
  t.insert(t.end(), body.begin(), body.end());
  const auto len = static_cast<std::uint32_t>(t.size());
  for (int i = 0; i < 4; ++i) t[4 + static_cast<std::size_t>(i)] = static_cast<std::uint8_t>(len >> (8 * i));
  unsigned sum = 0;
  for (auto b : t) sum += b;
  t[9] = static_cast<std::uint8_t>(0x100 - (sum & 0xFF));
  auto parsed = parse_table(t, "TEST");
  REQUIRE(parsed.has_value());
  return *parsed;
}

std::vector<std::uint8_t> seg(const char* s) { return {s, s + 4}; }

}  // namespace

TEST_CASE("R3: a Grace DSDT + SSDT directory yields every GPU node") {
  auto tables = load({kFixtures + "/host-tables"});
  REQUIRE(tables.tables.size() == 2);
  CHECK(tables.tables[0].source == "DSDT");
  CHECK(tables.tables[1].source == "SSDT1");
  auto ns = read_namespace(tables.tables);
  for (const auto& e : ns.errors) FAIL_CHECK(e.to_string());
  auto gpus = find_gpus(ns);
  CHECK(gpus.size() == 6);
}

TEST_CASE("R3: the Name-form _DSD carries the eight firmware properties in firmware order") {
  auto ns = read_namespace(load({kFixtures + "/host-tables"}).tables);
  const auto gpus = find_gpus(ns);
  const auto& g = gpu(gpus, "\\_SB_.PCI9.RP00.GPU0");
  CHECK(g.problems.empty());
  CHECK(g.segment == 9);
  CHECK(g.bus == 0);
  CHECK(g.adr_chain == std::vector<std::uint64_t>{0, 0});
  CHECK(to_string(*g.host_bridge) == "\\_SB_.PCI9");
  CHECK(g.mem.mem_base_pa == 0x400000000000ull);
  CHECK(g.mem.mem_size == 0x17E4F00000ull);
  CHECK(g.mem.mem_pxm_start == 16u);
  CHECK(g.mem.mem_pxm_count == 8u);
  CHECK(g.mem.egm_base_pa == 0x200000000000ull);
  CHECK(g.mem.egm_pxm == 4u);
  CHECK(g.mem.egm_size == 0x1000000000ull);
  CHECK(g.mem.egm_retired_pages_data_base == 0x2000FFFF0000ull);
  CHECK(g.table == "DSDT");
}

TEST_CASE("R4: Method(_DSD) returning a package, another UUID first, all integer encodings") {
  auto ns = read_namespace(load({kFixtures + "/host-tables"}).tables);
  const auto gpus = find_gpus(ns);
  const auto& g = gpu(gpus, "\\_SB_.PCI8.RP00.GPU0");
  CHECK(g.problems.empty());
  CHECK(g.segment == 8);
  CHECK(g.bus == 0x80);
  CHECK(g.adr_chain == std::vector<std::uint64_t>{0x20000, 0});  // _ADR from a method
  CHECK(g.mem.mem_base_pa == 0x480000000000ull);                 // QWord
  CHECK(g.mem.mem_size == 0xC0000000ull);                        // DWord, not the other UUID's string
  CHECK(g.mem.mem_pxm_start == 0x100u);                          // Word
  CHECK(g.mem.mem_pxm_count == 1u);                              // One
  CHECK(g.mem.egm_pxm == 0u);                                    // Zero
  CHECK(g.mem.egm_retired_pages_data_base == ~0ull);             // Ones, revision 2 table
}

TEST_CASE("R6: a GPU defined in an SSDT inside a Scope of a DSDT device") {
  auto ns = read_namespace(load({kFixtures + "/host-tables"}).tables);
  const auto gpus = find_gpus(ns);
  const auto& g = gpu(gpus, "\\_SB_.PCI9.RP01.GPU1");
  CHECK(g.table == "SSDT1");
  CHECK(g.segment == 9);
  CHECK(g.adr_chain == std::vector<std::uint64_t>{0x10000, 0});
  CHECK(g.mem.mem_size == 96ull << 30);
  CHECK(g.problems.empty());
}

TEST_CASE("R5: a missing size, a zero size and a mistyped size are reported") {
  auto ns = read_namespace(load({kFixtures + "/host-tables"}).tables);
  auto gpus = find_gpus(ns);
  CHECK(has_problem(gpu(gpus, "\\_SB_.PCI7.RP00.GPU0"), "nvidia,gpu-mem-size is missing"));
  const auto& zero = gpu(gpus, "\\_SB_.PCI6.RP00.GPU0");
  CHECK(zero.problems.empty());  // the layout model turns size 0 into passthrough
  CHECK(zero.mem.mem_size == 0u);
  const auto& str = gpu(gpus, "\\_SB_.PCI5.GPU0");
  CHECK(has_problem(str, "nvidia,gpu-mem-size is a string, not an integer"));
  CHECK(str.adr_chain == std::vector<std::uint64_t>{0x10000});
}

TEST_CASE("the reader skips noise: OperationRegion, Field, Mutex, methods with If/While/CreateDWordField") {
  auto ns = read_namespace(load({kFixtures + "/grace_dsdt.aml"}).tables);
  CHECK(ns.errors.empty());
  const Object* osc = ns.find(*parse_path("\\_SB.PCI9._OSC"));
  REQUIRE(osc);
  CHECK(osc->kind == ObjectKind::method);
  CHECK(osc->method_args == 4);
  const Object* sta = ns.find(*parse_path("\\_SB.PCI9.RP00._STA"));
  REQUIRE(sta);
  CHECK(*sta->value->integer() == 0x0F);
  CHECK(eisa_id_to_string(static_cast<std::uint32_t>(*ns.child_value(*parse_path("\\_SB.PCI9"), "_HID")->integer())) ==
        "PNP0A08");
}

TEST_CASE("acpidump text reads the same as the binary tables") {
  auto bin = read_namespace(load({kFixtures + "/grace_dsdt.aml", kFixtures + "/ssdt_gpu.aml"}).tables);
  auto text = load({kFixtures + "/grace_dsdt.acpidump", kFixtures + "/ssdt_gpu.acpidump"});
  CHECK(text.tables[0].source == "grace_dsdt.acpidump:DSDT");
  CHECK(text.tables[1].source == "ssdt_gpu.acpidump:SSDT1");
  CHECK(text.tables[0].checksum_ok);
  auto ns = read_namespace(text.tables);
  auto a = find_gpus(bin);
  auto b = find_gpus(ns);
  REQUIRE(a.size() == b.size());
  for (std::size_t i = 0; i < a.size(); ++i) {
    CHECK(a[i].path == b[i].path);
    CHECK(a[i].mem.mem_size == b[i].mem.mem_size);
  }
}

TEST_CASE("a single SSDT read without its DSDT still yields its GPU") {
  auto ns = read_namespace(load({kFixtures + "/ssdt_gpu.aml"}).tables);
  CHECK(ns.errors.empty());
  REQUIRE(ns.warnings.size() == 1);
  CHECK(ns.warnings[0].message.find("implicit scope") != std::string::npos);
  auto gpus = find_gpus(ns);
  REQUIRE(gpus.size() == 1);
  CHECK(to_string(gpus[0].path) == "\\_SB_.PCI9.RP01.GPU1");
  CHECK_FALSE(gpus[0].host_bridge);
}

TEST_CASE("acpidump text with a gap or no tables is an error naming the source") {
  auto gap = parse_acpidump("DSDT @ 0x0\n    0000: 44 53 44 54 24 00 00 00 02 00 00 00 00 00 00 00  DSDT\n"
                            "    0020: 00 00 00 00\n",
                            "dump.txt");
  REQUIRE_FALSE(gap.has_value());
  CHECK(gap.error().message == "dump.txt line 3: DSDT data at offset 0x20, expected 0x10");
  auto none = parse_acpidump("APIC @ 0x0\n    0000: 41 50 49 43\n", "dump.txt");
  REQUIRE_FALSE(none.has_value());
  auto trunc = parse_acpidump("DSDT @ 0x0\n    0000: 44 53 44 54 C6 00 00 00 02 00 00 00 00 00 00 00  DSDT\n",
                              "dump.txt");
  REQUIRE_FALSE(trunc.has_value());
  CHECK(trunc.error().message.find("dump.txt:DSDT: truncated at byte offset 16") == 0);
}

TEST_CASE("a directory without DSDT or SSDT, and a missing file, are errors") {
  auto empty = load_tables({kFixtures + "/host-tables/dynamic"});
  REQUIRE_FALSE(empty.has_value());
  CHECK(empty.error().message.find("no DSDT or SSDT") != std::string::npos);
  auto missing = load_tables({kFixtures + "/nope.aml"});
  REQUIRE_FALSE(missing.has_value());
  CHECK(missing.error().err == ENOENT);
}

TEST_CASE("malformed AML: truncated objects are errors naming the table and offset") {
  auto bytes = std::vector<std::uint8_t>{0x08};  // Name(
  auto name = seg("ABCD");
  bytes.insert(bytes.end(), name.begin(), name.end());
  bytes.push_back(0x0C);  // DWordPrefix with only two bytes after it
  bytes.push_back(0x01);
  bytes.push_back(0x02);
  auto ns = read_namespace(std::vector<Table>{make_dsdt(bytes)});
  REQUIRE(ns.errors.size() == 1);
  CHECK(ns.errors[0].to_string() == "TEST+0x2a: a 4-byte constant runs past the end; rest of the table skipped");
}

TEST_CASE("malformed AML: a PkgLength past the end skips the block and keeps what came before") {
  std::vector<std::uint8_t> body{0x08};  // Name(GOOD, One)
  auto good = seg("GOOD");
  body.insert(body.end(), good.begin(), good.end());
  body.push_back(0x01);
  body.push_back(0x10);  // Scope(\_SB_) with a PkgLength of 0x3F
  body.push_back(0x3F);
  auto sb = seg("_SB_");
  body.insert(body.end(), sb.begin(), sb.end());
  auto ns = read_namespace(std::vector<Table>{make_dsdt(body)});
  REQUIRE(ns.errors.size() == 1);
  CHECK(ns.errors[0].message.find("runs past the end of its enclosing block") != std::string::npos);
  CHECK(ns.errors[0].offset == 0x2B);
  CHECK(ns.find({"GOOD"}) != nullptr);
}

TEST_CASE("malformed AML: a package depth bomb is refused, not recursed into") {
  // Name(BOMB, Package(1){Package(1){...}}) nested 5000 deep; PkgLength of
  // each level uses 3 bytes, so build from the inside out.
  std::vector<std::uint8_t> inner{0x00};  // Zero
  for (int i = 0; i < 5000; ++i) {
    const std::size_t len = inner.size() + 1 + 3;  // count byte + PkgLength
    std::vector<std::uint8_t> level{0x12, static_cast<std::uint8_t>(0x80 | (len & 0x0F)),
                                    static_cast<std::uint8_t>(len >> 4), static_cast<std::uint8_t>(len >> 12), 0x01};
    level.insert(level.end(), inner.begin(), inner.end());
    inner.swap(level);
  }
  std::vector<std::uint8_t> body{0x08};
  auto bomb = seg("BOMB");
  body.insert(body.end(), bomb.begin(), bomb.end());
  body.insert(body.end(), inner.begin(), inner.end());
  auto ns = read_namespace(std::vector<Table>{make_dsdt(body)});
  REQUIRE(ns.errors.size() == 1);
  CHECK(ns.errors[0].message.find("nested deeper than 64") != std::string::npos);
}

TEST_CASE("malformed AML: scopes and devices under paths to nowhere become implicit scopes, with a warning") {
  // Scope(\NOPE) { Name(LOST, One) }  Device(\XX__.GPU0) {}  Name(KEPT, One)
  std::vector<std::uint8_t> body{0x10, 0x0C, 0x5C};
  auto nope = seg("NOPE"), lost = seg("LOST"), kept = seg("KEPT"), xx = seg("XX__"), gpu = seg("GPU0");
  body.insert(body.end(), nope.begin(), nope.end());
  body.push_back(0x08);
  body.insert(body.end(), lost.begin(), lost.end());
  body.push_back(0x01);
  body.insert(body.end(), {0x5B, 0x82, 0x0B, 0x5C, 0x2E});
  body.insert(body.end(), xx.begin(), xx.end());
  body.insert(body.end(), gpu.begin(), gpu.end());
  body.push_back(0x08);
  body.insert(body.end(), kept.begin(), kept.end());
  body.push_back(0x01);
  auto ns = read_namespace(std::vector<Table>{make_dsdt(body)});
  CHECK(ns.errors.empty());
  REQUIRE(ns.warnings.size() == 2);
  CHECK(ns.warnings[0].to_string() ==
        "TEST+0x24: Scope \\NOPE refers to \\NOPE, which the tables read do not define; opened as an implicit scope");
  CHECK(ns.warnings[1].message.find("Device \\XX__.GPU0 refers to \\XX__") == 0);
  CHECK(ns.find({"NOPE", "LOST"}) != nullptr);
  CHECK(ns.find({"XX__", "GPU0"})->kind == ObjectKind::device);
  CHECK(ns.find({"KEPT"}) != nullptr);
}

TEST_CASE("malformed AML: invalid name characters and names climbing above the root") {
  std::vector<std::uint8_t> bad{0x08, 'a', 'b', 'c', 'd', 0x01};
  auto ns = read_namespace(std::vector<Table>{make_dsdt(bad)});
  REQUIRE(ns.errors.size() == 1);
  CHECK(ns.errors[0].message.find("invalid name segment") != std::string::npos);
  std::vector<std::uint8_t> up{0x08, 0x5E, 'A', 'B', 'C', 'D', 0x01};
  auto ns2 = read_namespace(std::vector<Table>{make_dsdt(up)});
  REQUIRE(ns2.errors.size() == 1);
  CHECK(ns2.errors[0].message.find("climbs above the root") != std::string::npos);
}

TEST_CASE("tables other than DSDT/SSDT are ignored with a warning") {
  auto ns = read_namespace(std::vector<Table>{make_dsdt({}, "APIC")});
  CHECK(ns.errors.empty());
  REQUIRE(ns.warnings.size() == 1);
  CHECK(ns.warnings[0].message.find("APIC table ignored") != std::string::npos);
}

TEST_CASE("mutation: 20,000 corrupted fixture tables never crash or hang the reader") {
  std::vector<std::vector<std::uint8_t>> seeds;
  for (const char* f : {"/grace_dsdt.aml", "/ssdt_gpu.aml"}) {
    std::ifstream in(kFixtures + f, std::ios::binary);
    seeds.emplace_back(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
    REQUIRE(seeds.back().size() > kTableHeaderSize);
  }
  std::mt19937 rng(0xACB1);
  std::size_t with_errors = 0;
  for (int i = 0; i < 20000; ++i) {
    auto bytes = seeds[static_cast<std::size_t>(i) % seeds.size()];
    const int edits = 1 + static_cast<int>(rng() % 8);
    for (int e = 0; e < edits; ++e) {
      const std::size_t at = kTableHeaderSize + rng() % (bytes.size() - kTableHeaderSize);
      switch (rng() % 5) {
        case 0: bytes[at] ^= static_cast<std::uint8_t>(1u << (rng() % 8)); break;
        case 1: bytes[at] = static_cast<std::uint8_t>(rng()); break;
        case 2: bytes[at] = static_cast<std::uint8_t>(rng() % 2 ? 0xFF : 0x5B); break;  // PkgLength/ext prefixes
        case 3: bytes.resize(std::max(kTableHeaderSize + 1, at)); break;
        case 4: bytes.insert(bytes.begin() + static_cast<std::ptrdiff_t>(at), static_cast<std::uint8_t>(rng())); break;
      }
    }
    // Keep the header's length honest so the AML itself is what is tested.
    const auto len = static_cast<std::uint32_t>(bytes.size());
    for (int b = 0; b < 4; ++b) bytes[4 + static_cast<std::size_t>(b)] = static_cast<std::uint8_t>(len >> (8 * b));
    auto table = parse_table(bytes, "MUTANT");
    REQUIRE(table.has_value());
    auto ns = read_namespace(std::vector<Table>{*table});
    auto gpus = find_gpus(ns);
    if (!ns.errors.empty()) ++with_errors;
    for (const auto& g : gpus) CHECK_FALSE(g.path.empty());
  }
  // Most mutants must hit the error paths, or the test is not exercising them.
  CHECK(with_errors > 5000);
}

TEST_CASE("the DSDT's revision sets every table's integer width, as Linux's ACPICA does (R3)") {
  // Name (BASE, 0x60000000000) and Name (ONES, Ones) in an SSDT of revision 2.
  std::vector<std::uint8_t> body = {0x08};
  for (auto c : seg("BASE")) body.push_back(c);
  body.insert(body.end(), {0x0E, 0x00, 0x00, 0x00, 0x00, 0x00, 0x06, 0x00, 0x00});
  body.push_back(0x08);
  for (auto c : seg("ONES")) body.push_back(c);
  body.push_back(0xFF);
  const Table ssdt = make_dsdt(body, "SSDT", 2);
  auto value = [](const Namespace& ns, const char* name) {
    const Value* v = ns.child_value({}, name);
    REQUIRE(v != nullptr);
    REQUIRE(v->integer() != nullptr);
    return *v->integer();
  };
  SECTION("a revision 1 DSDT (QEMU's q35): 32 bits, the base cut, with a warning naming why") {
    const std::vector<Table> tables{make_dsdt({}, "DSDT", 1), ssdt};
    const auto ns = read_namespace(tables);
    CHECK(value(ns, "BASE") == 0);
    CHECK(value(ns, "ONES") == 0xFFFFFFFFu);
    REQUIRE(ns.warnings.size() == 1);
    CHECK(ns.warnings[0].message ==
          "64-bit constant 0x60000000000 read as 0x0: the DSDT is revision 1, so every AML integer is 32 bits wide, "
          "and Linux (ACPICA) cuts it the same way");
  }
  SECTION("a revision 2 DSDT: 64 bits") {
    const std::vector<Table> tables{make_dsdt({}, "DSDT", 2), ssdt};
    const auto ns = read_namespace(tables);
    CHECK(value(ns, "BASE") == 0x60000000000ull);
    CHECK(value(ns, "ONES") == ~0ull);
    CHECK(ns.warnings.empty());
  }
  SECTION("no DSDT: 64 bits, ACPICA's default") {
    const std::vector<Table> tables{ssdt};
    CHECK(value(read_namespace(tables), "BASE") == 0x60000000000ull);
  }
}
