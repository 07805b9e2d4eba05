// Where the iasl-compiled ACPI fixtures are: the build tree that compiled
// them, unless NVGRACE_FIXTURE_DIR names another place in the environment - as
// the nested arm64 guests do, which carry the fixtures at a fixed path of
// their own (the tests must not depend on where the clone lives).
#pragma once

#include <cstdlib>
#include <string>

namespace nvgrace::test {

inline std::string fixture_dir() {
  const char* env = std::getenv("NVGRACE_FIXTURE_DIR");
  return env && *env ? std::string(env) : std::string(NVGRACE_FIXTURE_DIR);
}

}  // namespace nvgrace::test
