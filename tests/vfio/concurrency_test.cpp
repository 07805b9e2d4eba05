// The concurrency contract of VariantDevice (device.hpp): memory accesses run
// concurrently with each other; reset excludes them. Meant for the
// ThreadSanitizer build (scripts/test runs it there).
#include <catch2/catch.hpp>

#include <atomic>
#include <thread>
#include <vector>

#include "device_util.hpp"

using namespace nvgrace;

TEST_CASE("concurrency: 4 threads of memory reads and writes, config accesses and resets") {
  auto d = test::make_device("gh200");
  test::decode_on(*d);  // kept across the resets below, as vfio-pci keeps it
  std::atomic<bool> stop{false};
  std::atomic<int> errors{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      const std::vector<std::uint8_t> pattern(4096, static_cast<std::uint8_t>(t + 1));
      std::vector<std::uint8_t> in(4096);
      const std::uint64_t base = static_cast<std::uint64_t>(t) * 0x100000;
      for (std::uint64_t i = 0; i < 2000 && !stop; ++i) {
        if (!d->write(RegionIndex{4}, base + (i % 64) * 4096, pattern)) ++errors;
        if (!d->read(RegionIndex{2}, base + (i % 64) * 4096, in)) ++errors;
      }
    });
  }
  threads.emplace_back([&] {
    std::vector<std::uint8_t> buf(4);
    for (int i = 0; i < 2000; ++i) {
      if (!d->read(RegionIndex{7}, static_cast<std::uint64_t>(i % 64) * 4, buf)) ++errors;
      if (!d->write(RegionIndex{7}, 0x24, buf)) ++errors;
      (void)d->bar_states();
      if (!d->read(RegionIndex{0}, 0x1498, buf)) ++errors;
    }
  });
  threads.emplace_back([&] {
    for (int i = 0; i < 50; ++i) {
      d->reset();
      std::this_thread::yield();
    }
  });
  for (auto& th : threads) th.join();
  CHECK(errors == 0);
  // Every writer's last pattern is intact in its own range.
  std::vector<std::uint8_t> out(4096);
  for (int t = 0; t < 4; ++t) {
    REQUIRE(d->read(RegionIndex{4}, static_cast<std::uint64_t>(t) * 0x100000, out).value() == 4096);
    CHECK(out[0] == static_cast<std::uint8_t>(t + 1));
    CHECK(out[4095] == static_cast<std::uint8_t>(t + 1));
  }
}
