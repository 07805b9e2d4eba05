// `nvgrace cpu`: the CPU model table as a user reads it (R34-R36). The model
// arithmetic itself is tested in tests/cpu/model_test.cpp; the check
// against a host's KVM runs in the arm64 e2e guest.
#include <catch2/catch.hpp>

#include <nlohmann/json.hpp>

#include "columns.hpp"
#include "run_nvgrace.hpp"

using nlohmann::json;

TEST_CASE("cpu: the list names host and both models, grace-v1 under neoverse-v2-v1, in 80 columns") {
  auto r = run_nvgrace({"cpu"});
  REQUIRE(r.exit_code == 0);
  CHECK(r.out.find("\nhost ") != std::string::npos);
  CHECK(r.out.find("\nneoverse-v2-v1 ") != std::string::npos);
  CHECK(r.out.find("\ngrace-v1         neoverse-v2-v1") != std::string::npos);
  CHECK(r.out.find("0x410fd4f0") != std::string::npos);  // R36: Arm (0x41), part 0xD4F
  CHECK(wider_than(r.out, 80).empty());
}

TEST_CASE("cpu --model: each field with its value, policy and the model that set it") {
  auto r = run_nvgrace({"cpu", "--model", "grace-v1"});
  REQUIRE(r.exit_code == 0);
  CHECK(r.out.starts_with("grace-v1: MIDR_EL1 0x410fd4f0, SVE vector lengths 128 bits,"));
  // Grace adds SM3/SM4 to the V2 core (hwcaps sm3 sm4 svesm4); DIT is the core's.
  CHECK(r.out.find("ID_AA64ZFR0_EL1    SM4           0x1  LOWER_SAFE           grace-v1") != std::string::npos);
  CHECK(r.out.find("ID_AA64PFR0_EL1    DIT           0x1  LOWER_SAFE           neoverse-v2-v1") != std::string::npos);
  // R35: no SME in a Grace model.
  CHECK(r.out.find("ID_AA64PFR1_EL1    SME           0x0") != std::string::npos);
}

TEST_CASE("cpu --model --json: an override on the command line is reported as set by the option") {
  auto base = run_nvgrace({"cpu", "--model", "grace-v1", "--json"});
  auto over = run_nvgrace({"cpu", "--model", "grace-v1,feat_ID_AA64ISAR0_EL1.SM3=0,sve=128", "--json"});
  REQUIRE(base.exit_code == 0);
  REQUIRE(over.exit_code == 0);
  const auto b = json::parse(base.out), o = json::parse(over.out);
  CHECK(b["model"] == "grace-v1");
  CHECK(b["sve_bits"] == "128");
  CHECK(b["fields"].size() == o["fields"].size());
  bool found = false;
  for (const auto& f : o["fields"])
    if (f["register"] == "ID_AA64ISAR0_EL1" && f["field"] == "SM3") {
      found = true;
      CHECK(f["value"] == 0);
      CHECK(f["set_by"] == "option");
    }
  CHECK(found);
}

TEST_CASE("cpu --model host: nothing set, the guest sees what KVM offers") {
  auto r = run_nvgrace({"cpu", "--model", "host"});
  REQUIRE(r.exit_code == 0);
  CHECK(r.out.find("0 ID-register fields set") != std::string::npos);
  CHECK(r.out.find("The guest sees the host's ID registers as KVM offers them.") != std::string::npos);
}
