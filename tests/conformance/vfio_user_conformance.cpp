// A black-box conformance suite for vfio-user servers (QEMU
// docs/interop/vfio-user.rst), run against any server socket: nvgrace serve
// in CI, libvfio-user's sample server by hand (docs/vfio-user.md). Each case
// sends what a careless or hostile client might, and checks the answer the
// specification gives; every case then checks that the server still answers
// in step (a DEVICE_GET_INFO on the same connection, or on a new one where
// the case lets the server close it), and - given the server's pid - that
// it holds no more descriptors than before (fds sent to it closed).
//
//   vfio_user_conformance --socket PATH [--server-pid PID] [--case SUBSTRING]
//                         [--single-client] [--list]
// --single-client: the server serves one client and exits (libvfio-user's
// sample server); something restarts it between cases
// (tests/scripts/libvfio-user-conformance.sh), so no case checks a new
// connection afterwards - that script reports a server that died by a
// signal instead.
// Prints one line per case, PASS or FAIL with the reason, then the count;
// exit 0 when every case passed, 1 otherwise, 2 on a bad command line.
//
// Where the specification names no errno, any error reply passes; where it
// does (EEXIST for an overlapping DMA_MAP), that errno.
#include <dirent.h>
#include <fcntl.h>
#include <linux/vfio.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <functional>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <fmt/format.h>

#include "nvgrace/sys/fd.hpp"
#include "nvgrace/sys/memfd.hpp"
#include "nvgrace/sys/scm.hpp"
#include "nvgrace/vfio/user/protocol.hpp"

namespace {

using namespace nvgrace;
using namespace nvgrace::vfio::user;
using namespace std::chrono_literals;

constexpr auto kReplyWait = 3000ms;  // a server that has not answered by then hangs, for this suite

template <class T>
void put(std::vector<std::uint8_t>& v, const T& x) {
  const std::size_t at = v.size();
  v.resize(at + sizeof x);
  std::memcpy(v.data() + at, &x, sizeof x);
}

std::vector<std::uint8_t> message(std::uint16_t id, std::uint16_t command, std::span<const std::uint8_t> payload,
                                  std::uint32_t flags = kTypeCommand) {
  std::vector<std::uint8_t> m;
  put(m, Header{id, command, static_cast<std::uint32_t>(sizeof(Header) + payload.size()), flags, 0});
  const std::size_t at = m.size();
  m.resize(at + payload.size());
  if (!payload.empty()) std::memcpy(m.data() + at, payload.data(), payload.size());
  return m;
}

// What came back for a request.
struct Answer {
  enum Kind { reply, closed, silent } kind = silent;
  Header header{};
  std::vector<std::uint8_t> payload;
  std::vector<sys::UniqueFd> fds;
  [[nodiscard]] bool ok() const { return kind == reply && !(header.flags & kError); }
  [[nodiscard]] bool error() const { return kind == reply && (header.flags & kError); }
  [[nodiscard]] std::string describe() const {
    if (kind == closed) return "the server closed the connection";
    if (kind == silent) return "no answer within 3 s";
    if (header.flags & kError) return fmt::format("error reply {} ({})", header.error, std::strerror(static_cast<int>(header.error)));
    return fmt::format("a success reply of {} bytes", payload.size());
  }
};

class Conn {
 public:
  explicit Conn(sys::UniqueFd fd) : fd_(std::move(fd)) {}
  [[nodiscard]] int fd() const { return fd_.get(); }
  std::uint16_t next_id() { return ++id_; }

  bool send(std::span<const std::uint8_t> bytes, std::span<const int> fds = {}) {
    return sys::send_with_fds(fd_.get(), bytes, fds).has_value();
  }

  Answer receive(std::chrono::milliseconds wait = kReplyWait) {
    Answer a;
    std::vector<std::uint8_t> head(sizeof(Header));
    if (!read_exact(head, a, wait)) return a;
    std::memcpy(&a.header, head.data(), sizeof a.header);
    if (a.header.msg_size < sizeof(Header) || a.header.msg_size > (64u << 20)) {
      a.kind = Answer::closed;  // a reply nobody can frame: the stream is lost
      return a;
    }
    a.payload.resize(a.header.msg_size - sizeof(Header));
    if (!read_exact(a.payload, a, wait)) return a;
    a.kind = Answer::reply;
    return a;
  }

  Answer call(std::uint16_t command, std::span<const std::uint8_t> payload, std::span<const int> fds = {},
              std::uint32_t flags = kTypeCommand) {
    const auto m = message(next_id(), command, payload, flags);
    if (!send(m, fds)) {
      Answer a;
      a.kind = Answer::closed;
      return a;
    }
    return receive();
  }

  // VERSION with capabilities JSON (nullptr: none).
  Answer version(const char* json, std::uint16_t major = kMajor) {
    std::vector<std::uint8_t> p;
    put(p, major);
    put(p, std::uint16_t{0});
    if (json) p.insert(p.end(), json, json + std::strlen(json) + 1);
    return call(kVersion, p);
  }

 private:
  bool read_exact(std::span<std::uint8_t> into, Answer& a, std::chrono::milliseconds wait) {
    std::size_t have = 0;
    const auto deadline = std::chrono::steady_clock::now() + wait;
    std::array<sys::UniqueFd, sys::kMaxScmFds> got;
    while (have < into.size()) {
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
      pollfd p{fd_.get(), POLLIN, 0};
      if (left.count() <= 0 || ::poll(&p, 1, static_cast<int>(left.count())) <= 0) {
        a.kind = Answer::silent;
        return false;
      }
      auto r = sys::recv_with_fds(fd_.get(), into.subspan(have), got);
      if (!r || r->bytes == 0) {
        a.kind = Answer::closed;
        return false;
      }
      for (std::size_t i = 0; i < r->fds; ++i) a.fds.push_back(std::move(got[i]));
      have += r->bytes;
    }
    return true;
  }

  sys::UniqueFd fd_;
  std::uint16_t id_ = 0;
};

struct Server {
  std::string socket;
  std::optional<pid_t> pid;
};

std::optional<Conn> connect(const Server& s) {
  // One client at a time: a server may still be tearing the last one down.
  for (int i = 0; i < 100; ++i) {
    auto fd = sys::connect_unix(s.socket);
    if (fd) return Conn(std::move(*fd));
    std::this_thread::sleep_for(20ms);
  }
  return std::nullopt;
}

// The number of descriptors the server holds, where its pid is known.
std::optional<int> fd_count(const Server& s) {
  if (!s.pid) return std::nullopt;
  DIR* d = ::opendir(fmt::format("/proc/{}/fd", *s.pid).c_str());
  if (!d) return std::nullopt;
  int n = 0;
  while (auto* e = ::readdir(d))
    if (e->d_name[0] != '.') ++n;
  ::closedir(d);
  return n;
}

// The facts a case builds on, learned once from the server.
struct Facts {
  std::uint32_t num_regions = 0, num_irqs = 0;
  std::uint32_t max_data_xfer = 1u << 20;
  std::uint64_t pgsizes = 4096;
  std::uint32_t max_dma_maps = 65535;
  std::vector<std::uint64_t> region_size;
  std::vector<std::uint32_t> region_argsz;  // the full GET_REGION_INFO answer's argsz
  std::vector<std::uint32_t> irq_count;
};

using Verdict = std::optional<std::string>;  // nullopt: passed; else why not
struct Case {
  const char* name;
  bool may_close;  // the server may end the connection (the stream is not recoverable)
  std::function<Verdict(Conn&, const Facts&)> run;
  bool negotiate = true;  // VERSION first
};

Verdict expect_error(const Answer& a, const char* what) {
  if (a.error()) return std::nullopt;
  return fmt::format("{}: wanted an error reply, got {}", what, a.describe());
}
Verdict expect_ok(const Answer& a, const char* what) {
  if (a.ok()) return std::nullopt;
  return fmt::format("{}: wanted success, got {}", what, a.describe());
}
// An error reply, or the connection ended (never silence, never success).
Verdict expect_refused(const Answer& a, const char* what) {
  if (a.error() || a.kind == Answer::closed) return std::nullopt;
  return fmt::format("{}: wanted an error or the connection closed, got {}", what, a.describe());
}

std::vector<std::uint8_t> region_access(std::uint64_t offset, std::uint32_t region, std::uint32_t count) {
  std::vector<std::uint8_t> p;
  put(p, RegionAccess{offset, region, count});
  return p;
}

std::vector<std::uint8_t> region_info(std::uint32_t index, std::uint32_t argsz) {
  vfio_region_info q{};
  q.argsz = argsz;
  q.index = index;
  std::vector<std::uint8_t> p;
  put(p, q);
  return p;
}

std::vector<std::uint8_t> dma_map(std::uint64_t iova, std::uint64_t size, std::uint64_t offset = 0) {
  std::vector<std::uint8_t> p;
  put(p, DmaMapRequest{sizeof(DmaMapRequest), VFIO_DMA_MAP_FLAG_READ | VFIO_DMA_MAP_FLAG_WRITE, offset, iova, size});
  return p;
}

std::vector<std::uint8_t> dma_unmap(std::uint64_t iova, std::uint64_t size, std::uint32_t flags = 0) {
  std::vector<std::uint8_t> p;
  put(p, DmaUnmapRequest{sizeof(DmaUnmapRequest), flags, iova, size});
  return p;
}

std::vector<std::uint8_t> set_irqs(std::uint32_t flags, std::uint32_t index, std::uint32_t start, std::uint32_t count) {
  std::vector<std::uint8_t> p;
  put(p, SetIrqsRequest{sizeof(SetIrqsRequest), flags, index, start, count});
  return p;
}

std::vector<std::uint8_t> device_info() {
  std::vector<std::uint8_t> p;
  put(p, std::uint32_t{16});
  p.resize(16, 0);
  return p;
}

// Memory a DMA_MAP can bring: a memfd of `size` bytes.
sys::UniqueFd memory(std::uint64_t size) {
  auto m = sys::make_memfd("conformance", size);
  return m ? std::move(*m) : sys::UniqueFd();
}

std::vector<Case> cases() {
  std::vector<Case> c;
  // --- version negotiation --------------------------------------------
  c.push_back({"version: a major the server does not speak is refused", true,
               [](Conn& k, const Facts&) { return expect_refused(k.version("{}", 999), "major 999"); }, false});
  c.push_back({"version: capabilities JSON without its NUL is refused", true,
               [](Conn& k, const Facts&) {
                 std::vector<std::uint8_t> p;
                 put(p, kMajor);
                 put(p, std::uint16_t{0});
                 const std::string j = "{}";
                 p.insert(p.end(), j.begin(), j.end());  // no NUL
                 return expect_refused(k.call(kVersion, p), "JSON without NUL");
               },
               false});
  c.push_back({"version: capabilities that are not a JSON object are refused", true,
               [](Conn& k, const Facts&) { return expect_refused(k.version("5"), "JSON 5"); }, false});
  c.push_back({"version: unparsable JSON is refused", true,
               [](Conn& k, const Facts&) { return expect_refused(k.version("{"), "JSON {"); }, false});
  c.push_back({"version: \"capabilities\" of the wrong type is refused", true,
               [](Conn& k, const Facts&) { return expect_refused(k.version(R"({"capabilities":"23"})"), "capabilities \"23\""); },
               false});
  c.push_back({"version: max_msg_fds of the wrong type is refused", true,
               [](Conn& k, const Facts&) {
                 return expect_refused(k.version(R"({"capabilities":{"max_msg_fds":"foo"}})"), "max_msg_fds \"foo\"");
               },
               false});
  c.push_back({"version: a negative max_data_xfer_size is refused", true,
               [](Conn& k, const Facts&) {
                 return expect_refused(k.version(R"({"capabilities":{"max_data_xfer_size":-1}})"), "max_data_xfer_size -1");
               },
               false});
  c.push_back({"version: no capabilities at all is accepted, with the server's own", false,
               [](Conn& k, const Facts&) -> Verdict {
                 auto a = k.version(nullptr);
                 if (auto v = expect_ok(a, "VERSION without JSON")) return v;
                 if (a.payload.size() < 4) return "the reply has no version";
                 return std::nullopt;
               },
               false});
  c.push_back({"version: a huge max_msg_fds and max_data_xfer_size are taken in stride", true,
               [](Conn& k, const Facts&) -> Verdict {
                 auto a = k.version(R"({"capabilities":{"max_msg_fds":4294967295,"max_data_xfer_size":4294967295}})");
                 if (a.kind == Answer::silent) return "no answer";
                 return std::nullopt;  // accepted or refused, then in step (checked after)
               },
               false});
  c.push_back({"version: a command before VERSION is refused", true,
               [](Conn& k, const Facts&) { return expect_refused(k.call(kDeviceGetInfo, device_info()), "GET_INFO first"); },
               false});
  c.push_back({"version: a second VERSION is refused", false,
               [](Conn& k, const Facts&) { return expect_error(k.version("{}"), "VERSION again"); }});

  // --- malformed requests ---------------------------------------------
  c.push_back({"framing: a short header, then the client leaves", true,
               [](Conn& k, const Facts&) -> Verdict {
                 const std::uint8_t half[8] = {1, 0, kDeviceGetInfo, 0, 32, 0, 0, 0};
                 if (!k.send(half)) return "send failed";
                 ::shutdown(k.fd(), SHUT_WR);
                 auto a = k.receive();
                 if (a.kind == Answer::silent) return "the server neither answered nor closed";
                 return std::nullopt;
               }});
  c.push_back({"framing: msg_size smaller than the header", true,
               [](Conn& k, const Facts&) {
                 std::vector<std::uint8_t> m;
                 put(m, Header{k.next_id(), kDeviceGetInfo, 8, kTypeCommand, 0});
                 k.send(m);
                 return expect_refused(k.receive(), "msg_size 8");
               }});
  c.push_back({"framing: msg_size larger than what is sent, then the client leaves", true,
               [](Conn& k, const Facts&) -> Verdict {
                 std::vector<std::uint8_t> m;
                 put(m, Header{k.next_id(), kDeviceGetInfo, 64, kTypeCommand, 0});
                 m.resize(32, 0);
                 k.send(m);
                 ::shutdown(k.fd(), SHUT_WR);
                 if (k.receive().kind == Answer::silent) return "the server neither answered nor closed";
                 return std::nullopt;
               }});
  c.push_back({"framing: msg_size of 2 GiB is refused without reading it", true,
               [](Conn& k, const Facts&) {
                 std::vector<std::uint8_t> m;
                 put(m, Header{k.next_id(), kRegionWrite, 0x80000000u, kTypeCommand, 0});
                 k.send(m);
                 return expect_refused(k.receive(), "msg_size 2 GiB");
               }});
  c.push_back({"framing: an unknown command is refused", false,
               [](Conn& k, const Facts&) { return expect_error(k.call(999, device_info()), "command 999"); }});
  c.push_back({"framing: a request flagged as a reply is refused", true,
               [](Conn& k, const Facts&) {
                 return expect_refused(k.call(kDeviceGetInfo, device_info(), {}, kTypeReply), "reply flag");
               }});
  c.push_back({"framing: fds on a message that takes none are closed by the server", true,
               [](Conn& k, const Facts&) -> Verdict {
                 int p[2];
                 if (::pipe2(p, O_CLOEXEC) != 0) return "pipe";
                 sys::UniqueFd rd(p[0]), wr(p[1]);
                 const int send_fds[2] = {wr.get(), wr.get()};
                 auto a = k.call(kDeviceGetInfo, device_info(), send_fds);
                 if (a.kind == Answer::silent) return "no answer";
                 wr.reset();  // ours; the server's copies must be gone too
                 pollfd pf{rd.get(), POLLIN, 0};
                 for (int i = 0; i < 100; ++i) {
                   if (::poll(&pf, 1, 20) == 1) return std::nullopt;  // EOF: every write end is closed
                 }
                 return "the server kept the fds it was sent (the pipe never saw EOF)";
               }});

  // --- region accesses ------------------------------------------------
  c.push_back({"regions: every region answers a 4-byte read at 0 (an empty one with an error)", false,
               [](Conn& k, const Facts& f) -> Verdict {
                 // Which widths a device's registers take is the device's
                 // business: data or an error reply, in step, both pass.
                 for (std::uint32_t r = 0; r < f.num_regions && r < f.region_size.size(); ++r) {
                   auto a = k.call(kRegionRead, region_access(0, r, 4));
                   if (a.kind != Answer::reply) return fmt::format("region {}: {}", r, a.describe());
                   if (f.region_size[r] == 0 && !a.error()) return fmt::format("empty region {}: {}", r, a.describe());
                 }
                 return std::nullopt;
               }});
  c.push_back({"regions: a zero-count read answers in step", false,
               [](Conn& k, const Facts&) -> Verdict {
                 auto a = k.call(kRegionRead, region_access(0, VFIO_PCI_CONFIG_REGION_INDEX, 0));
                 if (a.kind != Answer::reply) return a.describe();
                 return std::nullopt;
               }});
  c.push_back({"regions: a count above max_data_xfer_size is refused", false,
               [](Conn& k, const Facts& f) {
                 return expect_error(k.call(kRegionRead, region_access(0, VFIO_PCI_CONFIG_REGION_INDEX, f.max_data_xfer + 1)),
                                     "count max+1");
               }});
  c.push_back({"regions: an access crossing the region's end never returns more than the region", false,
               [](Conn& k, const Facts&) -> Verdict {
                 auto a = k.call(kRegionRead, region_access(4094, VFIO_PCI_CONFIG_REGION_INDEX, 8));
                 if (a.error()) return std::nullopt;
                 if (!a.ok() || a.payload.size() < sizeof(RegionAccess)) return a.describe();
                 RegionAccess r{};
                 std::memcpy(&r, a.payload.data(), sizeof r);
                 if (r.count > 2 && r.count != 8) return fmt::format("count {} past a 4 KiB config space", r.count);
                 return std::nullopt;
               }});
  c.push_back({"regions: an access wholly past the region's end is refused", false,
               [](Conn& k, const Facts&) {
                 return expect_error(k.call(kRegionRead, region_access(1ull << 40, VFIO_PCI_CONFIG_REGION_INDEX, 4)),
                                     "offset 1 TiB");
               }});
  c.push_back({"regions: an offset that wraps is refused", false,
               [](Conn& k, const Facts&) {
                 return expect_error(k.call(kRegionRead, region_access(~0ull - 1, VFIO_PCI_CONFIG_REGION_INDEX, 4)),
                                     "offset 2^64-2");
               }});
  c.push_back({"regions: a bad region index is refused", false,
               [](Conn& k, const Facts&) { return expect_error(k.call(kRegionRead, region_access(0, 99, 4)), "region 99"); }});
  c.push_back({"regions: a write whose payload is not its count is refused", false,
               [](Conn& k, const Facts&) {
                 auto p = region_access(0x40, VFIO_PCI_CONFIG_REGION_INDEX, 4);
                 p.push_back(0);  // one byte for four
                 return expect_error(k.call(kRegionWrite, p), "4 said, 1 sent");
               }});
  c.push_back({"regions: GET_REGION_INFO with argsz under the struct is refused", false,
               [](Conn& k, const Facts&) {
                 return expect_error(k.call(kDeviceGetRegionInfo, region_info(0, 8)), "argsz 8");
               }});
  c.push_back({"regions: GET_REGION_INFO of a bad index is refused", false,
               [](Conn& k, const Facts& f) {
                 return expect_error(k.call(kDeviceGetRegionInfo, region_info(f.num_regions + 1, 32)), "index past the last");
               }});
  c.push_back({"regions: GET_REGION_INFO too short for the capabilities says how much it needs, and sends no more", false,
               [](Conn& k, const Facts& f) -> Verdict {
                 bool tried = false;
                 for (std::uint32_t r = 0; r < f.region_argsz.size(); ++r) {
                   if (f.region_argsz[r] <= 32) continue;
                   tried = true;
                   auto a = k.call(kDeviceGetRegionInfo, region_info(r, 32));
                   if (!a.ok()) return fmt::format("region {}: {}", r, a.describe());
                   if (a.payload.size() > 32) return fmt::format("region {}: {} bytes for argsz 32", r, a.payload.size());
                   vfio_region_info got{};
                   std::memcpy(&got, a.payload.data(), std::min(a.payload.size(), sizeof got));
                   if (got.argsz != f.region_argsz[r])
                     return fmt::format("region {}: argsz {} says, {} needed", r, got.argsz, f.region_argsz[r]);
                 }
                 return tried ? Verdict{} : Verdict{"n/a: no region has capabilities"};
               }});

  // --- DMA ------------------------------------------------------------
  c.push_back({"dma: an overlapping DMA_MAP is refused with EEXIST", false,
               [](Conn& k, const Facts& f) -> Verdict {
                 auto mem = memory(4 * f.pgsizes);
                 const int fd[1] = {mem.get()};
                 if (auto v = expect_ok(k.call(kDmaMap, dma_map(1ull << 32, 2 * f.pgsizes), fd), "first map")) return v;
                 auto a = k.call(kDmaMap, dma_map((1ull << 32) + f.pgsizes, 2 * f.pgsizes), fd);
                 if (!a.error() || a.header.error != EEXIST) return fmt::format("overlap: wanted EEXIST, got {}", a.describe());
                 return expect_ok(k.call(kDmaUnmap, dma_unmap(1ull << 32, 2 * f.pgsizes)), "unmap");
               }});
  c.push_back({"dma: more mappings than max_dma_maps are refused", false,
               [](Conn& k, const Facts& f) -> Verdict {
                 if (f.max_dma_maps > 70000) return "n/a: max_dma_maps above 70000";
                 auto mem = memory(f.pgsizes);
                 const int fd[1] = {mem.get()};
                 for (std::uint32_t i = 0; i < f.max_dma_maps; ++i) {
                   auto a = k.call(kDmaMap, dma_map((1ull << 32) + i * f.pgsizes, f.pgsizes), fd);
                   if (!a.ok()) return fmt::format("map {} of {}: {}", i, f.max_dma_maps, a.describe());
                 }
                 auto v = expect_error(k.call(kDmaMap, dma_map((1ull << 32) + f.max_dma_maps * f.pgsizes, f.pgsizes), fd),
                                       "one more than max_dma_maps");
                 (void)k.call(kDmaUnmap, dma_unmap(0, 0, VFIO_DMA_UNMAP_FLAG_ALL));
                 return v;
               }});
  c.push_back({"dma: an unaligned DMA_MAP is refused", false,
               [](Conn& k, const Facts& f) {
                 auto mem = memory(2 * f.pgsizes);
                 const int fd[1] = {mem.get()};
                 return expect_error(k.call(kDmaMap, dma_map((1ull << 32) + 1, f.pgsizes), fd), "iova +1");
               }});
  c.push_back({"dma: a DMA_UNMAP that matches no mapping is refused", false,
               [](Conn& k, const Facts& f) -> Verdict {
                 auto mem = memory(2 * f.pgsizes);
                 const int fd[1] = {mem.get()};
                 if (auto v = expect_ok(k.call(kDmaMap, dma_map(1ull << 32, 2 * f.pgsizes), fd), "map")) return v;
                 auto v = expect_error(k.call(kDmaUnmap, dma_unmap(1ull << 32, f.pgsizes)), "unmap of half");
                 (void)k.call(kDmaUnmap, dma_unmap(1ull << 32, 2 * f.pgsizes));
                 return v;
               }});
  c.push_back({"dma: DMA_UNMAP of everything (flag ALL) removes every mapping", false,
               [](Conn& k, const Facts& f) -> Verdict {
                 auto mem = memory(2 * f.pgsizes);
                 const int fd[1] = {mem.get()};
                 for (std::uint64_t i = 0; i < 2; ++i)
                   if (auto v = expect_ok(k.call(kDmaMap, dma_map((1ull << 32) + i * f.pgsizes, f.pgsizes), fd), "map"))
                     return v;
                 if (auto v = expect_ok(k.call(kDmaUnmap, dma_unmap(0, 0, VFIO_DMA_UNMAP_FLAG_ALL)), "unmap all")) return v;
                 // The same range maps again: nothing was left behind.
                 auto v = expect_ok(k.call(kDmaMap, dma_map(1ull << 32, 2 * f.pgsizes), fd), "map again");
                 (void)k.call(kDmaUnmap, dma_unmap(0, 0, VFIO_DMA_UNMAP_FLAG_ALL));
                 return v;
               }});

  // --- interrupts -----------------------------------------------------
  c.push_back({"irqs: every index answers GET_IRQ_INFO, the one past the last is refused", false,
               [](Conn& k, const Facts& f) -> Verdict {
                 for (std::uint32_t i = 0; i <= f.num_irqs; ++i) {
                   vfio_irq_info q{};
                   q.argsz = sizeof q;
                   q.index = i;
                   std::vector<std::uint8_t> p;
                   put(p, q);
                   auto a = k.call(kDeviceGetIrqInfo, p);
                   if (i < f.num_irqs && !a.ok()) return fmt::format("index {}: {}", i, a.describe());
                   if (i == f.num_irqs && !a.error()) return fmt::format("index {} (past the last): {}", i, a.describe());
                 }
                 return std::nullopt;
               }});
  c.push_back({"irqs: SET_IRQS beyond an index's count is refused", false,
               [](Conn& k, const Facts& f) {
                 const std::uint32_t n = f.irq_count.size() > VFIO_PCI_MSIX_IRQ_INDEX ? f.irq_count[VFIO_PCI_MSIX_IRQ_INDEX] : 0;
                 return expect_error(k.call(kDeviceSetIrqs, set_irqs(VFIO_IRQ_SET_DATA_NONE | VFIO_IRQ_SET_ACTION_TRIGGER,
                                                                      VFIO_PCI_MSIX_IRQ_INDEX, n, 1)),
                                     "start at the count");
               }});
  c.push_back({"irqs: SET_IRQS with two action flags is refused", false,
               [](Conn& k, const Facts&) {
                 return expect_error(k.call(kDeviceSetIrqs, set_irqs(VFIO_IRQ_SET_DATA_NONE | VFIO_IRQ_SET_ACTION_MASK |
                                                                          VFIO_IRQ_SET_ACTION_UNMASK,
                                                                      VFIO_PCI_INTX_IRQ_INDEX, 0, 1)),
                                     "MASK|UNMASK");
               }});
  c.push_back({"irqs: DATA_EVENTFD with fewer fds than interrupts is refused, and the fds closed", true,
               [](Conn& k, const Facts& f) -> Verdict {
                 const std::uint32_t n = f.irq_count.size() > VFIO_PCI_MSIX_IRQ_INDEX ? f.irq_count[VFIO_PCI_MSIX_IRQ_INDEX] : 0;
                 if (n < 2) return "n/a: MSI-X has fewer than 2 vectors";
                 sys::UniqueFd e(::eventfd(0, EFD_CLOEXEC));
                 const int fds[1] = {e.get()};
                 return expect_refused(k.call(kDeviceSetIrqs, set_irqs(VFIO_IRQ_SET_DATA_EVENTFD | VFIO_IRQ_SET_ACTION_TRIGGER,
                                                                        VFIO_PCI_MSIX_IRQ_INDEX, 0, 2),
                                              fds),
                                       "1 fd for 2");
               }});
  c.push_back({"irqs: disabling an index (count 0, DATA_NONE|TRIGGER) is accepted", false,
               [](Conn& k, const Facts& f) -> Verdict {
                 for (std::uint32_t i = 0; i < f.irq_count.size(); ++i) {
                   if (!f.irq_count[i]) continue;
                   auto a = k.call(kDeviceSetIrqs, set_irqs(VFIO_IRQ_SET_DATA_NONE | VFIO_IRQ_SET_ACTION_TRIGGER, i, 0, 0));
                   if (!a.ok()) return fmt::format("index {}: {}", i, a.describe());
                 }
                 return std::nullopt;
               }});

  // --- reset ----------------------------------------------------------
  c.push_back({"reset: DEVICE_RESET between pipelined requests is answered in order", false,
               [](Conn& k, const Facts&) -> Verdict {
                 std::vector<std::uint16_t> ids;
                 std::vector<std::uint8_t> all;
                 for (auto cmd : {kRegionRead, kDeviceReset, kRegionRead}) {
                   const auto id = k.next_id();
                   ids.push_back(id);
                   const auto p = cmd == kDeviceReset ? std::vector<std::uint8_t>{}
                                                      : region_access(0, VFIO_PCI_CONFIG_REGION_INDEX, 4);
                   const auto m = message(id, cmd, p);
                   all.insert(all.end(), m.begin(), m.end());
                 }
                 if (!k.send(all)) return "send failed";
                 for (auto id : ids) {
                   auto a = k.receive(10000ms);  // a reset may take a while
                   if (!a.ok()) return fmt::format("id {}: {}", id, a.describe());
                   if (a.header.msg_id != id) return fmt::format("reply to id {} where {} was next", a.header.msg_id, id);
                 }
                 return std::nullopt;
               }});
  return c;
}

// Learns the facts on a connection of its own.
std::optional<Facts> learn(const Server& s, std::string& why) {
  auto k = connect(s);
  if (!k) {
    why = "cannot connect";
    return std::nullopt;
  }
  auto v = k->version(R"({"capabilities":{"max_msg_fds":8,"max_data_xfer_size":1048576}})");
  if (!v.ok()) {
    why = "VERSION: " + v.describe();
    return std::nullopt;
  }
  Facts f;
  const std::string caps(v.payload.begin() + 4, v.payload.end());
  auto num = [&](const char* key, auto& to) {
    const auto at = caps.find(fmt::format("\"{}\":", key));
    if (at != std::string::npos) to = static_cast<std::remove_reference_t<decltype(to)>>(std::stoull(caps.substr(at + std::strlen(key) + 3)));
  };
  num("max_data_xfer_size", f.max_data_xfer);
  num("pgsizes", f.pgsizes);
  num("max_dma_maps", f.max_dma_maps);
  if (f.pgsizes) f.pgsizes = f.pgsizes & -f.pgsizes;  // the smallest page
  auto info = k->call(kDeviceGetInfo, device_info());
  if (!info.ok() || info.payload.size() < 16) {
    why = "DEVICE_GET_INFO: " + info.describe();
    return std::nullopt;
  }
  std::memcpy(&f.num_regions, info.payload.data() + 8, 4);
  std::memcpy(&f.num_irqs, info.payload.data() + 12, 4);
  for (std::uint32_t r = 0; r < f.num_regions; ++r) {
    auto a = k->call(kDeviceGetRegionInfo, region_info(r, 4096));
    vfio_region_info got{};
    if (a.ok()) std::memcpy(&got, a.payload.data(), std::min(a.payload.size(), sizeof got));
    f.region_size.push_back(a.ok() ? got.size : 0);
    f.region_argsz.push_back(a.ok() ? got.argsz : 0);
  }
  for (std::uint32_t i = 0; i < f.num_irqs; ++i) {
    vfio_irq_info q{};
    q.argsz = sizeof q;
    q.index = i;
    std::vector<std::uint8_t> p;
    put(p, q);
    auto a = k->call(kDeviceGetIrqInfo, p);
    vfio_irq_info got{};
    if (a.ok()) std::memcpy(&got, a.payload.data(), std::min(a.payload.size(), sizeof got));
    f.irq_count.push_back(a.ok() ? got.count : 0);
  }
  return f;
}

// The server still answers in step on `k` (unless the case let it close
// the connection). After a negotiation case the connection may still need
// its VERSION: one is sent first, and either answer to it is in step.
Verdict in_step(Conn& k, bool may_close, bool negotiated) {
  if (!negotiated) {
    auto v = k.version("{}");
    if (v.kind == Answer::closed && may_close) return std::nullopt;
    if (v.kind != Answer::reply) return fmt::format("afterwards, VERSION on the same connection: {}", v.describe());
  }
  auto a = k.call(kDeviceGetInfo, device_info());
  if (!a.ok() && !(may_close && a.kind == Answer::closed))
    return fmt::format("afterwards, DEVICE_GET_INFO on the same connection: {}", a.describe());
  return std::nullopt;
}

Verdict fresh_connection_works(const Server& s) {
  auto k = connect(s);
  if (!k) return "afterwards, no new connection is accepted";
  if (auto v = expect_ok(k->version("{}"), "afterwards, VERSION on a new connection")) return v;
  return expect_ok(k->call(kDeviceGetInfo, device_info()), "afterwards, DEVICE_GET_INFO on a new connection");
}

}  // namespace

int main(int argc, char** argv) {
  Server s;
  std::string filter;
  bool list = false, single_client = false;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) {
        fmt::print(stderr, "vfio_user_conformance: {} needs a value\n", a);
        std::exit(2);
      }
      return argv[++i];
    };
    if (a == "--socket") s.socket = value();
    else if (a == "--server-pid") s.pid = static_cast<pid_t>(std::stol(value()));
    else if (a == "--case") filter = value();
    else if (a == "--list") list = true;
    else if (a == "--single-client") single_client = true;
    else {
      fmt::print(stderr,
                 "usage: vfio_user_conformance --socket PATH [--server-pid PID] [--case SUBSTRING] [--single-client] "
                 "[--list]\n");
      return 2;
    }
  }
  const auto all = cases();
  if (list) {
    for (const auto& c : all) fmt::print("{}\n", c.name);
    return 0;
  }
  if (s.socket.empty()) {
    fmt::print(stderr, "vfio_user_conformance: --socket PATH is required\n");
    return 2;
  }
  std::string why;
  auto facts = learn(s, why);
  if (!facts) {
    fmt::print(stderr, "vfio_user_conformance: {}: {}\n", s.socket, why);
    return 1;
  }
  int run = 0, passed = 0, na = 0;
  for (const auto& c : all) {
    if (!filter.empty() && std::string(c.name).find(filter) == std::string::npos) continue;
    ++run;
    std::this_thread::sleep_for(30ms);  // the last connection's teardown
    const auto before = fd_count(s);
    Verdict v;
    {
      auto k = connect(s);
      if (!k) {
        v = "cannot connect";
      } else {
        if (c.negotiate) {
          auto a = k->version("{}");
          if (!a.ok()) v = "VERSION: " + a.describe();
        }
        if (!v) v = c.run(*k, *facts);
        if (!v) v = in_step(*k, c.may_close, c.negotiate);
      }
    }
    if (!v && !single_client) v = fresh_connection_works(s);
    if (!v && before) {
      std::optional<int> after;
      for (int i = 0; i < 50; ++i) {  // the server closes a connection's fds as it tears it down
        std::this_thread::sleep_for(20ms);
        after = fd_count(s);
        if (after && *after <= *before) break;
      }
      if (after && *after > *before) v = fmt::format("the server holds {} fds, {} before the case", *after, *before);
    }
    if (v && v->starts_with("n/a")) {
      ++na;
      fmt::print("N/A  {}: {}\n", c.name, v->substr(5));
      continue;
    }
    if (!v) ++passed;
    fmt::print("{} {}{}\n", v ? "FAIL" : "PASS", c.name, v ? ": " + *v : std::string());
  }
  fmt::print("{} of {} cases passed{} against {}\n", passed, run - na, na ? fmt::format(" ({} not applicable)", na) : "",
             s.socket);
  return passed == run - na ? 0 : 1;
}
