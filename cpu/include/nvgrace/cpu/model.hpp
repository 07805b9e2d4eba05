// Named arm64 CPU models (nvgrace-model.md R34-R36): a table of ID-register
// fields with the Linux kernel's safe-value policy for each, and models that
// set field values and inherit from a parent (neoverse-v2-v1 -> grace-v1).
// Pure logic: it knows register encodings and arithmetic, never ioctls; the
// KVM side (src/vm/aarch64) reads the host's values and writable masks and
// hands them to check_model().
//
// Values and policies are documented, each with its source, in
// docs/cpu-models.md.
#pragma once

#include <array>
#include <cstdint>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "nvgrace/common/result.hpp"

namespace nvgrace::cpu {

// arm64_ftr_safe_value() in arch/arm64/kernel/cpufeature.c.
enum class Policy { lower_safe, higher_safe, higher_or_zero_safe, exact };
[[nodiscard]] std::string_view policy_name(Policy p);  // "LOWER_SAFE", ...

// A system register in the feature-ID space (op0 3, op1 0/1/3, CRn 0).
struct IdReg {
  std::string_view name;  // "ID_AA64PFR0_EL1"
  std::uint8_t op0, op1, crn, crm, op2;
  // KVM_REG_ARM64 | KVM_REG_SIZE_U64 | KVM_REG_ARM64_SYSREG | encoding.
  [[nodiscard]] std::uint64_t kvm_reg_id() const;
  // Index into the 192-entry array KVM_ARM_GET_REG_WRITABLE_MASKS fills
  // (KVM_ARM_FEATURE_ID_RANGE_IDX).
  [[nodiscard]] unsigned writable_mask_index() const;
};

struct Field {
  std::string_view name;  // "SVE", the kernel's arch/arm64/tools/sysreg name
  std::string_view reg;   // "ID_AA64PFR0_EL1"
  unsigned shift = 0, width = 4;
  bool is_signed = false;  // FTR_SIGNED: 0xF is "not implemented", below 0
  Policy policy = Policy::lower_safe;
  std::uint64_t safe_val = 0;  // FTR_EXACT's fixed safe value
  [[nodiscard]] std::uint64_t mask() const;
  [[nodiscard]] std::uint64_t extract(std::uint64_t reg_value) const;
};

[[nodiscard]] std::span<const IdReg> id_registers();
[[nodiscard]] std::span<const Field> fields();
[[nodiscard]] const IdReg* find_register(std::string_view name);
// By field name ("SVE") or register-qualified ("ID_AA64PFR0_EL1.SVE") where
// a name is ambiguous (I8MM is in ISAR1 and ZFR0). Names compare without
// regard to case; an ambiguous unqualified name finds nothing.
[[nodiscard]] const Field* find_field(std::string_view name);
// Every field of that (unqualified) name, in table order: one, several
// (AES is in ISAR0, ZFR0 and SMFR0) or none.
[[nodiscard]] std::vector<const Field*> fields_named(std::string_view name);

// The field's safe value of `want` against the host's `have`, per policy,
// as arm64_ftr_safe_value() computes it: signed fields compare
// sign-extended, and FTR_EXACT always yields safe_val (callers treat equal
// values as safe before asking). The result is the raw field encoding.
[[nodiscard]] std::uint64_t safe_value(const Field& f, std::uint64_t want, std::uint64_t have);
// The policy KVM applies to a userspace write (kvm_arm64_ftr_safe_value()):
// the field's own, except ID_AA64DFR0_EL1.PMUVer and .DebugVer, which KVM
// treats as LOWER_SAFE so that a VMM may offer an older PMU or debug version.
[[nodiscard]] Policy kvm_policy(const Field& f);
[[nodiscard]] std::uint64_t kvm_safe_value(const Field& f, std::uint64_t want, std::uint64_t have);

// 128-bit vector-length set as KVM_REG_ARM64_SVE_VLS encodes it: bit (vq-1)
// of word (vq-1)/64, vq = VL / 128 bits (R34).
using SveVls = std::array<std::uint64_t, 8>;

struct Model {
  std::string_view name;         // "grace-v1"
  std::string_view parent;       // "" for a root
  std::string_view description;
  // Field values the model sets (field name, value); a child's entry replaces
  // its parent's.
  std::vector<std::pair<std::string_view, std::uint64_t>> values;
  std::optional<std::uint64_t> midr;  // MIDR_EL1, where the model names the core
  std::optional<SveVls> sve;          // vector lengths; nullopt: inherit
};
[[nodiscard]] std::span<const Model> models();

// A model with inheritance resolved and the user's overrides applied.
struct ResolvedModel {
  std::string name;  // "host" or a model name
  std::string spec;  // as given: "grace-v1,feat_SHA1=0"
  bool host = false; // --cpu host: the host's values, nothing set
  // register name -> (value, mask of the bits the model sets)
  std::map<std::string, std::pair<std::uint64_t, std::uint64_t>, std::less<>> regs;
  std::vector<const Field*> set_fields;  // every field the model sets, in table order
  std::optional<std::uint64_t> midr;     // nullopt: the host's (also `midr=host`)
  std::optional<SveVls> sve;             // nullopt: every length the host offers
  [[nodiscard]] std::optional<std::uint64_t> value(const Field& f) const;
};

// Parses "host", "NAME" or "NAME,feat_FIELD=VALUE,...,sve=128+256,midr=host".
// FIELD as find_field() takes it; VALUE decimal or 0x hex within the field's
// width (or -N for a signed field); sve= lengths in bits, multiples of 128 up
// to 2048 joined by '+'; midr=host keeps the host's MIDR_EL1, midr=0x...
// sets one. Errors name the unknown model (listing the known ones), the
// unknown or ambiguous field or the bad value. SME stays 0 (R35).
[[nodiscard]] Result<ResolvedModel> resolve(std::string_view spec);

// What the host can give, as KVM reports it for a fresh VM and vCPU.
struct HostView {
  std::map<std::string, std::uint64_t, std::less<>> values;  // register name -> KVM_GET_ONE_REG value
  std::optional<std::array<std::uint64_t, 192>> writable;    // nullopt: the kernel lacks the ioctl
  bool midr_writable = false;  // KVM_CAP_ARM_WRITABLE_IMP_ID_REGS enabled
  std::optional<SveVls> sve;   // nullopt: no SVE
};

enum class Verdict { same, set, not_writable, unsafe, host_lacks };
[[nodiscard]] std::string_view verdict_name(Verdict v);  // "same", "set", ...

struct FieldCheck {
  std::string reg, field;  // "ID_AA64ISAR0_EL1", "SHA1" ("MIDR_EL1"/"" and "SVE_VLS"/"" for those)
  // Field values; MIDR_EL1 values; for SVE_VLS the largest vector length in
  // bits (0: none), the sets themselves are named in `why`.
  std::uint64_t model = 0, host = 0;
  bool writable = false;
  Verdict verdict = Verdict::same;
  std::string why;  // a sentence for not_writable/unsafe/host_lacks
  [[nodiscard]] bool ok() const { return verdict == Verdict::same || verdict == Verdict::set; }
};

// Every field the model sets, checked against the host (R36): equal, or
// writable and safe per policy; the MIDR and the vector lengths likewise.
[[nodiscard]] std::vector<FieldCheck> check_model(const ResolvedModel& m, const HostView& host);

// The models from the root of `name`'s inheritance down to it (neoverse-v2-v1,
// grace-v1); empty for an unknown name.
[[nodiscard]] std::vector<const Model*> ancestry(std::string_view name);
// Which model of `models` (root first) gave field `f` the value it has in
// `m`; "option" when a feat_ override of the spec gave it.
[[nodiscard]] std::string set_by(const std::vector<const Model*>& models, const ResolvedModel& m, const Field& f);

// The register values to write with KVM_SET_ONE_REG: the host's value with
// the model's fields replaced, for each register whose value changes
// (MIDR_EL1 included when the model's differs from the host's). A register
// missing from host.values is taken as 0, as KVM reads unallocated ID
// registers as zero.
[[nodiscard]] std::map<std::string, std::uint64_t, std::less<>> register_values(const ResolvedModel& m,
                                                                                 const HostView& host);

}  // namespace nvgrace::cpu
