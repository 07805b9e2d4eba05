// Named arm64 CPU models: nvgrace-model.md R34-R36; docs/cpu-models.md.
#include <catch2/catch.hpp>

#include <array>
#include <map>
#include <set>
#include <string>

#include "nvgrace/cpu/model.hpp"

using namespace nvgrace::cpu;

namespace {

const Field& field(std::string_view name) {
  const Field* f = find_field(name);
  INFO(name);
  REQUIRE(f != nullptr);
  return *f;
}

ResolvedModel resolved(std::string_view spec) {
  auto m = resolve(spec);
  INFO(spec);
  REQUIRE(m.has_value());
  return *m;
}

SveVls vls(std::initializer_list<unsigned> bits) {
  SveVls v{};
  for (unsigned b : bits) v[(b / 128 - 1) / 64] |= std::uint64_t{1} << ((b / 128 - 1) % 64);
  return v;
}

std::array<std::uint64_t, 192> all_writable() {
  std::array<std::uint64_t, 192> w{};
  w.fill(~std::uint64_t{0});
  return w;
}

// A host whose registers hold exactly grace-v1's values, plus bits the model
// does not set (PFR0.GIC = 1, ISAR0.TME = 1) to show they are kept.
HostView grace_host() {
  HostView h;
  for (const auto& [reg, vm] : resolved("grace-v1").regs) h.values[reg] = vm.first;
  h.values["ID_AA64PFR0_EL1"] |= std::uint64_t{1} << 24;
  h.values["ID_AA64ISAR0_EL1"] |= std::uint64_t{1} << 24;
  h.values["MIDR_EL1"] = 0x410FD4F0;
  h.writable = all_writable();
  h.sve = vls({128});
  return h;
}

const FieldCheck& check_of(const std::vector<FieldCheck>& checks, std::string_view reg, std::string_view f) {
  for (const auto& c : checks)
    if (c.reg == reg && c.field == f) return c;
  FAIL("no check for " << reg << "." << f);
  throw;  // unreachable: FAIL throws
}

// ID registers read at EL1 on a Neoverse V2 r0p1 (AWS m8g.metal, Graviton4):
// rems-project/system-litmus-harness hw-results/hw-refs/ec2-m8g.metal/id.txt.
const std::map<std::string, std::uint64_t, std::less<>> kGraviton4{
    {"MIDR_EL1", 0x410FD4F1},
    {"ID_AA64PFR0_EL1", 0x1101011121111111},
    {"ID_AA64PFR1_EL1", 0x21},
    {"ID_AA64DFR0_EL1", 0xF010305609},
    {"ID_AA64ISAR0_EL1", 0x1221100110212120},
    {"ID_AA64ISAR1_EL1", 0x0011111101211052},
    {"ID_AA64MMFR0_EL1", 0x0000022200101125},
    {"ID_AA64MMFR1_EL1", 0x10312122},
};

}  // namespace

TEST_CASE("R36: safe values follow each kernel policy, signed fields sign-extended") {
  // A HIGHER_OR_ZERO_SAFE field: no ID_AA64 register has one, CTR_EL0.CWG does.
  const Field cwg{"CWG", "CTR_EL0", 24, 4, false, Policy::higher_or_zero_safe, 0};
  struct Row {
    const Field* f;
    std::uint64_t want, have, safe;
  };
  const Row rows[] = {
      // LOWER_SAFE, unsigned: the smaller
      {&field("SHA1"), 1, 0, 0},
      {&field("SHA1"), 0, 1, 0},
      {&field("ID_AA64ISAR0_EL1.AES"), 2, 1, 1},
      // LOWER_SAFE, signed: 0xF is -1, the lowest; unsigned arithmetic would give 0
      {&field("FP"), 0xF, 0, 0xF},
      {&field("FP"), 0, 0xF, 0xF},
      {&field("FP"), 1, 0, 0},
      {&field("AdvSIMD"), 0xF, 1, 0xF},
      {&field("TGRAN4"), 0, 0xF, 0xF},
      {&field("TGRAN64"), 0x7, 0x8, 0x8},  // 0x8 is -8, below 7
      {&field("DoubleLock"), 0, 0xF, 0xF},
      {&field("E2H0"), 0xE, 0, 0xE},  // -2
      // HIGHER_SAFE: the larger
      {&field("SpecSEI"), 0, 1, 1},
      {&field("SpecSEI"), 1, 0, 1},
      // HIGHER_OR_ZERO_SAFE: 0 if either is 0, else the larger
      {&cwg, 0, 4, 0},
      {&cwg, 4, 0, 0},
      {&cwg, 3, 4, 4},
      {&cwg, 5, 4, 5},
      // EXACT: always the table's safe value
      {&field("APA"), 5, 3, 0},
      {&field("APA"), 5, 5, 0},
      {&field("TGRAN4_2"), 2, 3, 1},
      {&field("DebugVer"), 8, 9, 6},
      {&field("FA64"), 1, 0, 0},
  };
  for (const auto& r : rows) {
    INFO(r.f->reg << "." << r.f->name << " " << policy_name(r.f->policy) << " want " << r.want << " have "
                  << r.have);
    CHECK(safe_value(*r.f, r.want, r.have) == r.safe);
  }
}

TEST_CASE("R36: KVM checks ID_AA64DFR0_EL1.PMUVer and DebugVer as LOWER_SAFE") {
  CHECK(field("DebugVer").policy == Policy::exact);
  CHECK(kvm_policy(field("DebugVer")) == Policy::lower_safe);
  CHECK(kvm_policy(field("PMUVer")) == Policy::lower_safe);
  CHECK(kvm_policy(field("APA")) == Policy::exact);
  CHECK(kvm_policy(field("SHA1")) == Policy::lower_safe);
  CHECK(safe_value(field("DebugVer"), 8, 9) == 6);
  CHECK(kvm_safe_value(field("DebugVer"), 8, 9) == 8);
  CHECK(kvm_safe_value(field("DebugVer"), 10, 9) == 9);
  // PMUVer is signed: 0xF (IMP DEF PMU) is below any version.
  CHECK(kvm_safe_value(field("PMUVer"), 0xF, 1) == 0xF);
  CHECK(policy_name(Policy::lower_safe) == "LOWER_SAFE");
  CHECK(policy_name(Policy::higher_safe) == "HIGHER_SAFE");
  CHECK(policy_name(Policy::higher_or_zero_safe) == "HIGHER_OR_ZERO_SAFE");
  CHECK(policy_name(Policy::exact) == "EXACT");
}

TEST_CASE("field masks and extraction") {
  struct Row {
    std::string_view name;
    std::uint64_t mask;
  };
  const Row rows[] = {
      {"SVE", 0x0000000F00000000},   {"EL0", 0xF},
      {"CSV3", 0xF000000000000000},  {"FA64", 0x8000000000000000},
      {"LUTv2", 0x1000000000000000}, {"SMOP4", 0x1},
      {"ID_AA64SMFR0_EL1.AES", 0x1000000}, {"SME", 0x0F000000},
      {"TGRAN4_2", 0xF0000000000},
  };
  for (const auto& r : rows) {
    INFO(r.name);
    CHECK(field(r.name).mask() == r.mask);
  }
  const std::uint64_t pfr0 = kGraviton4.at("ID_AA64PFR0_EL1");
  CHECK(field("SVE").extract(pfr0) == 1);
  CHECK(field("RAS").extract(pfr0) == 2);
  CHECK(field("CSV3").extract(pfr0) == 1);
  CHECK(field("DoubleLock").extract(kGraviton4.at("ID_AA64DFR0_EL1")) == 0xF);
  CHECK(field("FA64").extract(~std::uint64_t{0}) == 1);
}

TEST_CASE("ID registers: KVM one-reg ids") {
  struct Row {
    std::string_view reg;
    std::uint64_t id;
  };
  const Row rows[] = {
      {"MIDR_EL1", 0x603000000013c000},         {"ID_AA64PFR0_EL1", 0x603000000013c020},
      {"ID_AA64PFR1_EL1", 0x603000000013c021},  {"ID_AA64ZFR0_EL1", 0x603000000013c024},
      {"ID_AA64SMFR0_EL1", 0x603000000013c025}, {"ID_AA64DFR0_EL1", 0x603000000013c028},
      {"ID_AA64ISAR0_EL1", 0x603000000013c030}, {"ID_AA64ISAR2_EL1", 0x603000000013c032},
      {"ID_AA64MMFR0_EL1", 0x603000000013c038}, {"ID_AA64MMFR2_EL1", 0x603000000013c03a},
      {"ID_AA64MMFR4_EL1", 0x603000000013c03c},
  };
  for (const auto& r : rows) {
    INFO(r.reg);
    const IdReg* reg = find_register(r.reg);
    REQUIRE(reg != nullptr);
    CHECK(reg->kvm_reg_id() == r.id);
  }
  CHECK(find_register("id_aa64pfr0_el1") == find_register("ID_AA64PFR0_EL1"));
  CHECK(find_register("ID_AA64PFR9_EL1") == nullptr);
}

TEST_CASE("ID registers: KVM_ARM_FEATURE_ID_RANGE_IDX writable-mask indices") {
  struct Row {
    std::string_view reg;
    unsigned index;
  };
  const Row rows[] = {
      {"MIDR_EL1", 0},          {"ID_AA64PFR0_EL1", 32},  {"ID_AA64PFR1_EL1", 33}, {"ID_AA64ZFR0_EL1", 36},
      {"ID_AA64SMFR0_EL1", 37}, {"ID_AA64DFR0_EL1", 40},  {"ID_AA64ISAR0_EL1", 48}, {"ID_AA64ISAR3_EL1", 51},
      {"ID_AA64MMFR0_EL1", 56}, {"ID_AA64MMFR4_EL1", 60},
  };
  for (const auto& r : rows) {
    INFO(r.reg);
    CHECK(find_register(r.reg)->writable_mask_index() == r.index);
  }
  // op1 3 (the EL0-readable space) maps to the third block: CTR_EL0 is 129.
  CHECK(IdReg{"CTR_EL0", 3, 3, 0, 0, 1}.writable_mask_index() == 129);
  CHECK(IdReg{"X", 3, 1, 0, 0, 1}.writable_mask_index() == 65);
  for (const auto& reg : id_registers()) CHECK(reg.writable_mask_index() < 192);
}

TEST_CASE("the field table: every kernel field, none overlapping within a register") {
  // Entries per register in the kernel's ftr_id_aa64* tables (6.18).
  const std::map<std::string_view, std::size_t> expected{
      {"ID_AA64PFR0_EL1", 15},  {"ID_AA64PFR1_EL1", 7},  {"ID_AA64PFR2_EL1", 1},  {"ID_AA64ZFR0_EL1", 12},
      {"ID_AA64SMFR0_EL1", 23}, {"ID_AA64DFR0_EL1", 7},  {"ID_AA64ISAR0_EL1", 14}, {"ID_AA64ISAR1_EL1", 15},
      {"ID_AA64ISAR2_EL1", 10}, {"ID_AA64ISAR3_EL1", 2}, {"ID_AA64MMFR0_EL1", 14}, {"ID_AA64MMFR1_EL1", 14},
      {"ID_AA64MMFR2_EL1", 15}, {"ID_AA64MMFR3_EL1", 3}, {"ID_AA64MMFR4_EL1", 2},
  };
  std::map<std::string_view, std::size_t> count;
  std::map<std::string_view, std::uint64_t> used;
  for (const auto& f : fields()) {
    INFO(f.reg << "." << f.name);
    REQUIRE(find_register(f.reg) != nullptr);
    CHECK(f.reg != "MIDR_EL1");
    CHECK(f.width >= 1);
    CHECK(f.shift + f.width <= 64);
    CHECK((used[f.reg] & f.mask()) == 0);
    used[f.reg] |= f.mask();
    CHECK(f.safe_val <= (f.mask() >> f.shift));
    CHECK(find_field(std::string(f.reg) + "." + std::string(f.name)) == &f);
    ++count[f.reg];
  }
  CHECK(count == expected);
  CHECK(fields().size() == 154);
  // The signed fields are exactly the kernel's S_ARM64_FTR_BITS entries.
  std::set<std::string> signed_fields;
  for (const auto& f : fields())
    if (f.is_signed) signed_fields.insert(std::string(f.reg) + "." + std::string(f.name));
  CHECK(signed_fields == std::set<std::string>{"ID_AA64PFR0_EL1.AdvSIMD", "ID_AA64PFR0_EL1.FP",
                                               "ID_AA64DFR0_EL1.DoubleLock", "ID_AA64DFR0_EL1.PMUVer",
                                               "ID_AA64MMFR0_EL1.TGRAN4", "ID_AA64MMFR0_EL1.TGRAN64",
                                               "ID_AA64MMFR4_EL1.E2H0"});
}

TEST_CASE("find_field takes plain, register-qualified and any-case names") {
  CHECK(field("SHA1").reg == "ID_AA64ISAR0_EL1");
  CHECK(field("sha1").name == "SHA1");
  CHECK(field("ID_AA64ISAR1_EL1.I8MM").shift == 52);
  CHECK(field("id_aa64zfr0_el1.i8mm").shift == 44);
  CHECK(find_field("I8MM") == nullptr);  // ISAR1 and ZFR0
  CHECK(find_field("SM4") == nullptr);   // ISAR0 and ZFR0
  CHECK(fields_named("AES").size() == 3);
  CHECK(fields_named("SHA1").size() == 1);
  CHECK(fields_named("NOPE").empty());
  CHECK(find_field("ID_AA64ZFR0_EL1.SHA1") == nullptr);
  CHECK(find_field("ID_AA64PFR9_EL1.SVE") == nullptr);
  CHECK(find_field("") == nullptr);
}

TEST_CASE("R36: every model value names a field and fits it, parents exist") {
  std::set<std::string_view> names;
  for (const auto& m : models()) {
    INFO(m.name);
    CHECK(names.insert(m.name).second);
    CHECK_FALSE(m.description.empty());
    if (!m.parent.empty()) {
      bool found = false;
      for (const auto& p : models()) found = found || p.name == m.parent;
      CHECK(found);
    }
    std::set<const Field*> seen;
    for (const auto& [name, value] : m.values) {
      INFO(name);
      const Field* f = find_field(name);
      REQUIRE(f != nullptr);
      CHECK(seen.insert(f).second);  // each field once per model
      CHECK(value <= (f->mask() >> f->shift));
    }
    CHECK(resolve(m.name).has_value());
  }
  CHECK(names == std::set<std::string_view>{"neoverse-v2-v1", "grace-v1"});
}

TEST_CASE("R36: neoverse-v2-v1 and grace-v1 register values") {
  auto v2 = resolved("neoverse-v2-v1");
  auto grace = resolved("grace-v1");
  CHECK(v2.name == "neoverse-v2-v1");
  CHECK_FALSE(v2.host);
  CHECK(v2.midr == 0x410FD4F0);
  CHECK(grace.midr == 0x410FD4F0);  // implementer 0x41, part 0xD4F, r0p0
  CHECK(v2.sve == vls({128}));
  CHECK(grace.sve == vls({128}));  // R34
  CHECK(grace.value(field("SME")) == 0);  // R35
  CHECK(v2.value(field("SME")) == 0);
  // ISAR0 with everything a V2 has in common; Grace adds SM3/SM4.
  CHECK(v2.regs.at("ID_AA64ISAR0_EL1").first == 0x0221100110212120);
  CHECK(grace.regs.at("ID_AA64ISAR0_EL1").first == 0x0221111110212120);
  CHECK(grace.regs.at("ID_AA64ISAR0_EL1").second == 0xFFFFFFFFF0FFFFF0);  // all but TME and RES0
  CHECK(grace.regs.at("ID_AA64ISAR1_EL1").first == 0x0011111100211002);   // no pointer authentication fields
  CHECK(grace.regs.at("ID_AA64ZFR0_EL1").first == 0x0000110100110021);
  CHECK(v2.regs.at("ID_AA64ZFR0_EL1").first == 0x0000100100110021);
  CHECK(grace.regs.at("ID_AA64PFR1_EL1").first == 0x21);
  CHECK(grace.regs.at("ID_AA64MMFR1_EL1").first == 0x00312002);  // VH and VMIDBits not set
  // Not set: what KVM or the VMM decide.
  for (std::string_view f : {"GIC", "PMUVer", "DebugVer", "AMU", "MPAM", "EL2", "EL3", "RAS", "BRPs", "WRPs",
                             "CTX_CMPs", "APA", "API", "GPA", "GPI", "APA3", "GPA3", "PARANGE", "CSV2", "CSV3"}) {
    INFO(f);
    CHECK_FALSE(grace.value(field(f)));
  }
  // set_fields lists the set fields in table order.
  REQUIRE_FALSE(grace.set_fields.empty());
  const Field* prev = nullptr;
  for (const Field* f : grace.set_fields) {
    CHECK(grace.value(*f));
    if (prev != nullptr) CHECK(prev < f);
    prev = f;
  }
}

TEST_CASE("R36: grace-v1 has neoverse-v2-v1's values plus its own") {
  auto v2 = resolved("neoverse-v2-v1");
  auto grace = resolved("grace-v1");
  const std::map<std::string, std::uint64_t> own{
      {"ID_AA64ISAR0_EL1.SM3", 1}, {"ID_AA64ISAR0_EL1.SM4", 1}, {"ID_AA64ZFR0_EL1.SM4", 1},
      {"ID_AA64ISAR0_EL1.RNDR", 0}, {"ID_AA64PFR1_EL1.SME", 0}};
  for (const Field* f : v2.set_fields) {
    const std::string q = std::string(f->reg) + "." + std::string(f->name);
    INFO(q);
    REQUIRE(grace.value(*f));
    if (auto it = own.find(q); it != own.end())
      CHECK(*grace.value(*f) == it->second);
    else
      CHECK(*grace.value(*f) == *v2.value(*f));
  }
  CHECK(grace.set_fields.size() == v2.set_fields.size());  // Grace changes values, adds no field
  CHECK(*v2.value(field("SM3")) == 0);
  CHECK(*grace.value(field("SM3")) == 1);
}

TEST_CASE("R36: neoverse-v2-v1 agrees with a real Neoverse V2's ID registers except RNDR") {
  // Graviton4 implements the optional RNG; the model leaves it out (Grace has none).
  HostView g4;
  g4.values = kGraviton4;
  g4.writable = all_writable();
  auto v2 = resolved("neoverse-v2-v1");
  int compared = 0;
  for (const auto& c : check_model(v2, g4)) {
    if (c.reg == "MIDR_EL1" || c.reg == "SVE_VLS" || !kGraviton4.contains(c.reg)) continue;
    INFO(c.reg << "." << c.field << " model " << c.model << " host " << c.host);
    ++compared;
    if (c.reg == "ID_AA64ISAR0_EL1" && c.field == "RNDR")
      CHECK(c.verdict == Verdict::set);
    else
      CHECK(c.verdict == Verdict::same);
  }
  CHECK(compared >= 50);
}

TEST_CASE("resolve: host, overrides, vector lengths, MIDR") {
  auto host = resolved("host");
  CHECK(host.host);
  CHECK(host.name == "host");
  CHECK(host.set_fields.empty());
  CHECK_FALSE(host.midr);
  CHECK_FALSE(host.sve);

  auto h = resolved("host,feat_SHA1=0,feat_ID_AA64ZFR0_EL1.I8MM=0x0");
  CHECK(h.host);
  CHECK(h.spec == "host,feat_SHA1=0,feat_ID_AA64ZFR0_EL1.I8MM=0x0");
  REQUIRE(h.set_fields.size() == 2);
  CHECK(h.value(field("SHA1")) == 0);
  CHECK(h.regs.at("ID_AA64ISAR0_EL1").second == 0xF00);

  auto g = resolved("grace-v1,feat_SHA1=0,feat_fp=-1,sve=128+256,midr=host");
  CHECK(g.name == "grace-v1");
  CHECK(g.value(field("SHA1")) == 0);
  CHECK(g.value(field("FP")) == 0xF);
  CHECK(g.value(field("SHA2")) == 2);  // untouched
  CHECK(g.sve == vls({128, 256}));
  CHECK_FALSE(g.midr);

  CHECK(resolved("neoverse-v2-v1,midr=0x410FD4F1").midr == 0x410FD4F1);
  CHECK(resolved("grace-v1,sve=2048").sve == vls({2048}));
  CHECK(resolved("grace-v1,feat_TGRAN4=0xf").value(field("TGRAN4")) == 0xF);
  CHECK(resolved("grace-v1,feat_SME=0").value(field("SME")) == 0);
}

TEST_CASE("resolve: errors name the model, the field or the value") {
  struct Row {
    std::string_view spec;
    std::vector<std::string_view> says;
  };
  const Row rows[] = {
      {"", {"empty CPU model", "grace-v1"}},
      {"grace-v2", {"unknown CPU model 'grace-v2'", "host", "neoverse-v2-v1", "grace-v1"}},
      {"Grace-v1", {"unknown CPU model 'Grace-v1'"}},
      {"grace-v1,feat_NOPE=1", {"unknown ID register field 'NOPE'"}},
      {"grace-v1,feat_SM4=1", {"several registers", "ID_AA64ISAR0_EL1.SM4", "ID_AA64ZFR0_EL1.SM4"}},
      {"grace-v1,feat_ID_AA64ZFR0_EL1.SHA1=1", {"unknown ID register field 'ID_AA64ZFR0_EL1.SHA1'"}},
      {"grace-v1,feat_SHA1=16", {"bad value '16'", "ID_AA64ISAR0_EL1.SHA1", "4 bits wide"}},
      {"grace-v1,feat_SHA1=0x", {"bad value '0x'"}},
      {"grace-v1,feat_SHA1=two", {"bad value 'two'"}},
      {"grace-v1,feat_SHA1=", {"bad value ''"}},
      {"grace-v1,feat_SHA1=-1", {"bad value '-1'", "unsigned"}},
      {"grace-v1,feat_FP=-9", {"bad value '-9'", "-8..7"}},
      {"host,feat_FA64=2", {"bad value '2'", "1 bit wide"}},
      {"grace-v1,feat_SHA1=0,feat_sha1=1", {"given twice"}},
      {"grace-v1,sve=192", {"bad SVE vector length '192'"}},
      {"grace-v1,sve=0", {"bad SVE vector length '0'"}},
      {"grace-v1,sve=2176", {"bad SVE vector length '2176'"}},
      {"grace-v1,sve=", {"sve= needs at least one"}},
      {"grace-v1,sve=128+", {"bad SVE vector length ''"}},
      {"grace-v1,sve=128,256", {"bad CPU option '256'"}},
      {"grace-v1,sve=128,sve=256", {"sve= is given twice"}},
      {"grace-v1,midr=0x1FFFFFFFF", {"bad midr '0x1FFFFFFFF'"}},
      {"grace-v1,midr=guest", {"bad midr 'guest'"}},
      {"grace-v1,foo=1", {"unknown CPU option 'foo'"}},
      {"grace-v1,", {"bad CPU option ''"}},
      {"grace-v1,feat_SME=1", {"SME", "R35"}},
      {"host,feat_SME=2", {"R35"}},
  };
  for (const auto& r : rows) {
    INFO("spec: " << r.spec);
    auto m = resolve(r.spec);
    REQUIRE_FALSE(m.has_value());
    for (auto s : r.says) {
      INFO("expects: " << s << "\ngot: " << m.error().message);
      CHECK(m.error().message.find(s) != std::string::npos);
    }
  }
}

TEST_CASE("R36: a model on a host with its own values is the same everywhere, nothing to write") {
  const HostView host = grace_host();
  auto grace = resolved("grace-v1");
  auto checks = check_model(grace, host);
  REQUIRE(checks.size() == grace.set_fields.size() + 2);  // + MIDR and SVE_VLS
  for (const auto& c : checks) {
    INFO(c.reg << "." << c.field << ": " << c.why);
    CHECK(c.verdict == Verdict::same);
    CHECK(c.ok());
    CHECK(c.why.empty());
  }
  CHECK(check_of(checks, "MIDR_EL1", "").model == 0x410FD4F0);
  CHECK(check_of(checks, "SVE_VLS", "").model == 128);
  CHECK(register_values(grace, host).empty());
  // The same on a kernel without writable masks: nothing needs writing.
  HostView old = host;
  old.writable.reset();
  for (const auto& c : check_model(grace, old)) CHECK(c.verdict == Verdict::same);
}

TEST_CASE("R36: field verdicts - set, not_writable, unsafe") {
  const HostView host = grace_host();
  struct Row {
    std::string_view spec, reg, field;
    Verdict verdict;
    std::string_view why;
  };
  const Row rows[] = {
      // Lowering a LOWER_SAFE field is allowed.
      {"grace-v1,feat_SHA1=0", "ID_AA64ISAR0_EL1", "SHA1", Verdict::set, ""},
      {"grace-v1,feat_ID_AA64ZFR0_EL1.SVEver=0", "ID_AA64ZFR0_EL1", "SVEver", Verdict::set, ""},
      // Raising one is not.
      {"grace-v1,feat_RNDR=1", "ID_AA64ISAR0_EL1", "RNDR", Verdict::unsafe,
       "ID_AA64ISAR0_EL1.RNDR: LOWER_SAFE: the host has 0, a higher 1 is not safe"},
      // Signed: -1 (0xF) is below 0 and 1.
      {"grace-v1,feat_FP=0xF", "ID_AA64PFR0_EL1", "FP", Verdict::set, ""},
      {"grace-v1,feat_TGRAN64=-1", "ID_AA64MMFR0_EL1", "TGRAN64", Verdict::set, ""},
      {"grace-v1,feat_TGRAN16=2", "ID_AA64MMFR0_EL1", "TGRAN16", Verdict::unsafe, "a higher 2 is not safe"},
      // HIGHER_SAFE: SpecSEI may only go up.
      {"grace-v1,feat_SpecSEI=1", "ID_AA64MMFR1_EL1", "SpecSEI", Verdict::set, ""},
      // EXACT: the host's value or the safe value only.
      {"grace-v1,feat_TGRAN4_2=1", "ID_AA64MMFR0_EL1", "TGRAN4_2", Verdict::set, ""},
      {"grace-v1,feat_TGRAN4_2=3", "ID_AA64MMFR0_EL1", "TGRAN4_2", Verdict::unsafe,
       "EXACT: only the host's 0 or the safe value 1 is accepted, not 3"},
      // KVM's LOWER_SAFE override for DebugVer.
      {"grace-v1,feat_DebugVer=0", "ID_AA64DFR0_EL1", "DebugVer", Verdict::same, ""},
  };
  for (const auto& r : rows) {
    INFO(r.spec);
    auto checks = check_model(resolved(r.spec), host);
    const auto& c = check_of(checks, r.reg, r.field);
    INFO("why: " << c.why);
    CHECK(c.verdict == r.verdict);
    CHECK(c.writable);
    CHECK(c.why.find(r.why) != std::string::npos);
    CHECK(c.ok() == (r.verdict == Verdict::same || r.verdict == Verdict::set));
    if (r.verdict != Verdict::set && r.verdict != Verdict::same) CHECK_FALSE(c.why.empty());
  }
}

TEST_CASE("R36: HIGHER_SAFE and EXACT refusals and KVM's DebugVer rule against a host value") {
  HostView host = grace_host();
  host.values["ID_AA64MMFR1_EL1"] |= std::uint64_t{1} << 24;  // SpecSEI 1
  host.values["ID_AA64ISAR1_EL1"] |= std::uint64_t{5} << 4;   // APA 5
  host.values["ID_AA64DFR0_EL1"] = 9;                          // DebugVer 9
  struct Row {
    std::string_view spec, field;
    Verdict verdict;
    std::string_view why;
  };
  const Row rows[] = {
      {"host,feat_SpecSEI=0", "SpecSEI", Verdict::unsafe, "HIGHER_SAFE: the host has 1, a lower 0 is not safe"},
      {"host,feat_APA=0", "APA", Verdict::set, ""},
      {"host,feat_APA=3", "APA", Verdict::unsafe, "EXACT: only the host's 5 or the safe value 0 is accepted"},
      {"host,feat_DebugVer=8", "DebugVer", Verdict::set, ""},
      {"host,feat_DebugVer=10", "DebugVer", Verdict::unsafe, "LOWER_SAFE: the host has 9, a higher 10"},
  };
  for (const auto& r : rows) {
    INFO(r.spec);
    auto checks = check_model(resolved(r.spec), host);
    REQUIRE(checks.size() == 1);
    INFO("why: " << checks[0].why);
    CHECK(checks[0].field == r.field);
    CHECK(checks[0].verdict == r.verdict);
    CHECK(checks[0].why.find(r.why) != std::string::npos);
  }
}

TEST_CASE("R36: signed fields - a host without FP refuses a model with FP") {
  HostView host;
  host.values["ID_AA64PFR0_EL1"] = 0x000F0000;  // FP = 0xF (not implemented)
  host.writable = all_writable();
  auto c = check_model(resolved("host,feat_FP=0"), host).at(0);
  CHECK(c.verdict == Verdict::unsafe);
  CHECK(c.host == 0xF);
  CHECK(c.why == "ID_AA64PFR0_EL1.FP: LOWER_SAFE: the host has 0xf (-1), a higher 0 is not safe");
}

TEST_CASE("R36: not_writable - no masks before Linux 6.7, fields outside the mask") {
  HostView host = grace_host();
  host.writable.reset();
  auto c = check_of(check_model(resolved("grace-v1,feat_SHA1=0"), host), "ID_AA64ISAR0_EL1", "SHA1");
  CHECK(c.verdict == Verdict::not_writable);
  CHECK_FALSE(c.writable);
  CHECK(c.why.find("KVM_ARM_GET_REG_WRITABLE_MASKS") != std::string::npos);
  CHECK(c.why.find("6.7") != std::string::npos);

  // PFR1 is read-only (Linux 6.12): a model that lowers BT cannot run.
  host = grace_host();
  (*host.writable)[find_register("ID_AA64PFR1_EL1")->writable_mask_index()] = 0;
  c = check_of(check_model(resolved("grace-v1,feat_BT=0"), host), "ID_AA64PFR1_EL1", "BT");
  CHECK(c.verdict == Verdict::not_writable);
  CHECK(c.why.find("does not let userspace change") != std::string::npos);
  // ... while its equal fields are fine.
  CHECK(check_of(check_model(resolved("grace-v1,feat_BT=0"), host), "ID_AA64PFR1_EL1", "SSBS").verdict ==
        Verdict::same);

  // A mask covering only part of a field does not make it writable.
  host = grace_host();
  (*host.writable)[find_register("ID_AA64ISAR0_EL1")->writable_mask_index()] = ~std::uint64_t{0x800};
  c = check_of(check_model(resolved("grace-v1,feat_SHA1=0"), host), "ID_AA64ISAR0_EL1", "SHA1");
  CHECK(c.verdict == Verdict::not_writable);
  CHECK_FALSE(c.writable);

  // not_writable comes before unsafe: the write would fail either way.
  host = grace_host();
  (*host.writable)[find_register("ID_AA64ISAR0_EL1")->writable_mask_index()] = 0;
  c = check_of(check_model(resolved("grace-v1,feat_RNDR=1"), host), "ID_AA64ISAR0_EL1", "RNDR");
  CHECK(c.verdict == Verdict::not_writable);
}

TEST_CASE("R36: MIDR_EL1 - same, set with the 6.15 capability, else refused") {
  HostView host = grace_host();
  host.values["MIDR_EL1"] = 0x410FD4F1;  // a V2 r0p1
  auto c = check_of(check_model(resolved("grace-v1"), host), "MIDR_EL1", "");
  CHECK(c.verdict == Verdict::not_writable);
  CHECK(c.host == 0x410FD4F1);
  CHECK(c.model == 0x410FD4F0);
  CHECK(c.why.find("KVM_CAP_ARM_WRITABLE_IMP_ID_REGS (Linux 6.15+)") != std::string::npos);
  CHECK(c.why.find("midr=host") != std::string::npos);

  host.midr_writable = true;
  c = check_of(check_model(resolved("grace-v1"), host), "MIDR_EL1", "");
  CHECK(c.verdict == Verdict::set);
  CHECK(c.writable);
  CHECK(register_values(resolved("grace-v1"), host).at("MIDR_EL1") == 0x410FD4F0);

  // midr=host: no MIDR check and nothing to write.
  host.midr_writable = false;
  for (const auto& chk : check_model(resolved("grace-v1,midr=host"), host)) CHECK(chk.reg != "MIDR_EL1");
  CHECK_FALSE(register_values(resolved("grace-v1,midr=host"), host).contains("MIDR_EL1"));
}

TEST_CASE("R34: SVE vector lengths - KVM takes only a truncation of the host's set") {
  struct Row {
    std::string_view spec;
    std::optional<SveVls> host;
    Verdict verdict;
    std::string_view why;
  };
  const Row rows[] = {
      {"host,sve=128", vls({128}), Verdict::same, ""},
      {"host,sve=128+256", vls({128, 256, 512}), Verdict::set, ""},
      {"host,sve=128", vls({128, 256}), Verdict::set, ""},
      {"host,sve=128+256+512", vls({128, 256, 512}), Verdict::same, ""},
      // A hole below the maximum: KVM refuses it.
      {"host,sve=128+512", vls({128, 256, 512}), Verdict::host_lacks, "256 cannot be left out"},
      {"host,sve=256", vls({128, 256}), Verdict::host_lacks, "128 cannot be left out"},
      // A length the host does not have.
      {"host,sve=128+256", vls({128}), Verdict::host_lacks, "the host lacks 256"},
      {"host,sve=128+384", vls({128, 256, 512}), Verdict::host_lacks, "the host lacks 384"},
      // No SVE at all.
      {"grace-v1", std::nullopt, Verdict::host_lacks, "offers no SVE"},
  };
  for (const auto& r : rows) {
    INFO(r.spec);
    HostView host = grace_host();
    host.sve = r.host;
    auto c = check_of(check_model(resolved(r.spec), host), "SVE_VLS", "");
    INFO("why: " << c.why);
    CHECK(c.verdict == r.verdict);
    CHECK(c.writable);
    CHECK(c.why.find(r.why) != std::string::npos);
    CHECK(c.ok() == (r.verdict != Verdict::host_lacks));
  }
  // grace-v1 on a host with 128+256: a truncation to 128, allowed.
  HostView wide = grace_host();
  wide.sve = vls({128, 256});
  CHECK(check_of(check_model(resolved("grace-v1"), wide), "SVE_VLS", "").verdict == Verdict::set);
  CHECK(check_of(check_model(resolved("grace-v1"), wide), "SVE_VLS", "").host == 256);
  // Without sve= the host model makes no vector-length claim.
  for (const auto& c : check_model(resolved("host"), wide)) CHECK(c.reg != "SVE_VLS");
}

TEST_CASE("R36: register_values replaces only the model's fields, only where the value changes") {
  HostView host = grace_host();
  // A V2 host with RNG and without SM3/SM4, like Graviton4.
  host.values["ID_AA64ISAR0_EL1"] = kGraviton4.at("ID_AA64ISAR0_EL1") | (std::uint64_t{1} << 24);  // + TME bit
  auto grace = resolved("grace-v1");
  auto regs = register_values(grace, host);
  REQUIRE(regs.size() == 1);
  // RNDR 1 -> 0, SM3/SM4 0 -> 1, TME (not in the model) kept.
  CHECK(regs.at("ID_AA64ISAR0_EL1") == 0x0221111111212120);
  host.values["ID_AA64ZFR0_EL1"] &= ~field("ID_AA64ZFR0_EL1.SM4").mask();
  regs = register_values(grace, host);
  CHECK(regs.at("ID_AA64ZFR0_EL1") == 0x0000110100110021);
  // A lowered field on an otherwise equal host: one register, GIC kept.
  regs = register_values(resolved("grace-v1,feat_FP=0xF,feat_AdvSIMD=0xF"), grace_host());
  REQUIRE(regs.size() == 1);
  CHECK(regs.at("ID_AA64PFR0_EL1") == (grace_host().values.at("ID_AA64PFR0_EL1") | 0xFF0000));
  CHECK(field("GIC").extract(regs.at("ID_AA64PFR0_EL1")) == 1);
  // host without overrides: nothing.
  CHECK(register_values(resolved("host"), grace_host()).empty());
  // A register the host map lacks counts as 0.
  HostView empty;
  CHECK(register_values(resolved("host,feat_SHA1=1"), empty).at("ID_AA64ISAR0_EL1") == 0x100);
  CHECK(register_values(resolved("host,feat_SHA1=0"), empty).empty());
}

TEST_CASE("verdict names") {
  CHECK(verdict_name(Verdict::same) == "same");
  CHECK(verdict_name(Verdict::set) == "set");
  CHECK(verdict_name(Verdict::not_writable) == "not_writable");
  CHECK(verdict_name(Verdict::unsafe) == "unsafe");
  CHECK(verdict_name(Verdict::host_lacks) == "host_lacks");
}
