// Benchmark of the vfio-user server as a VMM sees it, measured in one run
// over a real UNIX socket: config-space read round trips per second, and
// BAR4 reads through the mmap'd memfd against trapped REGION_READ messages.
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <thread>
#include <vector>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "nvgrace/devices/emulated.hpp"
#include "nvgrace/vfio/region_info.hpp"
#include "nvgrace/vfio/user/session.hpp"
#include "nvgrace/vfio/variant/variant.hpp"
#include "nvgrace/serve/server.hpp"
#include "vfio_user_client.hpp"

using namespace nvgrace;
namespace user = vfio::user;
using Clock = std::chrono::steady_clock;

namespace {
std::vector<std::uint8_t> msg(std::uint16_t cmd, const void* payload, std::size_t n) {
  std::vector<std::uint8_t> m(16 + n);
  const user::Header h{1, cmd, static_cast<std::uint32_t>(16 + n), 0, 0};
  std::memcpy(m.data(), &h, 16);
  std::memcpy(m.data() + 16, payload, n);
  return m;
}
std::vector<std::uint8_t> call(int fd, const std::vector<std::uint8_t>& m, int* got_fd = nullptr) {
  return test::vfio_user_call(fd, m, got_fd);
}
struct Rw {
  std::uint64_t offset;
  std::uint32_t region, count;
};
}  // namespace

int main() {
  spdlog::set_level(spdlog::level::warn);
  auto dev = std::move(devices::make_emulated_device({}).value().device);
  const std::string path = fmt::format("/tmp/nvgrace-bench-{}.sock", getpid());
  std::vector<serve::ServedDevice> devices;
  devices.push_back({path, std::move(dev), false});
  auto server = serve::Server::create(std::move(devices)).value();
  std::thread loop([&] { (void)server->run(false); });

  auto conn = test::vfio_user_connect(path);
  if (!conn) return 1;
  const int fd = conn.get();
  const std::uint8_t version[] = {0, 0, 0, 0, '{', '}', 0};
  call(fd, msg(user::kVersion, version, sizeof version));

  constexpr int kReads = 100000;
  const Rw cfg{0, 7, 4};
  const auto cfg_msg = msg(user::kRegionRead, &cfg, sizeof cfg);
  auto t0 = Clock::now();
  for (int i = 0; i < kReads; ++i) call(fd, cfg_msg);
  const double cfg_s = std::chrono::duration<double>(Clock::now() - t0).count();

  // BAR4 through the memfd the server sends.
  std::uint32_t q[8] = {64, 0, 4, 0, 0, 0, 0, 0};
  int memfd = -1;
  auto info = call(fd, msg(user::kDeviceGetRegionInfo, q, sizeof q), &memfd);
  auto d = vfio::decode_region_info(std::span(info).subspan(16)).value();
  constexpr std::size_t kChunk = 1 << 20, kSpan = 64 << 20;
  auto* map = static_cast<std::uint8_t*>(::mmap(nullptr, kSpan, PROT_READ | PROT_WRITE, MAP_SHARED, memfd, static_cast<off_t>(d.offset)));
  std::memset(map, 0x5A, kSpan);
  std::vector<std::uint8_t> buf(kChunk);
  constexpr int kRounds = 512;
  t0 = Clock::now();
  for (int i = 0; i < kRounds; ++i) std::memcpy(buf.data(), map + (static_cast<std::size_t>(i) * kChunk) % kSpan, kChunk);
  const double mmap_s = std::chrono::duration<double>(Clock::now() - t0).count();
  t0 = Clock::now();
  for (int i = 0; i < kRounds; ++i) {
    const Rw r{(static_cast<std::uint64_t>(i) * kChunk) % kSpan, 4, static_cast<std::uint32_t>(kChunk)};
    call(fd, msg(user::kRegionRead, &r, sizeof r));
  }
  const double trap_s = std::chrono::duration<double>(Clock::now() - t0).count();
  const double gib = kRounds * static_cast<double>(kChunk) / (1 << 30);
  fmt::print("config-space reads over the socket: {:.0f} round trips/s ({:.1f} us each)\n", kReads / cfg_s,
             cfg_s / kReads * 1e6);
  fmt::print("BAR4 reads, 1 MiB each, {} GiB:\n", gib);
  fmt::print("  through the mmap'd memfd:   {:8.2f} GiB/s\n", gib / mmap_s);
  fmt::print("  through REGION_READ:        {:8.2f} GiB/s\n", gib / trap_s);
  fmt::print("  ratio mmap / REGION_READ:   {:8.1f}x\n", trap_s / mmap_s);
  ::munmap(map, kSpan);
  ::close(memfd);
  conn.reset();
  server->stop();
  loop.join();
  return 0;
}
