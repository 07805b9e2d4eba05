// The vfio-user message path allocates nothing per message in steady state:
// every operator new in this test binary is counted while a test asks for it.
#include <catch2/catch.hpp>

#include <linux/vfio.h>

#include <atomic>
#include <cstdlib>
#include <cstring>
#include <new>
#include <vector>

#include "device_util.hpp"
#include "nvgrace/vfio/user/session.hpp"

namespace {
std::atomic<bool> counting{false};
std::atomic<std::size_t> allocations{0};
}  // namespace

// These replacements pair malloc with free; GCC cannot see that operator new
// below is malloc and warns about every delete.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"
void* operator new(std::size_t n) {
  if (counting.load(std::memory_order_relaxed)) allocations.fetch_add(1, std::memory_order_relaxed);
  if (void* p = std::malloc(n ? n : 1)) return p;
  throw std::bad_alloc();
}
void* operator new[](std::size_t n) { return operator new(n); }
void operator delete(void* p) noexcept { std::free(p); }
void operator delete[](void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }
void operator delete[](void* p, std::size_t) noexcept { std::free(p); }
#pragma GCC diagnostic pop

namespace user = nvgrace::vfio::user;

namespace {
template <class T>
void put(std::vector<std::uint8_t>& b, const T& v) {
  const auto* p = reinterpret_cast<const std::uint8_t*>(&v);
  b.insert(b.end(), p, p + sizeof v);
}
std::vector<std::uint8_t> message(std::uint16_t cmd, std::vector<std::uint8_t> payload) {
  std::vector<std::uint8_t> m;
  put(m, user::Header{1, cmd, static_cast<std::uint32_t>(16 + payload.size()), 0, 0});
  m.insert(m.end(), payload.begin(), payload.end());
  return m;
}
std::vector<std::uint8_t> access(std::uint64_t offset, std::uint32_t region, std::uint32_t count, bool with_data) {
  std::vector<std::uint8_t> p;
  put(p, user::RegionAccess{offset, region, count});
  if (with_data) p.resize(p.size() + count, 0x5A);
  return p;
}
std::vector<std::uint8_t> info_query(std::uint32_t argsz, std::uint32_t index, std::size_t size) {
  std::vector<std::uint8_t> p(size, 0);
  std::memcpy(p.data(), &argsz, 4);
  std::memcpy(p.data() + 8, &index, 4);
  return p;
}
}  // namespace

TEST_CASE("vfio-user: steady-state messages allocate nothing") {
  auto dev = test::make_device("gh200");
  user::Session s(*dev);
  user::ReplyBuffer out;
  std::vector<std::uint8_t> version;
  put(version, std::uint32_t{0});
  const std::string caps = R"({"capabilities":{"max_msg_fds":8}})";
  version.insert(version.end(), caps.begin(), caps.end());
  version.push_back(0);
  REQUIRE(s.handle(message(user::kVersion, version), {}, out) == user::Outcome::reply);
  const std::vector<std::vector<std::uint8_t>> messages{
      message(user::kRegionRead, access(0, VFIO_PCI_CONFIG_REGION_INDEX, 4, false)),
      message(user::kRegionRead, access(0, 4, 65536, false)),
      message(user::kRegionWrite, access(0x1000, 4, 4096, true)),
      message(user::kRegionWrite, access(0x10, VFIO_PCI_CONFIG_REGION_INDEX, 4, true)),
      message(user::kDeviceGetRegionInfo, info_query(256, 4, 32)),
      message(user::kDeviceGetRegionInfo, info_query(32, 2, 32)),
      message(user::kDeviceGetIrqInfo, info_query(16, VFIO_PCI_MSIX_IRQ_INDEX, 16)),
      message(user::kDeviceGetInfo, info_query(16, 0, 16)),
  };
  for (const auto& m : messages) REQUIRE(s.handle(m, {}, out) == user::Outcome::reply);  // warm up
  allocations = 0;
  counting = true;
  std::size_t replies = 0;
  for (int i = 0; i < 1000; ++i)
    for (const auto& m : messages) replies += s.handle(m, {}, out) == user::Outcome::reply;
  counting = false;
  CHECK(replies == 1000 * messages.size());
  CHECK(allocations.load() == 0);
  // The counter works: a vector allocates.
  counting = true;
  std::vector<int> v(16);
  counting = false;
  CHECK(allocations.load() == 1);
}
