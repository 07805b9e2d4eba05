// `nvgrace serve` as a server's users meet it: a live socket is never taken
// over, a stale one is, a server removes only the socket it created, socket
// permissions, a second client refused at once, SIGHUP like SIGTERM, and
// protocol violations logged at the default level.
#include <catch2/catch.hpp>

#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <poll.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include "nvgrace/vfio/user/protocol.hpp"
#include "run_nvgrace.hpp"
#include "serve_process.hpp"
#include "vfio_user_client.hpp"

namespace fs = std::filesystem;
using namespace std::chrono_literals;

namespace {

using test::temp_path;
using test::slurp;
using Server = test::ServeProcess;

// A VERSION message the server accepts.
std::vector<std::uint8_t> version_message() {
  const std::string caps = "{}";
  std::vector<std::uint8_t> m(16 + 4 + caps.size() + 1, 0);
  nvgrace::vfio::user::Header h{1, nvgrace::vfio::user::kVersion, static_cast<std::uint32_t>(m.size()), 0, 0};
  std::memcpy(m.data(), &h, sizeof h);
  std::memcpy(m.data() + 20, caps.data(), caps.size());
  return m;
}

// A DEVICE_GET_INFO message (argsz 16).
std::vector<std::uint8_t> device_info_message() {
  std::vector<std::uint8_t> m(32, 0);
  nvgrace::vfio::user::Header h{2, nvgrace::vfio::user::kDeviceGetInfo, 32, 0, 0};
  std::memcpy(m.data(), &h, sizeof h);
  m[16] = 16;
  return m;
}

// Waits up to `limit` for `fd` to be readable; reads one byte. 0: EOF.
ssize_t read_within(int fd, std::chrono::milliseconds limit) {
  pollfd p{fd, POLLIN, 0};
  if (::poll(&p, 1, static_cast<int>(limit.count())) != 1) return -2;
  std::uint8_t b;
  return ::recv(fd, &b, 1, 0);
}

}  // namespace

TEST_CASE("serve: a live socket is never taken over, and SIGTERM removes only the server's own socket") {
  const auto sock = temp_path("live.sock");
  Server first({"--socket", sock});
  REQUIRE(first.wait_socket(sock));
  auto second = run_nvgrace({"serve", "--socket", sock});
  CHECK(second.exit_code == 2);
  CHECK(std::count(second.err.begin(), second.err.end(), '\n') == 1);
  CHECK(second.err.find("is in use") != std::string::npos);
  // The first server still owns and answers on its socket.
  auto c = test::vfio_user_connect(sock);
  REQUIRE(c);
  CHECK(test::vfio_user_call(c.get(), version_message()).size() > 16);
  c.reset();
  CHECK(first.stop(SIGTERM) == 0);
  CHECK_FALSE(fs::exists(sock));
}

TEST_CASE("serve: a stale socket (nobody listening) is replaced") {
  const auto sock = temp_path("stale.sock");
  {
    nvgrace::sys::UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM, 0));
    sockaddr_un a{};
    a.sun_family = AF_UNIX;
    std::memcpy(a.sun_path, sock.c_str(), sock.size());
    REQUIRE(::bind(fd.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
  }  // closed, file left behind: what a killed server leaves
  Server s({"--socket", sock});
  REQUIRE(s.wait_socket(sock));
  auto c = test::vfio_user_connect(sock);
  CHECK(c);
  c.reset();
  CHECK(s.stop(SIGTERM) == 0);
}

TEST_CASE("serve: a socket path replaced under the server is not removed by it") {
  const auto sock = temp_path("moved.sock");
  Server s({"--socket", sock});
  REQUIRE(s.wait_socket(sock));
  ::unlink(sock.c_str());
  Server other({"--socket", sock});  // another server binds the same path
  REQUIRE(other.wait_socket(sock));
  CHECK(s.stop(SIGTERM) == 0);
  CHECK(fs::exists(sock));  // still the other server's
  CHECK(test::vfio_user_connect(sock));
  CHECK(other.stop(SIGTERM) == 0);
  CHECK_FALSE(fs::exists(sock));
}

TEST_CASE("serve: sockets are 0600 by default, and --socket-mode and --socket-group set them") {
  const auto sock = temp_path("mode.sock");
  {
    Server s({"--socket", sock});
    REQUIRE(s.wait_socket(sock));
    struct stat st {};
    REQUIRE(::stat(sock.c_str(), &st) == 0);
    CHECK((st.st_mode & 07777) == 0600);
    CHECK(s.stop(SIGTERM) == 0);
  }
  {
    const auto gid = std::to_string(::getgid());
    Server s({"--socket", sock, "--socket-mode", "0660", "--socket-group", gid});
    REQUIRE(s.wait_socket(sock));
    struct stat st {};
    REQUIRE(::stat(sock.c_str(), &st) == 0);
    CHECK((st.st_mode & 07777) == 0660);
    CHECK(st.st_gid == ::getgid());
    CHECK(s.stop(SIGTERM) == 0);
  }
}

TEST_CASE("serve: a second client is refused at once and logged, and SIGHUP shuts down cleanly") {
  const auto sock = temp_path("busy.sock");
  Server s({"--socket", sock});
  REQUIRE(s.wait_socket(sock));
  auto first = test::vfio_user_connect(sock);
  REQUIRE(first);
  REQUIRE(test::vfio_user_call(first.get(), version_message()).size() > 16);
  auto second = test::vfio_user_connect(sock);
  REQUIRE(second);
  CHECK(read_within(second.get(), 2000ms) == 0);  // closed by the server, not left waiting
  // The first client is still served.
  CHECK(test::vfio_user_call(first.get(), device_info_message()).size() == 32);
  first.reset();
  CHECK(s.stop(SIGHUP) == 0);
  CHECK_FALSE(fs::exists(sock));
  const auto log = s.log();
  CHECK(log.find("refused a second client") != std::string::npos);
  CHECK(log.find("signal 1: shutting down") != std::string::npos);
}

TEST_CASE("serve: a protocol violation closes the connection with a log line at the default level") {
  const auto sock = temp_path("violation.sock");
  Server s({"--socket", sock});
  REQUIRE(s.wait_socket(sock));
  auto c = test::vfio_user_connect(sock);
  REQUIRE(c);
  nvgrace::vfio::user::Header h{1, nvgrace::vfio::user::kRegionRead, nvgrace::vfio::user::kMaxMessageSize + 1, 0, 0};
  REQUIRE(::send(c.get(), &h, sizeof h, 0) == sizeof h);
  CHECK(read_within(c.get(), 2000ms) == 0);
  CHECK(s.stop(SIGTERM) == 0);
  CHECK(s.log().find("protocol violation") != std::string::npos);
}
