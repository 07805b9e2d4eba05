// Side-by-side benchmark of two vfio-user servers with one client: the same
// messages, in alternating rounds, and the ratio A/B per message. scripts/bench
// runs it against `nvgrace serve` (A) and libvfio-user's sample server (B).
//
//   vfio_user_peer_bench --a NAME=SOCKET:REGION --b NAME=SOCKET:REGION
//                        [--rounds 5] [--ms 300] [--label TEXT]
//
// REGION is the memory-backed BAR each server's 4 KiB and 64 KiB accesses go
// to (nvgrace: 4, usemem; the libvfio-user sample: 1, BAR1). Config reads go
// to region 7 on both. Each figure is the median of the rounds; the order of
// A and B alternates from round to round so neither always runs first.
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <string.h>
#include <functional>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "nvgrace/vfio/user/protocol.hpp"
#include "vfio_user_client.hpp"

namespace user = nvgrace::vfio::user;
using Clock = std::chrono::steady_clock;

namespace {

struct Server {
  std::string name;
  std::string path;
  std::uint32_t region = 0;
  nvgrace::sys::UniqueFd fd;
  std::string broken;  // why this server can no longer be measured (its stream is out of step)
};

// A server answered a benchmark message with an error: the measurement of
// that message, and of everything after it on that connection, is void.
struct Refused {
  std::string why;
};

[[noreturn]] void die(const std::string& why) {
  std::fprintf(stderr, "vfio_user_peer_bench: %s\n", why.c_str());
  std::exit(1);
}

Server parse_server(const std::string& spec) {
  const auto eq = spec.find('=');
  const auto colon = spec.rfind(':');
  if (eq == std::string::npos || colon == std::string::npos || colon < eq) die("bad server spec " + spec);
  return {spec.substr(0, eq), spec.substr(eq + 1, colon - eq - 1),
          static_cast<std::uint32_t>(std::stoul(spec.substr(colon + 1))), {}, {}};
}

std::vector<std::uint8_t> message(std::uint16_t cmd, const void* payload, std::size_t n) {
  std::vector<std::uint8_t> m(16 + n);
  const user::Header h{1, cmd, static_cast<std::uint32_t>(16 + n), 0, 0};
  std::memcpy(m.data(), &h, 16);
  if (n) std::memcpy(m.data() + 16, payload, n);
  return m;
}

struct Rw {
  std::uint64_t offset;
  std::uint32_t region, count;
};

// One benchmarked message: its bytes, and how much data one round trip moves.
struct Probe {
  std::string label;
  std::size_t data_bytes = 0;  // 0: report messages/s, else MiB/s
  std::function<std::vector<std::uint8_t>(const Server&)> build;
};

// One round trip with a reused reply buffer, so the client's own cost is the
// same small constant for both servers: send, header (with any fd), body.
void round_trip(const Server& s, const std::vector<std::uint8_t>& m, std::vector<std::uint8_t>& buf) {
  if (::send(s.fd.get(), m.data(), m.size(), MSG_NOSIGNAL) != static_cast<ssize_t>(m.size()))
    die(s.name + ": send failed");
  user::Header h{};
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * 8)];
  iovec iov{&h, sizeof h};
  msghdr mh{};
  mh.msg_iov = &iov;
  mh.msg_iovlen = 1;
  mh.msg_control = control;
  mh.msg_controllen = sizeof control;
  if (::recvmsg(s.fd.get(), &mh, MSG_WAITALL) != sizeof h) die(s.name + ": the server closed the connection");
  for (cmsghdr* c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c)) {
    int fd = -1;
    std::memcpy(&fd, CMSG_DATA(c), sizeof fd);
    ::close(fd);
  }
  if (h.flags & user::kError) throw Refused{fmt::format("error reply {} ({}) to command {}", h.error, strerrorname_np(static_cast<int>(h.error)), h.command)};
  const std::size_t rest = h.msg_size - sizeof h;
  if (buf.size() < rest) buf.resize(rest);
  if (rest && ::recv(s.fd.get(), buf.data(), rest, MSG_WAITALL) != static_cast<ssize_t>(rest))
    die(s.name + ": short reply");
}

// Round trips per second of `m` on `s` for `ms` milliseconds.
double measure(Server& s, const std::vector<std::uint8_t>& m, int ms) {
  std::vector<std::uint8_t> buf(1 << 17);
  const auto end = Clock::now() + std::chrono::milliseconds(ms);
  const auto start = Clock::now();
  std::uint64_t n = 0;
  Clock::time_point now;
  do {
    for (int i = 0; i < 64; ++i) round_trip(s, m, buf);
    n += 64;
    now = Clock::now();
  } while (now < end);
  return static_cast<double>(n) / std::chrono::duration<double>(now - start).count();
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.size() % 2 ? v[v.size() / 2] : (v[v.size() / 2 - 1] + v[v.size() / 2]) / 2;
}

}  // namespace

int main(int argc, char** argv) {
  Server a, b;
  int rounds = 5, ms = 300;
  std::string label = "one client, one server";
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string k = argv[i], v = argv[i + 1];
    if (k == "--a") a = parse_server(v);
    else if (k == "--b") b = parse_server(v);
    else if (k == "--rounds") rounds = std::stoi(v);
    else if (k == "--ms") ms = std::stoi(v);
    else if (k == "--label") label = v;
    else die("unknown option " + k);
  }
  if (a.path.empty() || b.path.empty()) die("usage: --a NAME=SOCKET:REGION --b NAME=SOCKET:REGION");
  const std::string caps = R"({"capabilities":{"max_msg_fds":8,"max_data_xfer_size":1048576}})";
  for (Server* s : {&a, &b}) {
    s->fd = test::vfio_user_connect(s->path);
    if (!s->fd) die(s->name + ": cannot connect to " + s->path);
    std::vector<std::uint8_t> v(4 + caps.size() + 1, 0);
    std::memcpy(v.data() + 4, caps.data(), caps.size());
    if (test::vfio_user_call(s->fd.get(), message(user::kVersion, v.data(), v.size())).size() <= 16)
      die(s->name + ": VERSION failed");
  }

  const auto read = [](std::uint32_t count) {
    return [count](const Server& s) {
      const Rw r{0, count == 4 ? 7u : s.region, count};
      return message(user::kRegionRead, &r, sizeof r);
    };
  };
  const auto write = [](std::uint32_t count) {
    return [count](const Server& s) {
      std::vector<std::uint8_t> p(sizeof(Rw) + count, 0x5A);
      const Rw r{0, s.region, count};
      std::memcpy(p.data(), &r, sizeof r);
      return message(user::kRegionWrite, p.data(), p.size());
    };
  };
  const std::vector<Probe> probes{
      {"config REGION_READ, 4 B", 0, read(4)},
      {"GET_REGION_INFO (BAR with fd)", 0,
       [](const Server& s) {
         const std::uint32_t q[8] = {32 + 256, 0, s.region, 0, 0, 0, 0, 0};  // struct vfio_region_info; room for caps
         return message(user::kDeviceGetRegionInfo, q, sizeof q);
       }},
      {"REGION_READ 4 KiB", 4096, read(4096)},
      {"REGION_READ 64 KiB", 65536, read(65536)},
      {"REGION_WRITE 4 KiB", 4096, write(4096)},
      {"REGION_WRITE 64 KiB", 65536, write(65536)},
  };

  fmt::print("vfio-user side by side: {} ({} rounds of {} ms per message and server, medians)\n", label, rounds, ms);
  fmt::print("| message | {} | {} | ratio {}/{} |\n|---|---|---|---|\n", a.name, b.name, a.name, b.name);
  double worst = 1e9;
  for (const auto& p : probes) {
    const auto ma = p.build(a), mb = p.build(b);
    std::vector<double> ra, rb;
    auto run = [&](Server& s, const std::vector<std::uint8_t>& m, std::vector<double>& out) {
      if (!s.broken.empty()) return;
      try {
        out.push_back(measure(s, m, ms));
      } catch (const Refused& r) {
        s.broken = r.why;
        std::fprintf(stderr, "%s: %s: %s; its connection is out of step, nothing more is measured on it\n",
                     s.name.c_str(), p.label.c_str(), r.why.c_str());
      }
    };
    for (int r = 0; r < rounds; ++r) {
      if (r % 2 == 0) {
        run(a, ma, ra);
        run(b, mb, rb);
      } else {
        run(b, mb, rb);
        run(a, ma, ra);
      }
    }
    auto fmt_rate = [&](const std::vector<double>& v, const Server& s) {
      if (v.size() != static_cast<std::size_t>(rounds)) return fmt::format("failed ({})", s.broken);
      const double per_s = median(v);
      return p.data_bytes ? fmt::format("{:.0f} MiB/s", per_s * static_cast<double>(p.data_bytes) / (1 << 20))
                          : fmt::format("{:.0f}/s", per_s);
    };
    const bool both = ra.size() == static_cast<std::size_t>(rounds) && rb.size() == static_cast<std::size_t>(rounds);
    fmt::print("| {} | {} | {} | {} |\n", p.label, fmt_rate(ra, a), fmt_rate(rb, b),
               both ? fmt::format("{:.2f}", median(ra) / median(rb)) : "-");
    if (both) worst = std::min(worst, median(ra) / median(rb));
  }
  fmt::print("lowest ratio {}/{}: {:.2f}\n", a.name, b.name, worst);
  return 0;
}
