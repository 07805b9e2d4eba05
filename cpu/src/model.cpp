// Named arm64 CPU models (nvgrace-model.md R34-R36). The field table mirrors
// the feature tables of the Linux kernel's arch/arm64/kernel/cpufeature.c
// (6.18), with bit positions from arch/arm64/tools/sysreg; the model values
// and where each comes from are in docs/cpu-models.md.
#include "nvgrace/cpu/model.hpp"

#include <algorithm>
#include <array>
#include <cctype>
#include <charconv>
#include <set>
#include <system_error>

#include <fmt/format.h>

namespace nvgrace::cpu {
namespace {

// The arm64 uapi headers are not installed on the x86 build hosts, so the
// pieces of ARM64_SYS_REG() are spelled out (arch/arm64/include/uapi/asm/kvm.h).
constexpr std::uint64_t kKvmRegArm64 = 0x6000000000000000;
constexpr std::uint64_t kKvmRegSizeU64 = 0x0030000000000000;
constexpr std::uint64_t kKvmRegArm64Sysreg = std::uint64_t{0x0013} << 16;

constexpr std::string_view kMidr = "MIDR_EL1";
constexpr std::string_view kPfr0 = "ID_AA64PFR0_EL1";
constexpr std::string_view kPfr1 = "ID_AA64PFR1_EL1";
constexpr std::string_view kPfr2 = "ID_AA64PFR2_EL1";
constexpr std::string_view kZfr0 = "ID_AA64ZFR0_EL1";
constexpr std::string_view kSmfr0 = "ID_AA64SMFR0_EL1";
constexpr std::string_view kDfr0 = "ID_AA64DFR0_EL1";
constexpr std::string_view kIsar0 = "ID_AA64ISAR0_EL1";
constexpr std::string_view kIsar1 = "ID_AA64ISAR1_EL1";
constexpr std::string_view kIsar2 = "ID_AA64ISAR2_EL1";
constexpr std::string_view kIsar3 = "ID_AA64ISAR3_EL1";
constexpr std::string_view kMmfr0 = "ID_AA64MMFR0_EL1";
constexpr std::string_view kMmfr1 = "ID_AA64MMFR1_EL1";
constexpr std::string_view kMmfr2 = "ID_AA64MMFR2_EL1";
constexpr std::string_view kMmfr3 = "ID_AA64MMFR3_EL1";
constexpr std::string_view kMmfr4 = "ID_AA64MMFR4_EL1";

constexpr std::array<IdReg, 16> kRegs{{
    {kMidr, 3, 0, 0, 0, 0},
    {kPfr0, 3, 0, 0, 4, 0},
    {kPfr1, 3, 0, 0, 4, 1},
    {kPfr2, 3, 0, 0, 4, 2},
    {kZfr0, 3, 0, 0, 4, 4},
    {kSmfr0, 3, 0, 0, 4, 5},
    {kDfr0, 3, 0, 0, 5, 0},
    {kIsar0, 3, 0, 0, 6, 0},
    {kIsar1, 3, 0, 0, 6, 1},
    {kIsar2, 3, 0, 0, 6, 2},
    {kIsar3, 3, 0, 0, 6, 3},
    {kMmfr0, 3, 0, 0, 7, 0},
    {kMmfr1, 3, 0, 0, 7, 1},
    {kMmfr2, 3, 0, 0, 7, 2},
    {kMmfr3, 3, 0, 0, 7, 3},
    {kMmfr4, 3, 0, 0, 7, 4},
}};

constexpr Policy L = Policy::lower_safe;
constexpr Policy H = Policy::higher_safe;
constexpr Policy E = Policy::exact;

// An unsigned field (ARM64_FTR_BITS) and a signed one (S_ARM64_FTR_BITS).
constexpr Field U(std::string_view reg, std::string_view name, unsigned shift, unsigned width, Policy p,
                  std::uint64_t safe = 0) {
  return Field{name, reg, shift, width, false, p, safe};
}
constexpr Field S(std::string_view reg, std::string_view name, unsigned shift, Policy p, std::uint64_t safe) {
  return Field{name, reg, shift, 4, true, p, safe};
}

// Every field of the kernel's ftr_id_aa64* tables for these registers, in
// the kernel's order (most significant first). Fields the kernel has no
// entry for (PFR0.RME, ISAR0.TME, ISAR1.LS64, PFR1.NMI, ...) are not here:
// KVM requires them to equal the host's value, so no model may set them.
constexpr std::array kFields{
    // ftr_id_aa64pfr0
    U(kPfr0, "CSV3", 60, 4, L), U(kPfr0, "CSV2", 56, 4, L), U(kPfr0, "DIT", 48, 4, L),
    U(kPfr0, "AMU", 44, 4, L), U(kPfr0, "MPAM", 40, 4, L), U(kPfr0, "SEL2", 36, 4, L),
    U(kPfr0, "SVE", 32, 4, L), U(kPfr0, "RAS", 28, 4, L), U(kPfr0, "GIC", 24, 4, L),
    S(kPfr0, "AdvSIMD", 20, L, 0xF),  // safe: AdvSIMD_NI
    S(kPfr0, "FP", 16, L, 0xF),       // safe: FP_NI
    U(kPfr0, "EL3", 12, 4, L), U(kPfr0, "EL2", 8, 4, L),
    U(kPfr0, "EL1", 4, 4, L, 1),  // safe: EL1_IMP (AArch64 only)
    U(kPfr0, "EL0", 0, 4, L, 1),  // safe: EL0_IMP
    // ftr_id_aa64pfr1
    U(kPfr1, "GCS", 44, 4, L), U(kPfr1, "SME", 24, 4, L), U(kPfr1, "MPAM_frac", 16, 4, L),
    U(kPfr1, "RAS_frac", 12, 4, L), U(kPfr1, "MTE", 8, 4, L), U(kPfr1, "SSBS", 4, 4, L),
    U(kPfr1, "BT", 0, 4, L),
    // ftr_id_aa64pfr2
    U(kPfr2, "FPMR", 32, 4, L),
    // ftr_id_aa64zfr0
    U(kZfr0, "F64MM", 56, 4, L), U(kZfr0, "F32MM", 52, 4, L), U(kZfr0, "F16MM", 48, 4, L),
    U(kZfr0, "I8MM", 44, 4, L), U(kZfr0, "SM4", 40, 4, L), U(kZfr0, "SHA3", 32, 4, L),
    U(kZfr0, "B16B16", 24, 4, L), U(kZfr0, "BF16", 20, 4, L), U(kZfr0, "BitPerm", 16, 4, L),
    U(kZfr0, "EltPerm", 12, 4, L), U(kZfr0, "AES", 4, 4, L), U(kZfr0, "SVEver", 0, 4, L),
    // ftr_id_aa64smfr0: every field FTR_EXACT, safe 0
    U(kSmfr0, "FA64", 63, 1, E), U(kSmfr0, "LUTv2", 60, 1, E), U(kSmfr0, "SMEver", 56, 4, E),
    U(kSmfr0, "I16I64", 52, 4, E), U(kSmfr0, "F64F64", 48, 1, E), U(kSmfr0, "I16I32", 44, 4, E),
    U(kSmfr0, "B16B16", 43, 1, E), U(kSmfr0, "F16F16", 42, 1, E), U(kSmfr0, "F8F16", 41, 1, E),
    U(kSmfr0, "F8F32", 40, 1, E), U(kSmfr0, "I8I32", 36, 4, E), U(kSmfr0, "F16F32", 35, 1, E),
    U(kSmfr0, "B16F32", 34, 1, E), U(kSmfr0, "BI32I32", 33, 1, E), U(kSmfr0, "F32F32", 32, 1, E),
    U(kSmfr0, "SF8FMA", 30, 1, E), U(kSmfr0, "SF8DP4", 29, 1, E), U(kSmfr0, "SF8DP2", 28, 1, E),
    U(kSmfr0, "SBitPerm", 25, 1, E), U(kSmfr0, "AES", 24, 1, E), U(kSmfr0, "SFEXPA", 23, 1, E),
    U(kSmfr0, "STMOP", 16, 1, E), U(kSmfr0, "SMOP4", 0, 1, E),
    // ftr_id_aa64dfr0. PMUVer and DebugVer are FTR_EXACT for the host's own
    // CPUs; KVM checks a write of them as FTR_LOWER_SAFE (kvm_policy()).
    S(kDfr0, "DoubleLock", 36, L, 0), U(kDfr0, "PMSVer", 32, 4, L), U(kDfr0, "CTX_CMPs", 28, 4, L),
    U(kDfr0, "WRPs", 20, 4, L), U(kDfr0, "BRPs", 12, 4, L), S(kDfr0, "PMUVer", 8, E, 0),
    U(kDfr0, "DebugVer", 0, 4, E, 6),
    // ftr_id_aa64isar0
    U(kIsar0, "RNDR", 60, 4, L), U(kIsar0, "TLB", 56, 4, L), U(kIsar0, "TS", 52, 4, L),
    U(kIsar0, "FHM", 48, 4, L), U(kIsar0, "DP", 44, 4, L), U(kIsar0, "SM4", 40, 4, L),
    U(kIsar0, "SM3", 36, 4, L), U(kIsar0, "SHA3", 32, 4, L), U(kIsar0, "RDM", 28, 4, L),
    U(kIsar0, "ATOMIC", 20, 4, L), U(kIsar0, "CRC32", 16, 4, L), U(kIsar0, "SHA2", 12, 4, L),
    U(kIsar0, "SHA1", 8, 4, L), U(kIsar0, "AES", 4, 4, L),
    // ftr_id_aa64isar1
    U(kIsar1, "XS", 56, 4, L), U(kIsar1, "I8MM", 52, 4, L), U(kIsar1, "DGH", 48, 4, L),
    U(kIsar1, "BF16", 44, 4, L), U(kIsar1, "SPECRES", 40, 4, L), U(kIsar1, "SB", 36, 4, L),
    U(kIsar1, "FRINTTS", 32, 4, L), U(kIsar1, "GPI", 28, 4, L), U(kIsar1, "GPA", 24, 4, L),
    U(kIsar1, "LRCPC", 20, 4, L), U(kIsar1, "FCMA", 16, 4, L), U(kIsar1, "JSCVT", 12, 4, L),
    U(kIsar1, "API", 8, 4, E), U(kIsar1, "APA", 4, 4, E), U(kIsar1, "DPB", 0, 4, L),
    // ftr_id_aa64isar2
    U(kIsar2, "LUT", 56, 4, L), U(kIsar2, "CSSC", 52, 4, L), U(kIsar2, "RPRFM", 48, 4, L),
    U(kIsar2, "CLRBHB", 28, 4, L), U(kIsar2, "BC", 20, 4, L), U(kIsar2, "MOPS", 16, 4, L),
    U(kIsar2, "APA3", 12, 4, E), U(kIsar2, "GPA3", 8, 4, L), U(kIsar2, "RPRES", 4, 4, L),
    U(kIsar2, "WFxT", 0, 4, L),
    // ftr_id_aa64isar3
    U(kIsar3, "FPRCVT", 28, 4, L), U(kIsar3, "FAMINMAX", 4, 4, L),
    // ftr_id_aa64mmfr0
    U(kMmfr0, "ECV", 60, 4, L), U(kMmfr0, "FGT", 56, 4, L), U(kMmfr0, "EXS", 44, 4, L),
    U(kMmfr0, "TGRAN4_2", 40, 4, E, 1), U(kMmfr0, "TGRAN64_2", 36, 4, E, 1),
    U(kMmfr0, "TGRAN16_2", 32, 4, E, 1),
    S(kMmfr0, "TGRAN4", 28, L, 0xF),   // safe: TGRAN4_NI
    S(kMmfr0, "TGRAN64", 24, L, 0xF),  // safe: TGRAN64_NI
    U(kMmfr0, "TGRAN16", 20, 4, L),    // safe: TGRAN16_NI (0)
    U(kMmfr0, "BIGENDEL0", 16, 4, L), U(kMmfr0, "SNSMEM", 12, 4, L), U(kMmfr0, "BIGEND", 8, 4, L),
    U(kMmfr0, "ASIDBITS", 4, 4, L), U(kMmfr0, "PARANGE", 0, 4, L),
    // ftr_id_aa64mmfr1
    U(kMmfr1, "ECBHB", 60, 4, L), U(kMmfr1, "TIDCP1", 52, 4, L), U(kMmfr1, "AFP", 44, 4, L),
    U(kMmfr1, "HCX", 40, 4, L), U(kMmfr1, "ETS", 36, 4, L), U(kMmfr1, "TWED", 32, 4, L),
    U(kMmfr1, "XNX", 28, 4, L), U(kMmfr1, "SpecSEI", 24, 4, H), U(kMmfr1, "PAN", 20, 4, L),
    U(kMmfr1, "LO", 16, 4, L), U(kMmfr1, "HPDS", 12, 4, L), U(kMmfr1, "VH", 8, 4, L),
    U(kMmfr1, "VMIDBits", 4, 4, L), U(kMmfr1, "HAFDBS", 0, 4, L),
    // ftr_id_aa64mmfr2
    U(kMmfr2, "E0PD", 60, 4, L), U(kMmfr2, "EVT", 56, 4, L), U(kMmfr2, "BBM", 52, 4, L),
    U(kMmfr2, "TTL", 48, 4, L), U(kMmfr2, "FWB", 40, 4, L), U(kMmfr2, "IDS", 36, 4, L),
    U(kMmfr2, "AT", 32, 4, L), U(kMmfr2, "ST", 28, 4, L), U(kMmfr2, "NV", 24, 4, L),
    U(kMmfr2, "CCIDX", 20, 4, L), U(kMmfr2, "VARange", 16, 4, L), U(kMmfr2, "IESB", 12, 4, L),
    U(kMmfr2, "LSM", 8, 4, L), U(kMmfr2, "UAO", 4, 4, L), U(kMmfr2, "CnP", 0, 4, L),
    // ftr_id_aa64mmfr3
    U(kMmfr3, "S1POE", 16, 4, L), U(kMmfr3, "S1PIE", 8, 4, L), U(kMmfr3, "TCRX", 0, 4, L),
    // ftr_id_aa64mmfr4
    S(kMmfr4, "E2H0", 24, L, 0), U(kMmfr4, "NV_frac", 20, 4, L),
};

// A single vector length, as the bit of KVM_REG_ARM64_SVE_VLS it sets.
constexpr SveVls vls_128() {
  SveVls v{};
  v[0] = 1;  // vq 1: 128 bits
  return v;
}

// The models. Every value has its source in docs/cpu-models.md; fields that
// depend on the VMM rather than the CPU (GIC, PMU, debug, AMU, MPAM, EL2/EL3,
// pointer authentication, PARange, ...) are deliberately not set.
const std::array<Model, 2>& model_table() {
  static const std::array<Model, 2> table{{
      {
          "neoverse-v2-v1",
          "",
          "Arm Neoverse V2 r0p0: what every V2 has (optional SM3/SM4, RNG left out)",
          {
              // ID_AA64PFR0_EL1
              {"DIT", 1}, {"SVE", 1}, {"AdvSIMD", 1}, {"FP", 1}, {"EL1", 1}, {"EL0", 1},
              // ID_AA64PFR1_EL1
              {"GCS", 0}, {"SME", 0}, {"MTE", 0}, {"SSBS", 2}, {"BT", 1},
              // ID_AA64PFR2_EL1
              {"FPMR", 0},
              // ID_AA64ZFR0_EL1
              {"F64MM", 0}, {"F32MM", 0}, {"F16MM", 0}, {"ID_AA64ZFR0_EL1.I8MM", 1},
              {"ID_AA64ZFR0_EL1.SM4", 0}, {"ID_AA64ZFR0_EL1.SHA3", 1}, {"ID_AA64ZFR0_EL1.B16B16", 0},
              {"ID_AA64ZFR0_EL1.BF16", 1}, {"BitPerm", 1}, {"EltPerm", 0}, {"ID_AA64ZFR0_EL1.AES", 2},
              {"SVEver", 1},
              // ID_AA64DFR0_EL1
              {"DoubleLock", 0xF},
              // ID_AA64ISAR0_EL1
              {"RNDR", 0}, {"TLB", 2}, {"TS", 2}, {"FHM", 1}, {"DP", 1}, {"ID_AA64ISAR0_EL1.SM4", 0},
              {"SM3", 0}, {"ID_AA64ISAR0_EL1.SHA3", 1}, {"RDM", 1}, {"ATOMIC", 2}, {"CRC32", 1},
              {"SHA2", 2}, {"SHA1", 1}, {"ID_AA64ISAR0_EL1.AES", 2},
              // ID_AA64ISAR1_EL1
              {"XS", 0}, {"ID_AA64ISAR1_EL1.I8MM", 1}, {"DGH", 1}, {"ID_AA64ISAR1_EL1.BF16", 1},
              {"SPECRES", 1}, {"SB", 1}, {"FRINTTS", 1}, {"LRCPC", 2}, {"FCMA", 1}, {"JSCVT", 1},
              {"DPB", 2},
              // ID_AA64ISAR2_EL1
              {"LUT", 0}, {"CSSC", 0}, {"RPRFM", 0}, {"BC", 0}, {"MOPS", 0}, {"RPRES", 0}, {"WFxT", 0},
              // ID_AA64ISAR3_EL1
              {"FPRCVT", 0}, {"FAMINMAX", 0},
              // ID_AA64MMFR0_EL1
              {"ECV", 0}, {"FGT", 0}, {"EXS", 0}, {"TGRAN4", 0}, {"TGRAN64", 0}, {"TGRAN16", 1},
              {"BIGENDEL0", 0}, {"SNSMEM", 1}, {"BIGEND", 1}, {"ASIDBITS", 2},
              // ID_AA64MMFR1_EL1
              {"ECBHB", 0}, {"TIDCP1", 0}, {"AFP", 0}, {"ETS", 0}, {"SpecSEI", 0}, {"PAN", 3}, {"LO", 1},
              {"HPDS", 2}, {"HAFDBS", 2},
              // ID_AA64MMFR2_EL1
              {"E0PD", 1}, {"BBM", 2}, {"TTL", 1}, {"AT", 1}, {"ST", 1}, {"IESB", 1}, {"UAO", 1},
              {"CnP", 1},
              // ID_AA64MMFR3_EL1
              {"S1POE", 0}, {"S1PIE", 0}, {"TCRX", 0},
          },
          0x410FD4F0,  // implementer 0x41 (Arm), variant 0, architecture 0xF, part 0xD4F, revision 0 (R36)
          vls_128(),   // the V2 core implements 128-bit SVE vectors only
      },
      {
          "grace-v1",
          "neoverse-v2-v1",
          "NVIDIA Grace: Neoverse V2 with SM3/SM4, no RNG, 128-bit SVE2, no SME",
          {
              {"SM3", 1},
              {"ID_AA64ISAR0_EL1.SM4", 1},
              {"ID_AA64ZFR0_EL1.SM4", 1},
              {"RNDR", 0},  // Grace has no "rng" hwcap
              {"SME", 0},   // R35
          },
          std::nullopt,  // the parent's MIDR: Grace reports r0p0
          vls_128(),     // R34: 128-bit vectors only
      },
  }};
  return table;
}

bool iequal(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return std::tolower(static_cast<unsigned char>(x)) == std::tolower(static_cast<unsigned char>(y));
         });
}

std::uint64_t width_mask(unsigned width) {
  return width >= 64 ? ~std::uint64_t{0} : (std::uint64_t{1} << width) - 1;
}

// The field's value as arm64_ftr_value() reads it: sign-extended for
// FTR_SIGNED fields, so that 0xF in a 4-bit signed field is -1.
std::int64_t as_signed(const Field& f, std::uint64_t raw) {
  raw &= width_mask(f.width);
  if (f.is_signed && f.width < 64 && (raw >> (f.width - 1)) != 0) raw |= ~width_mask(f.width);
  return static_cast<std::int64_t>(raw);
}

std::uint64_t safe_value_with(const Field& f, Policy p, std::uint64_t want, std::uint64_t have) {
  // arm64_ftr_safe_value(): the comparisons are on the (sign-extended)
  // field values; the result is returned in the field's raw encoding.
  const std::int64_t w = as_signed(f, want);
  const std::int64_t h = as_signed(f, have);
  std::int64_t r = 0;
  switch (p) {
    case Policy::exact:
      return f.safe_val & width_mask(f.width);
    case Policy::lower_safe:
      r = std::min(w, h);
      break;
    case Policy::higher_or_zero_safe:
      if (w == 0 || h == 0) {
        r = 0;
        break;
      }
      r = std::max(w, h);
      break;
    case Policy::higher_safe:
      r = std::max(w, h);
      break;
  }
  return static_cast<std::uint64_t>(r) & width_mask(f.width);
}

// "2", or "0xf (-1)" for a negative signed field.
std::string show(const Field& f, std::uint64_t raw) {
  const std::int64_t v = as_signed(f, raw);
  if (v < 0) return fmt::format("{:#x} ({})", raw & width_mask(f.width), v);
  return fmt::format("{}", v);
}

std::string qualified(const Field& f) { return fmt::format("{}.{}", f.reg, f.name); }

bool has_vq(const SveVls& v, unsigned vq) { return ((v[(vq - 1) / 64] >> ((vq - 1) % 64)) & 1) != 0; }

void add_vq(SveVls& v, unsigned vq) { v[(vq - 1) / 64] |= std::uint64_t{1} << ((vq - 1) % 64); }

// "128, 256" for the vector lengths set in `v`.
std::string list_vls(const SveVls& v) {
  std::string out;
  for (unsigned vq = 1; vq <= 512; ++vq) {
    if (!has_vq(v, vq)) continue;
    if (!out.empty()) out += ", ";
    out += fmt::format("{}", vq * 128);
  }
  return out;
}

unsigned max_vq(const SveVls& v) {
  for (unsigned vq = 512; vq >= 1; --vq)
    if (has_vq(v, vq)) return vq;
  return 0;
}

SveVls truncate_vls(const SveVls& v, unsigned max) {
  SveVls out{};
  for (unsigned vq = 1; vq <= max && vq <= 512; ++vq)
    if (has_vq(v, vq)) add_vq(out, vq);
  return out;
}

SveVls and_not(const SveVls& a, const SveVls& b) {
  SveVls out{};
  for (std::size_t i = 0; i < out.size(); ++i) out[i] = a[i] & ~b[i];
  return out;
}

bool any(const SveVls& v) {
  return std::any_of(v.begin(), v.end(), [](std::uint64_t w) { return w != 0; });
}

// Parses "0x1f" or "31" (the whole string).
std::optional<std::uint64_t> parse_number(std::string_view s) {
  int base = 10;
  if (s.size() > 2 && s[0] == '0' && (s[1] == 'x' || s[1] == 'X')) {
    base = 16;
    s.remove_prefix(2);
  }
  if (s.empty()) return std::nullopt;
  std::uint64_t v = 0;
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v, base);
  if (ec != std::errc() || end != s.data() + s.size()) return std::nullopt;
  return v;
}

std::vector<std::string_view> split(std::string_view s, char sep) {
  std::vector<std::string_view> out;
  for (;;) {
    auto pos = s.find(sep);
    out.push_back(s.substr(0, pos));
    if (pos == std::string_view::npos) return out;
    s.remove_prefix(pos + 1);
  }
}

std::string known_models() {
  std::string out = "host";
  for (const auto& m : model_table()) out += fmt::format(", {}", m.name);
  return out;
}

const Model* find_model(std::string_view name) {
  for (const auto& m : model_table())
    if (m.name == name) return &m;
  return nullptr;
}

// A field name as the user wrote it, or why it names no single field.
Result<const Field*> lookup_field(std::string_view name) {
  if (const Field* f = find_field(name)) return f;
  auto matches = fields_named(name);
  if (matches.size() > 1) {
    std::string options;
    for (const Field* m : matches) options += fmt::format("{}{}", options.empty() ? "" : ", ", qualified(*m));
    return fail("field '{}' is in several registers; name one of {}", name, options);
  }
  return fail("unknown ID register field '{}' (fields are named as in the kernel's arch/arm64/tools/sysreg, "
              "e.g. SHA1 or ID_AA64ISAR1_EL1.I8MM)",
              name);
}

// The raw field value for "VALUE" ("2", "0x2", or "-1" for a signed field).
Result<std::uint64_t> parse_field_value(const Field& f, std::string_view text) {
  const std::uint64_t limit = width_mask(f.width);
  if (!text.empty() && text[0] == '-') {
    auto magnitude = parse_number(text.substr(1));
    if (!f.is_signed || !magnitude || *magnitude == 0 || f.width >= 64 ||
        *magnitude > (std::uint64_t{1} << (f.width - 1)))
      return fail("bad value '{}' for {}: {}", text, qualified(f),
                  f.is_signed ? fmt::format("a signed {}-bit field takes -{}..{} or 0..{:#x}", f.width,
                                            std::uint64_t{1} << (f.width - 1), limit >> 1, limit)
                              : fmt::format("the field is unsigned, 0..{:#x}", limit));
    return (~*magnitude + 1) & limit;
  }
  auto v = parse_number(text);
  if (!v) return fail("bad value '{}' for {}: expected a decimal or 0x hex number", text, qualified(f));
  if (*v > limit)
    return fail("bad value '{}' for {}: the field is {} bit{} wide (at most {:#x})", text, qualified(f), f.width,
                f.width == 1 ? "" : "s", limit);
  return *v;
}

// "128+256" -> the KVM_REG_ARM64_SVE_VLS bitmap (R34).
Result<SveVls> parse_vls(std::string_view text) {
  SveVls out{};
  if (text.empty()) return fail("sve= needs at least one vector length in bits, e.g. sve=128 or sve=128+256");
  for (std::string_view part : split(text, '+')) {
    auto bits = parse_number(part);
    if (!bits || *bits % 128 != 0 || *bits < 128 || *bits > 2048)
      return fail("bad SVE vector length '{}': a multiple of 128 bits from 128 to 2048 (join several with '+')",
                  part);
    add_vq(out, static_cast<unsigned>(*bits / 128));
  }
  return out;
}

void set_value(ResolvedModel& m, const Field& f, std::uint64_t v) {
  auto& [value, mask] = m.regs[std::string(f.reg)];
  value = (value & ~f.mask()) | ((v << f.shift) & f.mask());
  mask |= f.mask();
}

std::uint64_t host_value(const HostView& host, std::string_view reg) {
  // A register the host map lacks reads as 0, as KVM exposes unallocated
  // feature-ID registers (RAZ).
  auto it = host.values.find(reg);
  return it == host.values.end() ? 0 : it->second;
}

}  // namespace

std::string_view policy_name(Policy p) {
  switch (p) {
    case Policy::lower_safe:
      return "LOWER_SAFE";
    case Policy::higher_safe:
      return "HIGHER_SAFE";
    case Policy::higher_or_zero_safe:
      return "HIGHER_OR_ZERO_SAFE";
    case Policy::exact:
      return "EXACT";
  }
  return "?";
}

std::uint64_t IdReg::kvm_reg_id() const {
  return kKvmRegArm64 | kKvmRegSizeU64 | kKvmRegArm64Sysreg | std::uint64_t{op0} << 14 | std::uint64_t{op1} << 11 |
         std::uint64_t{crn} << 7 | std::uint64_t{crm} << 3 | std::uint64_t{op2};
}

unsigned IdReg::writable_mask_index() const {
  // KVM_ARM_FEATURE_ID_RANGE_IDX: op1 0, 1 and 3 map to 0, 1 and 2.
  const unsigned op1_index = op1 == 3 ? 2u : op1 & 3u;
  return op1_index << 6 | (crm & 7u) << 3 | (op2 & 7u);
}

std::uint64_t Field::mask() const { return width_mask(width) << shift; }

std::uint64_t Field::extract(std::uint64_t reg_value) const { return (reg_value >> shift) & width_mask(width); }

std::span<const IdReg> id_registers() { return kRegs; }

std::span<const Field> fields() { return kFields; }

const IdReg* find_register(std::string_view name) {
  for (const auto& r : kRegs)
    if (iequal(r.name, name)) return &r;
  return nullptr;
}

std::vector<const Field*> fields_named(std::string_view name) {
  std::vector<const Field*> out;
  for (const auto& f : kFields)
    if (iequal(f.name, name)) out.push_back(&f);
  return out;
}

const Field* find_field(std::string_view name) {
  if (auto dot = name.find('.'); dot != std::string_view::npos) {
    const IdReg* reg = find_register(name.substr(0, dot));
    if (reg == nullptr) return nullptr;
    for (const auto& f : kFields)
      if (f.reg == reg->name && iequal(f.name, name.substr(dot + 1))) return &f;
    return nullptr;
  }
  auto matches = fields_named(name);
  return matches.size() == 1 ? matches.front() : nullptr;
}

std::uint64_t safe_value(const Field& f, std::uint64_t want, std::uint64_t have) {
  return safe_value_with(f, f.policy, want, have);
}

Policy kvm_policy(const Field& f) {
  // kvm_arm64_ftr_safe_value(): a VMM may lower the PMU and debug versions.
  if (f.reg == kDfr0 && (f.name == "PMUVer" || f.name == "DebugVer")) return Policy::lower_safe;
  return f.policy;
}

std::uint64_t kvm_safe_value(const Field& f, std::uint64_t want, std::uint64_t have) {
  return safe_value_with(f, kvm_policy(f), want, have);
}

std::span<const Model> models() { return model_table(); }

std::string_view verdict_name(Verdict v) {
  switch (v) {
    case Verdict::same:
      return "same";
    case Verdict::set:
      return "set";
    case Verdict::not_writable:
      return "not_writable";
    case Verdict::unsafe:
      return "unsafe";
    case Verdict::host_lacks:
      return "host_lacks";
  }
  return "?";
}

std::optional<std::uint64_t> ResolvedModel::value(const Field& f) const {
  auto it = regs.find(f.reg);
  if (it == regs.end() || (it->second.second & f.mask()) != f.mask()) return std::nullopt;
  return f.extract(it->second.first);
}

Result<ResolvedModel> resolve(std::string_view spec) {
  auto parts = split(spec, ',');
  const std::string_view name = parts.front();
  ResolvedModel m;
  m.spec = std::string(spec);
  if (name.empty()) return fail("empty CPU model (known: {})", known_models());
  if (name == "host") {
    m.name = "host";
    m.host = true;
  } else {
    const Model* model = find_model(name);
    if (model == nullptr) return fail("unknown CPU model '{}' (known: {})", name, known_models());
    m.name = std::string(model->name);
    // Root first, so that a child's values replace its parent's (R36).
    std::vector<const Model*> chain;
    for (const Model* at = model; at != nullptr;) {
      if (chain.size() > models().size())
        return fail("CPU model '{}': its parents form a cycle", name);
      chain.push_back(at);
      if (at->parent.empty()) break;
      const Model* parent = find_model(at->parent);
      if (parent == nullptr) return fail("CPU model '{}' names an unknown parent '{}'", at->name, at->parent);
      at = parent;
    }
    std::reverse(chain.begin(), chain.end());
    for (const Model* at : chain) {
      for (const auto& [field_name, value] : at->values) {
        const Field* f = find_field(field_name);
        if (f == nullptr) return fail("CPU model '{}' names unknown field '{}'", at->name, field_name);
        if (value > width_mask(f->width))
          return fail("CPU model '{}': {} = {:#x} does not fit the field", at->name, qualified(*f), value);
        set_value(m, *f, value);
      }
      if (at->midr) m.midr = at->midr;
      if (at->sve) m.sve = at->sve;
    }
  }

  // The user's options, in order; each field and each option at most once.
  std::set<const Field*> overridden;
  bool saw_sve = false, saw_midr = false;
  for (std::size_t i = 1; i < parts.size(); ++i) {
    const std::string_view opt = parts[i];
    const auto eq = opt.find('=');
    const std::string_view key = opt.substr(0, eq);
    const std::string_view val = eq == std::string_view::npos ? std::string_view{} : opt.substr(eq + 1);
    if (eq == std::string_view::npos || key.empty())
      return fail("bad CPU option '{}' in '{}': expected feat_FIELD=VALUE, sve=VL[+VL...] or midr=host|VALUE", opt,
                  spec);
    if (key.starts_with("feat_")) {
      auto f = lookup_field(key.substr(5));
      if (!f) return fail(f.error());
      if (!overridden.insert(*f).second) return fail("{} is given twice in '{}'", key, spec);
      auto v = parse_field_value(**f, val);
      if (!v) return fail(v.error());
      set_value(m, **f, *v);
    } else if (key == "sve") {
      if (saw_sve) return fail("sve= is given twice in '{}'", spec);
      saw_sve = true;
      auto vls = parse_vls(val);
      if (!vls) return fail(vls.error());
      m.sve = *vls;
    } else if (key == "midr") {
      if (saw_midr) return fail("midr= is given twice in '{}'", spec);
      saw_midr = true;
      if (val == "host") {
        m.midr = std::nullopt;
      } else {
        auto v = parse_number(val);
        // MIDR_EL1[63:32] are RES0; KVM lets userspace write bits [31:0].
        if (!v || *v > 0xFFFFFFFF)
          return fail("bad midr '{}': expected host or a 32-bit value such as 0x410FD4F0", val);
        m.midr = *v;
      }
    } else {
      return fail("unknown CPU option '{}' in '{}': expected feat_FIELD=VALUE, sve=VL[+VL...] or midr=host|VALUE",
                  key, spec);
    }
  }

  // R35: SME is never enabled, whatever the model or the options say.
  if (const Field* sme = find_field("SME"); sme != nullptr) {
    if (auto v = m.value(*sme); v && *v != 0)
      return fail("'{}' sets ID_AA64PFR1_EL1.SME to {}: SME is not part of Grace and is never enabled (R35)", spec,
                  *v);
  }

  for (const auto& f : kFields)
    if (m.value(f)) m.set_fields.push_back(&f);
  return m;
}

std::vector<FieldCheck> check_model(const ResolvedModel& m, const HostView& host) {
  std::vector<FieldCheck> out;
  for (const Field* f : m.set_fields) {
    FieldCheck c;
    c.reg = std::string(f->reg);
    c.field = std::string(f->name);
    c.model = *m.value(*f);
    c.host = f->extract(host_value(host, f->reg));
    const IdReg* reg = find_register(f->reg);
    if (host.writable && reg != nullptr) {
      const std::uint64_t wm = (*host.writable)[reg->writable_mask_index()];
      c.writable = (wm & f->mask()) == f->mask();
    }
    const std::string name = qualified(*f);
    if (c.model == c.host) {
      c.verdict = Verdict::same;
    } else if (!host.writable) {
      c.verdict = Verdict::not_writable;
      c.why = fmt::format(
          "{}: the host has {}, the model {}; this kernel has no KVM_ARM_GET_REG_WRITABLE_MASKS "
          "(Linux before 6.7), so no ID register can be changed",
          name, show(*f, c.host), show(*f, c.model));
    } else if (!c.writable) {
      c.verdict = Verdict::not_writable;
      c.why = fmt::format("{}: the host has {}, the model {}, and KVM does not let userspace change this field",
                          name, show(*f, c.host), show(*f, c.model));
    } else if (kvm_safe_value(*f, c.model, c.host) != c.model) {
      c.verdict = Verdict::unsafe;
      const Policy p = kvm_policy(*f);
      const std::string_view pname = policy_name(p);
      switch (p) {
        case Policy::lower_safe:
          c.why = fmt::format("{}: LOWER_SAFE: the host has {}, a higher {} is not safe", name, show(*f, c.host),
                              show(*f, c.model));
          break;
        case Policy::higher_safe:
          c.why = fmt::format("{}: HIGHER_SAFE: the host has {}, a lower {} is not safe", name, show(*f, c.host),
                              show(*f, c.model));
          break;
        case Policy::higher_or_zero_safe:
          c.why = fmt::format("{}: {}: the host has {}; only 0 or a value of at least {} is safe, not {}", name,
                              pname, show(*f, c.host), show(*f, c.host), show(*f, c.model));
          break;
        case Policy::exact:
          c.why = fmt::format("{}: EXACT: only the host's {} or the safe value {} is accepted, not {}", name,
                              show(*f, c.host), show(*f, f->safe_val), show(*f, c.model));
          break;
      }
    } else {
      c.verdict = Verdict::set;
    }
    out.push_back(std::move(c));
  }

  if (m.midr) {
    FieldCheck c;
    c.reg = std::string(kMidr);
    c.model = *m.midr;
    c.host = host_value(host, kMidr);
    c.writable = host.midr_writable;
    if (c.model == c.host) {
      c.verdict = Verdict::same;
    } else if (host.midr_writable) {
      c.verdict = Verdict::set;
    } else {
      c.verdict = Verdict::not_writable;
      c.why = fmt::format(
          "MIDR_EL1: the host has {:#x}, the model {:#x}; MIDR_EL1 is writable only with "
          "KVM_CAP_ARM_WRITABLE_IMP_ID_REGS (Linux 6.15+); add midr=host to keep the host's",
          c.host, c.model);
    }
    out.push_back(std::move(c));
  }

  if (m.sve) {
    // KVM_REG_ARM64_SVE_VLS accepts only the host's set cut off at a
    // maximum: every host length up to the largest requested, nothing else.
    FieldCheck c;
    c.reg = "SVE_VLS";
    c.writable = true;
    const SveVls& want = *m.sve;
    const unsigned top = max_vq(want);
    c.model = top * 128;
    if (!host.sve) {
      c.verdict = Verdict::host_lacks;
      c.why = fmt::format("SVE: the model wants vector lengths {} bits, the host offers no SVE", list_vls(want));
    } else {
      const SveVls& have = *host.sve;
      c.host = max_vq(have) * 128;
      const SveVls expect = truncate_vls(have, top);
      const SveVls missing = and_not(want, have);
      const SveVls extra = and_not(expect, want);
      if (top == 0) {
        c.verdict = Verdict::host_lacks;
        c.why = "SVE: the model's vector-length set is empty";
      } else if (any(missing) || any(extra)) {
        c.verdict = Verdict::host_lacks;
        std::string why = fmt::format("SVE: the host offers {} bits, the model wants {}", list_vls(have),
                                      list_vls(want));
        if (any(missing)) why += fmt::format("; the host lacks {}", list_vls(missing));
        if (any(extra))
          why += fmt::format("; KVM accepts only the host's lengths up to a maximum, so {} cannot be left out",
                             list_vls(extra));
        c.why = std::move(why);
      } else {
        c.verdict = want == have ? Verdict::same : Verdict::set;
      }
    }
    out.push_back(std::move(c));
  }
  return out;
}

std::map<std::string, std::uint64_t, std::less<>> register_values(const ResolvedModel& m, const HostView& host) {
  std::map<std::string, std::uint64_t, std::less<>> out;
  for (const auto& [reg, vm] : m.regs) {
    const auto& [value, mask] = vm;
    const std::uint64_t have = host_value(host, reg);
    const std::uint64_t want = (have & ~mask) | (value & mask);
    if (want != have) out.emplace(reg, want);
  }
  if (m.midr) {
    const std::uint64_t have = host_value(host, kMidr);
    if (*m.midr != have) out.emplace(std::string(kMidr), *m.midr);
  }
  return out;
}

std::vector<const Model*> ancestry(std::string_view name) {
  std::vector<const Model*> out;
  while (!name.empty()) {
    const Model* found = nullptr;
    for (const auto& m : models())
      if (m.name == name) found = &m;
    if (!found) break;
    out.insert(out.begin(), found);
    name = found->parent;
  }
  return out;
}

std::string set_by(const std::vector<const Model*>& models, const ResolvedModel& m, const Field& f) {
  std::optional<std::uint64_t> prev;
  std::string by;
  for (const auto* model : models) {
    auto r = resolve(model->name);
    const auto v = r ? r->value(f) : std::nullopt;
    if (v != prev) {
      by = std::string(model->name);
      prev = v;
    }
  }
  return prev == m.value(f) ? by : "option";
}

}  // namespace nvgrace::cpu
