// `nvgrace serve` upgraded in place on SIGUSR2 (nvgrace-model.md R41), seen
// from a client that never stops talking: the process and its connection
// stay, every register and byte the client wrote is still there, requests
// sent while the binary execs are answered within QEMU's x-msg-timeout, and
// a binary that cannot take the state on is refused while the old one
// serves on.
#include <catch2/catch.hpp>

#include <fcntl.h>
#include <linux/pci_regs.h>
#include <linux/vfio.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>

#include <chrono>
#include <filesystem>
#include <functional>
#include <fstream>
#include <thread>

#include "nvgrace/sys/memfd.hpp"
#include "nvgrace/sys/scm.hpp"
#include "nvgrace/vfio/function.hpp"
#include "nvgrace/vfio/user/client.hpp"
#include "serve_process.hpp"
#include "standin_systemd.hpp"

using namespace nvgrace;
using namespace std::chrono_literals;
namespace fs = std::filesystem;

namespace {

std::size_t count_of(const std::string& text, const std::string& what) {
  std::size_t n = 0;
  for (auto at = text.find(what); at != std::string::npos; at = text.find(what, at + 1)) ++n;
  return n;
}

std::unique_ptr<vfio::user::Client> connect(const std::string& sock) {
  auto fd = sys::connect_unix(sock);
  REQUIRE(fd);
  auto c = vfio::user::Client::create(std::move(*fd));
  if (!c) FAIL(c.error().message);
  return std::move(*c);
}

// A client as a guest's VMM leaves the device before the crash tests: BAR4
// placed, memory decode on, 8 KiB of its memory DMA-mapped at IOVA
// 0x100000 (the memfd kept beside it).
struct PlacedClient {
  std::unique_ptr<vfio::user::Client> client;
  sys::UniqueFd dma;
};
PlacedClient connect_placed(const std::string& sock) {
  PlacedClient p{connect(sock), {}};
  REQUIRE(vfio::config_write(*p.client, ConfigOffset{PCI_BASE_ADDRESS_4}, 4, 0x40000000u));
  REQUIRE(vfio::config_write(*p.client, ConfigOffset{PCI_COMMAND}, 2, PCI_COMMAND_MEMORY));
  auto dma = sys::make_memfd("dma", 0x2000);
  REQUIRE(dma);
  p.dma = std::move(*dma);
  REQUIRE(p.client->dma_map({Iova{0x100000}, 0x2000, p.dma.get(), 0, true, true}));
  return p;
}

std::vector<std::uint8_t> read_bytes(vfio::Function& f, RegionIndex r, std::uint64_t off, std::size_t n) {
  std::vector<std::uint8_t> b(n);
  auto got = f.read(r, off, b);
  if (!got) FAIL(got.error().message);
  return b;
}

// Sends SIGUSR2 and keeps reading a config register until the log says the
// upgrade `number` is done (or refused): every read must succeed with
// `expect`. Returns the longest round trip seen.
std::chrono::milliseconds upgrade_while_talking(test::ServeProcess& s, vfio::Function& c, unsigned number,
                                                const std::string& done, std::uint32_t expect) {
  REQUIRE(s.pid() > 0);  // never kill(-1, ...)
  REQUIRE(::kill(s.pid(), SIGUSR2) == 0);
  std::chrono::milliseconds longest{0};
  const auto t0 = std::chrono::steady_clock::now();
  while (count_of(s.log(), done) < number) {
    REQUIRE(std::chrono::steady_clock::now() - t0 < 20s);
    const auto a = std::chrono::steady_clock::now();
    auto v = vfio::config_read(c, ConfigOffset{PCI_BASE_ADDRESS_4}, 4);
    if (!v) FAIL("a request during the upgrade failed: " << v.error().message << "\n" << s.log());
    CHECK(*v == expect);
    longest = std::max(longest, std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - a));
  }
  return longest;
}

// A client that keeps talking for `how_long`: config space, a BAR0 register
// and BAR4 memory (at 0x100 + 4 * (n % 64)), each written, the first two read
// back; `n` counts the rounds. `context` is added to a failure's message.
void talk_for(vfio::Function& c, std::uint32_t& n, std::chrono::milliseconds how_long,
              const std::function<std::string()>& context) {
  const auto until = std::chrono::steady_clock::now() + how_long;
  while (std::chrono::steady_clock::now() < until) {
    ++n;
    const std::uint16_t cmd = (n & 1) ? (PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER) : PCI_COMMAND_MEMORY;
    auto w = vfio::config_write(c, ConfigOffset{PCI_COMMAND}, 2, cmd);
    if (!w) FAIL("config write " << n << ": " << w.error().message << "\n" << context());
    auto r = vfio::config_read(c, ConfigOffset{PCI_COMMAND}, 2);
    if (!r) FAIL("config read " << n << ": " << r.error().message << "\n" << context());
    REQUIRE(*r == cmd);
    REQUIRE(c.write(vfio::kBar0Region, 0x100, std::span(reinterpret_cast<const std::uint8_t*>(&n), 4)));
    std::uint32_t back = 0;
    REQUIRE(c.read(vfio::kBar0Region, 0x100, std::span(reinterpret_cast<std::uint8_t*>(&back), 4)));
    REQUIRE(back == n);
    REQUIRE(c.write(vfio::kBar4Region, 0x100 + 4 * (n % 64), std::span(reinterpret_cast<const std::uint8_t*>(&n), 4)));
  }
}

// A copy of the built nvgrace in a folder of its own, for a test that
// replaces "the binary at the server's path" under it.
std::string own_copy_of_nvgrace(const std::string& name) {
  const auto dir = test::temp_path(name);
  fs::create_directories(dir);
  const auto bin = dir + "/nvgrace";
  fs::copy_file(NVGRACE_BIN, bin, fs::copy_options::overwrite_existing);
  return bin;
}

// Puts a shell script where `bin` is, as a package upgrade does (rename).
void replace_with_script(const std::string& bin, const std::string& script) {
  const auto tmp = bin + ".new";
  std::ofstream(tmp) << "#!/bin/sh\n" << script;
  fs::permissions(tmp, fs::perms::owner_all);
  fs::rename(tmp, bin);
}

}  // namespace

TEST_CASE("serve: SIGUSR2 upgrades in place - same process and connection, every register, byte, DMA mapping and "
          "interrupt kept, requests sent meanwhile answered (R41)") {
  const auto sock = test::temp_path("upgrade.sock");
  test::ServeProcess s({"--socket", sock, "--profile", "gh200", "--mem-size", "0x60000000"});
  REQUIRE(s.wait_socket(sock));
  const pid_t pid = s.pid();
  auto c = connect(sock);
  // What a guest and its VMM leave behind: BARs programmed, data in both
  // fake BARs and in a BAR0 register, a DMA mapping, an MSI-X eventfd.
  REQUIRE(vfio::config_write(*c, ConfigOffset{PCI_BASE_ADDRESS_4}, 4, 0x40000000u));
  REQUIRE(vfio::config_write(*c, ConfigOffset{PCI_BASE_ADDRESS_5}, 4, 0x1u));
  REQUIRE(vfio::config_write(*c, ConfigOffset{PCI_COMMAND}, 2, PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER));
  const std::vector<std::uint8_t> data{0xde, 0xad, 0xbe, 0xef, 1, 2, 3, 4};
  REQUIRE(c->write(vfio::kBar4Region, 0x3000, data));
  REQUIRE(c->write(vfio::kBar2Region, 0x40, data));
  const std::uint32_t reg = 0x5eed;
  REQUIRE(c->write(vfio::kBar0Region, 0x800, std::span(reinterpret_cast<const std::uint8_t*>(&reg), 4)));
  auto dma = sys::make_memfd("dma", 0x4000);
  REQUIRE(dma);
  for (std::uint64_t iova : {0x100000ull, 0x200000ull})
    REQUIRE(c->dma_map({Iova{iova}, 0x2000, dma->get(), 0, true, true}));
  auto efd = sys::make_eventfd(false);
  REQUIRE(efd);
  const int irq_fds[] = {efd->get()};
  REQUIRE(c->set_irqs({VFIO_IRQ_SET_DATA_EVENTFD | VFIO_IRQ_SET_ACTION_TRIGGER, VFIO_PCI_MSIX_IRQ_INDEX, 0, 1, {},
                       irq_fds}));
  const auto config = vfio::config_dump(*c, 4096);
  REQUIRE(config);

  for (unsigned round = 1; round <= 3; ++round) {
    const auto longest = upgrade_while_talking(s, *c, round, "upgraded in place", 0x4000000Cu);
    INFO("upgrade " << round << ": longest round trip " << longest.count() << " ms");
    CHECK(longest < 5000ms);  // QEMU's x-msg-timeout
    CHECK(s.pid() == pid);
    CHECK_FALSE(s.exited());
    CHECK(*vfio::config_dump(*c, 4096) == *config);
    CHECK(read_bytes(*c, vfio::kBar4Region, 0x3000, 8) == data);
    CHECK(read_bytes(*c, vfio::kBar2Region, 0x40, 8) == data);
    CHECK(read_bytes(*c, vfio::kBar0Region, 0x800, 4) == std::vector<std::uint8_t>{0xed, 0x5e, 0, 0});
  }
  // The fake BAR's memory is the same memory: mapped through the fd the
  // region info brings now, it holds what was written before the upgrades.
  auto info = c->region_info(vfio::kBar4Region);
  REQUIRE(info);
  REQUIRE(info->fd >= 0);
  // The DMA table came along: one mapping unmaps exactly, twice is refused.
  CHECK(c->dma_unmap(Iova{0x200000}, 0x2000));
  CHECK_FALSE(c->dma_unmap(Iova{0x200000}, 0x2000));
  // Still one client at a time.
  auto second = sys::connect_unix(sock);
  REQUIRE(second);
  pollfd p{second->get(), POLLIN, 0};
  CHECK(::poll(&p, 1, 3000) == 1);
  // The client leaves: the mapping and the interrupt it made before the
  // upgrades are what the teardown removes (R30).
  c.reset();
  for (int i = 0; i < 100 && s.log().find("ready for the next client") == std::string::npos; ++i)
    std::this_thread::sleep_for(20ms);
  CHECK(s.log().find("1 DMA mapping(s) removed, 1 IRQ index(es) disabled") != std::string::npos);
  CHECK(s.stop(SIGTERM) == 0);
  CHECK_FALSE(fs::exists(sock));
}

TEST_CASE("serve: an upgrade to a binary that cannot take the state on is refused, saying why, and the server "
          "serves on - then the real binary takes over (R41)") {
  const auto bin = own_copy_of_nvgrace("upgrade-bin");
  const auto sock = test::temp_path("refuse.sock");
  test::ServeProcess s({"--socket", sock, "--profile", "gb200", "--mem-size", "0x40000000"}, bin);
  REQUIRE(s.wait_socket(sock));
  auto c = connect(sock);
  REQUIRE(vfio::config_write(*c, ConfigOffset{PCI_BASE_ADDRESS_4}, 4, 0x80000000u));
  const std::vector<std::uint8_t> data{7, 7, 7, 7};
  REQUIRE(c->write(vfio::kBar4Region, 0, data));
  // A "new version" that does not know this state's format.
  replace_with_script(bin, "echo 'the hand-over is in format 1; this binary reads format 2 only'\nexit 1\n");
  upgrade_while_talking(s, *c, 1, "upgrade refused", 0x8000000Cu);
  CHECK(s.log().find("this binary reads format 2 only; still serving with this binary") != std::string::npos);
  CHECK(read_bytes(*c, vfio::kBar4Region, 0, 4) == data);
  // No binary at all there.
  fs::remove(bin);
  upgrade_while_talking(s, *c, 2, "upgrade refused", 0x8000000Cu);
  CHECK(s.log().find("cannot start " + bin) != std::string::npos);
  // The real one takes over.
  fs::copy_file(NVGRACE_BIN, bin);
  upgrade_while_talking(s, *c, 1, "upgraded in place", 0x8000000Cu);
  CHECK(read_bytes(*c, vfio::kBar4Region, 0, 4) == data);
  CHECK(s.stop(SIGTERM) == 0);
  fs::remove_all(fs::path(bin).parent_path());
}

TEST_CASE("serve: --view host upgrades in place too - BAR0's registers and config space kept (R37, R41)") {
  const auto sock = test::temp_path("hostview.sock");
  test::ServeProcess s({"--socket", sock, "--view", "host"});
  REQUIRE(s.wait_socket(sock));
  auto c = connect(sock);
  REQUIRE(vfio::config_write(*c, ConfigOffset{PCI_BASE_ADDRESS_4}, 4, 0xC000000Cu));
  const std::uint32_t reg = 0xabcdef;
  REQUIRE(c->write(vfio::kBar0Region, 0x40, std::span(reinterpret_cast<const std::uint8_t*>(&reg), 4)));
  const auto expect = *vfio::config_read(*c, ConfigOffset{PCI_BASE_ADDRESS_4}, 4);
  upgrade_while_talking(s, *c, 1, "upgraded in place", expect);
  CHECK(read_bytes(*c, vfio::kBar0Region, 0x40, 4) == std::vector<std::uint8_t>{0xef, 0xcd, 0xab, 0});
  CHECK(s.stop(SIGTERM) == 0);
}

namespace {

// The keeper's serving process (its one child).
pid_t serving_process(pid_t keeper) {
  if (keeper <= 0) return -1;
  std::ifstream in("/proc/" + std::to_string(keeper) + "/task/" + std::to_string(keeper) + "/children");
  pid_t child = -1;
  in >> child;
  return child;
}

// Kills the keeper's serving process and waits for its successor to serve
// (`number` successors so far).
void kill_serving(test::ServeProcess& s, unsigned number) {
  const pid_t child = serving_process(s.pid());
  REQUIRE(child > 0);
  REQUIRE(::kill(child, SIGKILL) == 0);
  for (int i = 0; i < 500 && count_of(s.log(), "took the state on from the keeper") < number + 1; ++i)
    std::this_thread::sleep_for(10ms);
  REQUIRE(count_of(s.log(), "took the state on from the keeper") == number + 1);
}

}  // namespace

TEST_CASE("serve --keeper: the serving process SIGKILLed again and again while a client talks - no request fails, "
          "nothing written is lost, the socket never closes (R41)") {
  const auto sock = test::temp_path("keeper.sock");
  test::ServeProcess s({"--keeper", "--socket", sock, "--profile", "gh200", "--mem-size", "0x60000000"});
  REQUIRE(s.wait_socket(sock));
  auto placed = connect_placed(sock);
  auto& c = placed.client;
  std::uint32_t n = 0;
  auto talk = [&](std::chrono::milliseconds how_long) { talk_for(*c, n, how_long, [&] { return s.log(); }); };
  for (unsigned k = 1; k <= 10; ++k) {
    talk(std::chrono::milliseconds(50 + 37 * k));
    kill_serving(s, k);
  }
  talk(200ms);
  for (std::uint32_t i = n - 63; i <= n; ++i) {
    std::uint32_t v = 0;
    REQUIRE(c->read(vfio::kBar4Region, 0x100 + 4 * (i % 64), std::span(reinterpret_cast<std::uint8_t*>(&v), 4)));
    CHECK(v == i);
  }
  CHECK(*vfio::config_read(*c, ConfigOffset{PCI_BASE_ADDRESS_4}, 4) == 0x4000000Cu);
  // The DMA table survived every death: the mapping unmaps exactly once.
  CHECK(c->dma_unmap(Iova{0x100000}, 0x2000));
  CHECK_FALSE(c->dma_unmap(Iova{0x100000}, 0x2000));
  // And an upgrade under the keeper, then one more death.
  upgrade_while_talking(s, *c, 1, "upgraded in place", 0x4000000Cu);
  kill_serving(s, 11);
  talk(100ms);
  // The client leaves: the keeper lets its socket go, and the next client
  // finds the device as the last one left it.
  c.reset();
  for (int i = 0; i < 100 && s.log().find("ready for the next client") == std::string::npos; ++i)
    std::this_thread::sleep_for(20ms);
  auto next = connect(sock);
  CHECK(*vfio::config_read(*next, ConfigOffset{PCI_BASE_ADDRESS_4}, 4) == 0x4000000Cu);
  next.reset();
  CHECK(s.stop(SIGTERM) == 0);
  CHECK_FALSE(fs::exists(sock));
  CHECK(s.log().find("the keeper leaves") != std::string::npos);
}

TEST_CASE("serve --keeper: a serving process that cannot start is retried, then the keeper gives up with exit 1, "
          "saying why (R41)") {
  const auto bin = own_copy_of_nvgrace("keeper-bin");
  const auto sock = test::temp_path("keeper-broken.sock");
  test::ServeProcess s({"--keeper", "--socket", sock, "--profile", "gb200", "--mem-size", "0x40000000"}, bin);
  REQUIRE(s.wait_socket(sock));
  replace_with_script(bin, "exit 3\n");
  const pid_t child = serving_process(s.pid());
  REQUIRE(child > 0);
  REQUIRE(::kill(child, SIGKILL) == 0);
  for (int i = 0; i < 500 && !s.exited(); ++i) std::this_thread::sleep_for(20ms);
  CHECK(s.stop(SIGTERM) == 1);
  CHECK(s.log().find("exit 3 before it was serving, 5 times in a row; giving up") != std::string::npos);
  fs::remove_all(fs::path(bin).parent_path());
}

TEST_CASE("serve --fdstore: SIGKILLed again and again under a stand-in systemd while a client talks - the store "
          "gives everything back, nothing written is lost, the socket never closes (R41)") {
  const auto sock = test::temp_path("fdstore.sock");
  const auto log = test::temp_path("fdstore.log");
  std::ofstream(log, std::ios::trunc).flush();
  test::StandInSystemd sd({NVGRACE_BIN, "serve", "--fdstore", "--socket", sock, "--profile", "gh200", "--mem-size",
                           "0x60000000"},
                          test::temp_path("notify.sock"), log);
  REQUIRE(sd.error().empty());
  REQUIRE(sd.start());
  auto wait_for = [&](auto&& done) {
    for (int i = 0; i < 500 && !done(); ++i) std::this_thread::sleep_for(20ms);
    return done();
  };
  auto started = [&](std::size_t k) {
    return count_of(test::slurp(log), "took the state on from systemd's file-descriptor store") >= k;
  };
  REQUIRE(wait_for([&] { return sd.count("READY=1") == 1; }));
  {
    const auto names = sd.names();
    INFO(test::slurp(log));
    CHECK(std::count(names.begin(), names.end(), "nvgrace-state") == 1);
    CHECK(names.size() >= 4);  // the state, the listener, the GPU memory, BAR0's registers
    for (const auto& n : names) CHECK(n.starts_with("nvgrace-"));
  }
  auto placed = connect_placed(sock);
  auto& c = placed.client;
  {
    const auto names = sd.names();
    CHECK(std::count(names.begin(), names.end(), "nvgrace-900") == 1);  // the connection, before it is served
  }
  std::uint32_t n = 0;
  auto talk = [&](std::chrono::milliseconds how_long) { talk_for(*c, n, how_long, [&] { return test::slurp(log); }); };
  for (unsigned k = 1; k <= 6; ++k) {
    talk(std::chrono::milliseconds(50 + 37 * k));
    REQUIRE(sd.kill_and_restart());
    INFO(test::slurp(log));
    REQUIRE(wait_for([&] { return started(k); }));
  }
  talk(200ms);
  for (std::uint32_t i = n - 63; i <= n; ++i) {
    std::uint32_t v = 0;
    REQUIRE(c->read(vfio::kBar4Region, 0x100 + 4 * (i % 64), std::span(reinterpret_cast<std::uint8_t*>(&v), 4)));
    CHECK(v == i);
  }
  std::uint32_t bar0 = 0;
  REQUIRE(c->read(vfio::kBar0Region, 0x100, std::span(reinterpret_cast<std::uint8_t*>(&bar0), 4)));
  CHECK(bar0 == n);
  CHECK(*vfio::config_read(*c, ConfigOffset{PCI_BASE_ADDRESS_4}, 4) == 0x4000000Cu);
  CHECK(c->dma_unmap(Iova{0x100000}, 0x2000));
  CHECK_FALSE(c->dma_unmap(Iova{0x100000}, 0x2000));
  // An upgrade in place keeps the store (same process), then one more death.
  REQUIRE(sd.pid() > 0);
  REQUIRE(::kill(sd.pid(), SIGUSR2) == 0);
  REQUIRE(wait_for([&] { return count_of(test::slurp(log), "upgraded in place") == 1; }));
  talk(100ms);
  REQUIRE(sd.kill_and_restart());
  REQUIRE(wait_for([&] { return started(7); }));
  talk(100ms);
  // The client leaves: its socket leaves the store; the next client finds
  // the device as the last one left it.
  c.reset();
  REQUIRE(wait_for([&] { return count_of(test::slurp(log), "ready for the next client") == 1; }));
  {
    const auto names = sd.names();
    CHECK(std::count(names.begin(), names.end(), "nvgrace-900") == 0);
  }
  auto next = connect(sock);
  CHECK(*vfio::config_read(*next, ConfigOffset{PCI_BASE_ADDRESS_4}, 4) == 0x4000000Cu);
  next.reset();
  CHECK(sd.bad().empty());
  CHECK(sd.stop() == 0);
  CHECK_FALSE(fs::exists(sock));
}

TEST_CASE("serve --fdstore: without systemd's notify socket, or with --keeper, refused in one line") {
  const auto sock = test::temp_path("fdstore-refused.sock");
  ::unsetenv("NOTIFY_SOCKET");
  test::ServeProcess s({"--fdstore", "--socket", sock, "--profile", "gh200"});
  for (int i = 0; i < 250 && !s.exited(); ++i) std::this_thread::sleep_for(20ms);
  CHECK(s.stop(SIGTERM) == 1);
  CHECK(s.log().find("--fdstore needs systemd's notify socket") != std::string::npos);
  test::ServeProcess k({"--fdstore", "--keeper", "--socket", sock, "--profile", "gh200"});
  for (int i = 0; i < 250 && !k.exited(); ++i) std::this_thread::sleep_for(20ms);
  CHECK(k.stop(SIGTERM) == 2);
  CHECK(k.log().find("--keeper excludes --fdstore") != std::string::npos);
  CHECK_FALSE(fs::exists(sock));
}
