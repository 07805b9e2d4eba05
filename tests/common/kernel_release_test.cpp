// Linux releases as uname names them, and the version comparisons that
// decide KVM's stage-2 memory types (R33, R40).
#include <catch2/catch.hpp>

#include "nvgrace/common/kernel_release.hpp"

using nvgrace::parse_kernel_release;

TEST_CASE("kernel release: MAJOR.MINOR from uname's release, the rest ignored") {
  auto v = parse_kernel_release("6.12.117+deb13-cloud-arm64");
  REQUIRE(v);
  CHECK(v->major == 6);
  CHECK(v->minor == 12);
  CHECK_FALSE(v->at_least(6, 17));
  CHECK(v->at_least(6, 12));
  v = parse_kernel_release("7.3.4+bpo-cloud-arm64");
  REQUIRE(v);
  CHECK(v->at_least(6, 17));
  v = parse_kernel_release("6.17.0-rc1");
  REQUIRE(v);
  CHECK(v->at_least(6, 17));
  v = parse_kernel_release("7");
  REQUIRE(v);
  CHECK(v->major == 7);
  CHECK(v->minor == 0);
  CHECK_FALSE(parse_kernel_release("custom"));
  CHECK_FALSE(parse_kernel_release(""));
  CHECK_FALSE(parse_kernel_release("6.x"));
}
