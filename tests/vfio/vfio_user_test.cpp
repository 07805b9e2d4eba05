// The vfio-user server: protocol handling (QEMU docs/interop/vfio-user.rst)
// over the region model, session by session and over a real socket.
#include <catch2/catch.hpp>

#include <linux/vfio.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <random>
#include <thread>

#include "device_util.hpp"
#include "nvgrace/vfio/region_info.hpp"
#include "nvgrace/vfio/user/client.hpp"
#include "nvgrace/vfio/user/session.hpp"
#include "nvgrace/serve/server.hpp"

#include <fmt/format.h>
#include "vfio_user_client.hpp"

using namespace nvgrace;
using namespace nvgrace::vfio;
using nvgrace::sys::UniqueFd;
namespace user = nvgrace::vfio::user;

namespace {

std::uint16_t next_id = 1;

template <class T>
void put(std::vector<std::uint8_t>& b, const T& v) {
  const auto* p = reinterpret_cast<const std::uint8_t*>(&v);
  b.insert(b.end(), p, p + sizeof v);
}

std::vector<std::uint8_t> message(std::uint16_t command, const std::vector<std::uint8_t>& payload,
                                  std::uint32_t flags = 0) {
  std::vector<std::uint8_t> m;
  put(m, user::Header{next_id++, command, static_cast<std::uint32_t>(16 + payload.size()), flags, 0});
  m.insert(m.end(), payload.begin(), payload.end());
  return m;
}

std::vector<std::uint8_t> version_payload(std::uint16_t major = 0, std::uint16_t minor = 0) {
  std::vector<std::uint8_t> p;
  put(p, major);
  put(p, minor);
  const std::string caps = R"({"capabilities":{"max_msg_fds":8,"max_data_xfer_size":1048576}})";
  p.insert(p.end(), caps.begin(), caps.end());
  p.push_back(0);
  return p;
}

std::vector<std::uint8_t> rw(std::uint64_t offset, std::uint32_t region, std::uint32_t count,
                             const std::vector<std::uint8_t>& data = {}) {
  std::vector<std::uint8_t> p;
  put(p, offset);
  put(p, region);
  put(p, count);
  p.insert(p.end(), data.begin(), data.end());
  return p;
}

std::vector<std::uint8_t> argsz_index(std::uint32_t argsz, std::uint32_t index, std::size_t total = 32) {
  std::vector<std::uint8_t> p;
  put(p, argsz);
  put(p, std::uint32_t{0});
  put(p, index);
  p.resize(total, 0);
  return p;
}

// What one handle() produced, copied out of the reply buffer.
struct Reply {
  std::vector<std::uint8_t> bytes;  // empty: no reply
  std::vector<int> fds;
  bool close = false;
};

// Hands `msg` to the session with a reused reply buffer.
Reply call(user::Session& s, user::ReplyBuffer& out, const std::vector<std::uint8_t>& msg,
           std::vector<UniqueFd> fds = {}) {
  const auto outcome = s.handle(msg, fds, out);
  Reply r;
  r.close = outcome == user::Outcome::close;
  if (outcome == user::Outcome::reply) {
    r.bytes.assign(out.bytes().begin(), out.bytes().end());
    r.fds.assign(out.fds().begin(), out.fds().end());
  }
  return r;
}

user::Header header(const Reply& r) {
  user::Header h{};
  REQUIRE(r.bytes.size() >= sizeof h);
  std::memcpy(&h, r.bytes.data(), sizeof h);
  CHECK(h.msg_size == r.bytes.size());
  return h;
}

std::span<const std::uint8_t> payload(const Reply& r) { return std::span(r.bytes).subspan(16); }

struct Negotiated {
  std::unique_ptr<Variant> dev = test::make_device("gh200");
  user::Session s{*dev};
  user::ReplyBuffer out;
  explicit Negotiated(const std::vector<std::uint8_t>& version = version_payload()) {
    REQUIRE(header(call(s, out, message(user::kVersion, version))).error == 0);
  }
  Reply send(std::uint16_t cmd, const std::vector<std::uint8_t>& p, std::uint32_t flags = 0) {
    return call(s, out, message(cmd, p, flags));
  }
  Reply send_raw(const std::vector<std::uint8_t>& m, std::vector<UniqueFd> fds = {}) {
    return call(s, out, m, std::move(fds));
  }
};

std::vector<std::uint8_t> version_json(const std::string& json, std::uint16_t minor = 0, bool nul = true) {
  std::vector<std::uint8_t> p;
  put(p, std::uint16_t{0});
  put(p, minor);
  p.insert(p.end(), json.begin(), json.end());
  if (nul) p.push_back(0);
  return p;
}

}  // namespace

TEST_CASE("vfio-user: VERSION 0.0 is answered with 0.0 and JSON capabilities") {
  auto dev = test::make_device("gh200");
  user::Session s(*dev);
  user::ReplyBuffer out;
  auto r = call(s, out, message(user::kVersion, version_payload(0, 0)));
  const auto h = header(r);
  CHECK((h.flags & user::kTypeMask) == user::kTypeReply);
  CHECK((h.flags & user::kError) == 0);
  const auto p = payload(r);
  CHECK(p[0] == 0);
  CHECK(p[2] == 0);
  CHECK(p.back() == 0);  // NUL-terminated
  const std::string json(reinterpret_cast<const char*>(p.data() + 4));
  CHECK(json == fmt::format(R"({{"capabilities":{{"max_msg_fds":8,"max_data_xfer_size":1048576,"pgsizes":{},)"
                            R"("max_dma_maps":65535}}}})",
                            ::sysconf(_SC_PAGESIZE)));
  CHECK(s.negotiated());
  // QEMU receives the reply into its own 214-byte request buffer.
  CHECK(r.bytes.size() <= 214);
  CHECK(header(call(s, out, message(user::kVersion, version_payload()))).error == EINVAL);  // only once
}

TEST_CASE("vfio-user: another major version and commands before VERSION are refused") {
  auto dev = test::make_device("gh200");
  user::Session s(*dev);
  user::ReplyBuffer out;
  auto early = call(s, out, message(user::kDeviceGetInfo, argsz_index(16, 0, 16)));
  CHECK((header(early).flags & user::kError) != 0);
  CHECK(header(early).error == EINVAL);
  auto major = call(s, out, message(user::kVersion, version_payload(1, 0)));
  CHECK(header(major).error == ENOTSUP);
  CHECK_FALSE(s.negotiated());
}

TEST_CASE("vfio-user conformance: VERSION JSON must be valid and NUL-terminated, else EINVAL") {
  for (const auto& bad : {version_json(R"({"capabilities":{"max_msg_fds":8}})", 0, false),
                          version_json(R"({"capabilities":{"max_msg_fds":8})"),
                          version_json("not json"),
                          version_json("[1,2]"),
                          version_json(R"({"capabilities":[]})"),
                          version_json(R"({"capabilities":{"max_msg_fds":-1}})"),
                          version_json(R"({"capabilities":{"max_msg_fds":"8"}})"),
                          version_json(R"({"capabilities":{"max_data_xfer_size":0}})")}) {
    auto dev = test::make_device("gh200");
    user::Session s(*dev);
    user::ReplyBuffer out;
    auto r = call(s, out, message(user::kVersion, bad));
    INFO(std::string(bad.begin() + 4, bad.end()));
    CHECK(header(r).error == EINVAL);
    CHECK(r.bytes.size() == 16);
    CHECK_FALSE(s.negotiated());
  }
  // No JSON at all is allowed: the spec's defaults apply.
  Negotiated bare(version_json("", 0, false));
  CHECK(bare.s.client_max_msg_fds() == 1);
  CHECK(bare.s.client_max_data_xfer_size() == 1u << 20);
  // Unknown capabilities are ignored.
  Negotiated extra(version_json(R"({"capabilities":{"max_msg_fds":16,"migration":{"pgsize":4096},"write_multiple":true}})"));
  CHECK(extra.s.client_max_msg_fds() == 16);
}

TEST_CASE("vfio-user conformance: a higher minor version is answered with the highest the server implements") {
  auto dev = test::make_device("gh200");
  user::Session s(*dev);
  user::ReplyBuffer out;
  auto r = call(s, out, message(user::kVersion, version_json("{}", 7)));
  std::uint16_t major = 1, minor = 1;
  std::memcpy(&major, payload(r).data(), 2);
  std::memcpy(&minor, payload(r).data() + 2, 2);
  CHECK(major == 0);
  CHECK(minor == user::kMinor);
}

TEST_CASE("vfio-user conformance: the client's max_data_xfer_size and max_msg_fds bound what the server sends") {
  Negotiated n(version_json(R"({"capabilities":{"max_msg_fds":0,"max_data_xfer_size":4096}})"));
  CHECK(header(n.send(user::kRegionRead, rw(0, 4, 4096))).error == 0);
  auto big = n.send(user::kRegionRead, rw(0, 4, 8192));
  CHECK(header(big).error == EINVAL);
  CHECK(big.bytes.size() == 16);
  // No fds for this client: BAR4 comes without its fd, so it is not mappable.
  auto info = n.send(user::kDeviceGetRegionInfo, argsz_index(256, 4));
  CHECK(info.fds.empty());
  vfio_region_info ri{};
  std::memcpy(&ri, payload(info).data(), sizeof ri);
  CHECK((ri.flags & VFIO_REGION_INFO_FLAG_MMAP) == 0);
  CHECK((ri.flags & VFIO_REGION_INFO_FLAG_CAPS) == 0);
  CHECK(payload(info).size() == sizeof ri);
  // The spec's default for a client that says nothing is one fd.
  Negotiated one(version_json("{}"));
  CHECK(one.send(user::kDeviceGetRegionInfo, argsz_index(256, 4)).fds.size() == 1);
}

TEST_CASE("vfio-user conformance: argsz smaller than the fixed reply is refused, and no reply exceeds argsz") {
  Negotiated n;
  CHECK(header(n.send(user::kDeviceGetInfo, argsz_index(8, 0, 16))).error == EINVAL);
  CHECK(header(n.send(user::kDeviceGetInfo, argsz_index(16, 0, 8))).error == EINVAL);  // payload too short
  CHECK(header(n.send(user::kDeviceGetIrqInfo, argsz_index(15, 2, 16))).error == EINVAL);
  CHECK(header(n.send(user::kDeviceGetRegionInfo, argsz_index(31, 4))).error == EINVAL);
  CHECK(header(n.send(user::kDeviceGetRegionInfo, argsz_index(64, 4, 16))).error == EINVAL);  // payload too short
  for (std::uint32_t argsz = 16; argsz <= 96; ++argsz) {
    for (std::uint16_t cmd : {user::kDeviceGetInfo, user::kDeviceGetIrqInfo, user::kDeviceGetRegionInfo}) {
      const std::uint32_t index = cmd == user::kDeviceGetRegionInfo ? 4 : 2;
      auto r = n.send(cmd, argsz_index(argsz, index, cmd == user::kDeviceGetRegionInfo ? 32 : 16));
      INFO(user::command_name(cmd) << " argsz " << argsz);
      if (header(r).flags & user::kError) continue;
      CHECK(payload(r).size() <= argsz);
    }
  }
}

TEST_CASE("vfio-user conformance: SET_IRQS needs one data type, one action, and one eventfd per interrupt") {
  Negotiated n;
  auto set = [&](std::uint32_t flags, std::uint32_t index, std::uint32_t start, std::uint32_t count,
                 std::size_t nfds, std::vector<std::uint8_t> extra = {}) {
    std::vector<std::uint8_t> p;
    for (std::uint32_t v : {static_cast<std::uint32_t>(20 + extra.size()), flags, index, start, count}) put(p, v);
    p.insert(p.end(), extra.begin(), extra.end());
    std::vector<UniqueFd> fds;
    for (std::size_t i = 0; i < nfds; ++i) fds.emplace_back(::eventfd(0, EFD_CLOEXEC));
    return header(n.send_raw(message(user::kDeviceSetIrqs, p), std::move(fds))).error;
  };
  const std::uint32_t efd_trigger = VFIO_IRQ_SET_DATA_EVENTFD | VFIO_IRQ_SET_ACTION_TRIGGER;
  const std::uint32_t msix = VFIO_PCI_MSIX_IRQ_INDEX;
  CHECK(set(efd_trigger, msix, 0, 6, 6) == 0);
  CHECK(n.s.irqs().at(0).triggers == 6);
  CHECK(set(efd_trigger, msix, 2, 1, 0) == 0);  // de-assign one
  CHECK(n.s.irqs().at(0).triggers == 5);
  CHECK(set(efd_trigger, msix, 0, 2, 1) == EINVAL);  // 1 fd for 2 vectors
  CHECK(set(efd_trigger | VFIO_IRQ_SET_DATA_NONE, msix, 0, 1, 1) == EINVAL);  // two data types
  CHECK(set(VFIO_IRQ_SET_DATA_NONE, msix, 0, 1, 0) == EINVAL);  // no action
  CHECK(set(VFIO_IRQ_SET_DATA_NONE | VFIO_IRQ_SET_ACTION_TRIGGER, msix, 0, 1, 1) == EINVAL);  // fd without EVENTFD
  CHECK(set(VFIO_IRQ_SET_DATA_NONE | VFIO_IRQ_SET_ACTION_MASK, msix, 0, 1, 0) == EINVAL);  // MSI-X not maskable here
  CHECK(set(VFIO_IRQ_SET_DATA_NONE | VFIO_IRQ_SET_ACTION_MASK, VFIO_PCI_INTX_IRQ_INDEX, 0, 1, 0) == 0);
  CHECK(set(VFIO_IRQ_SET_DATA_BOOL | VFIO_IRQ_SET_ACTION_TRIGGER, msix, 0, 2, 0, {1}) == EINVAL);  // 1 bool for 2
  CHECK(set(VFIO_IRQ_SET_DATA_BOOL | VFIO_IRQ_SET_ACTION_TRIGGER, msix, 0, 2, 0, {1, 0}) == 0);
  CHECK(set(VFIO_IRQ_SET_DATA_NONE | VFIO_IRQ_SET_ACTION_TRIGGER, msix, 1, 0, 0) == EINVAL);  // count 0 needs start 0
  CHECK(set(VFIO_IRQ_SET_DATA_NONE | VFIO_IRQ_SET_ACTION_TRIGGER, msix, 0, 0, 0) == 0);      // disable all
  CHECK(n.s.irqs().at(0).triggers == 0);
  CHECK(set(efd_trigger, 9, 0, 1, 1) == EINVAL);  // no such index
}

TEST_CASE("vfio-user: teardown removes every DMA mapping and disables every IRQ index the client left assigned (R30)") {
  Negotiated n;
  std::vector<std::uint8_t> map;
  for (std::uint64_t iova : {0x100000ull, 0x400000ull}) {
    map.clear();
    put(map, std::uint32_t{32});
    put(map, std::uint32_t{3});
    put(map, std::uint64_t{0});
    put(map, iova);
    put(map, std::uint64_t{0x200000});
    REQUIRE(header(n.send(user::kDmaMap, map)).error == 0);
  }
  // SET_IRQS of `count` interrupts from 0, with one eventfd each for DATA_EVENTFD.
  auto set_irqs = [&](std::uint32_t data, std::uint32_t index, std::uint32_t count) {
    std::vector<std::uint8_t> set;
    for (std::uint32_t v : {20u, data | static_cast<std::uint32_t>(VFIO_IRQ_SET_ACTION_TRIGGER), index, 0u, count})
      put(set, v);
    std::vector<UniqueFd> fds;
    if (data == VFIO_IRQ_SET_DATA_EVENTFD)
      for (std::uint32_t i = 0; i < count; ++i) fds.emplace_back(::eventfd(0, EFD_CLOEXEC));
    return header(n.send_raw(message(user::kDeviceSetIrqs, set), std::move(fds))).error;
  };
  REQUIRE(set_irqs(VFIO_IRQ_SET_DATA_EVENTFD, VFIO_PCI_INTX_IRQ_INDEX, 1) == 0);
  // MSI-X assigned, then turned off by the client: already off, and VFIO
  // refuses to disable MSI-X that is not enabled.
  REQUIRE(set_irqs(VFIO_IRQ_SET_DATA_EVENTFD, VFIO_PCI_MSIX_IRQ_INDEX, 1) == 0);
  REQUIRE(set_irqs(VFIO_IRQ_SET_DATA_NONE, VFIO_PCI_MSIX_IRQ_INDEX, 0) == 0);
  const auto t = n.s.teardown();
  CHECK(t.dma_unmapped == 2);
  CHECK(t.irq_indexes_disabled == 1);  // INTx only
  CHECK(n.s.dma().empty());
  CHECK(n.s.irqs().empty());
  CHECK(n.s.teardown().dma_unmapped == 0);  // idempotent
}

TEST_CASE("vfio-user: DEVICE_GET_INFO and GET_IRQ_INFO") {
  Negotiated n;
  auto r = n.send(user::kDeviceGetInfo, argsz_index(16, 0, 16));
  vfio_device_info info{};
  std::memcpy(&info, payload(r).data(), 16);
  CHECK(info.flags == (VFIO_DEVICE_FLAGS_PCI | VFIO_DEVICE_FLAGS_RESET));
  CHECK(info.num_regions == 9);
  CHECK(info.num_irqs == 5);
  auto irq = n.send(user::kDeviceGetIrqInfo, argsz_index(16, VFIO_PCI_MSIX_IRQ_INDEX, 16));
  vfio_irq_info ii{};
  std::memcpy(&ii, payload(irq).data(), sizeof ii);
  CHECK(ii.count == 6);
  CHECK(header(n.send(user::kDeviceGetIrqInfo, argsz_index(16, 9, 16))).error == EINVAL);
}

TEST_CASE("vfio-user: GET_REGION_INFO sends the memfd and its offset, with the sparse-mmap capability (R16)") {
  Negotiated n;
  // Too small for the capability: argsz says what is needed, CAPS stays clear, no fd.
  auto small = n.send(user::kDeviceGetRegionInfo, argsz_index(32, 2));
  vfio_region_info info{};
  std::memcpy(&info, payload(small).data(), sizeof info);
  CHECK(info.argsz == 32 + 16 + 16);
  CHECK((info.flags & VFIO_REGION_INFO_FLAG_CAPS) == 0);
  CHECK(small.fds.empty());
  auto full = n.send(user::kDeviceGetRegionInfo, argsz_index(64, 2));
  auto d = decode_region_info(payload(full)).value();
  CHECK(d.region.size == GiB);
  CHECK(d.offset == 95 * GiB);  // resmem follows usemem in the memfd
  REQUIRE(d.region.sparse.size() == 1);
  CHECK(d.region.sparse[0].size == GiB);
  REQUIRE(full.fds.size() == 1);
  CHECK(full.fds[0] == n.dev->memory().range(pciemu::MemRole::resmem)->fd);
  auto cfg = n.send(user::kDeviceGetRegionInfo, argsz_index(32, 7));
  CHECK(cfg.fds.empty());
  CHECK(header(n.send(user::kDeviceGetRegionInfo, argsz_index(32, 9))).error == EINVAL);
}

TEST_CASE("vfio-user: REGION_READ/WRITE go through the region model, tail and all (R17)") {
  Negotiated n;
  auto cfg = n.send(user::kRegionRead, rw(0, 7, 4));
  CHECK(std::vector<std::uint8_t>(payload(cfg).begin() + 16, payload(cfg).end()) ==
        std::vector<std::uint8_t>{0xde, 0x10, 0x42, 0x23});
  auto w = n.send(user::kRegionWrite, rw(95 * GiB - 4, 4, 8, {1, 2, 3, 4, 5, 6, 7, 8}));
  std::uint32_t count = 0;
  std::memcpy(&count, payload(w).data() + 12, 4);
  CHECK(count == 8);
  auto r = n.send(user::kRegionRead, rw(95 * GiB - 4, 4, 8));
  CHECK(std::vector<std::uint8_t>(payload(r).begin() + 16, payload(r).end()) ==
        std::vector<std::uint8_t>{1, 2, 3, 4, 0xFF, 0xFF, 0xFF, 0xFF});
  CHECK(n.dev->dropped_writes() == 4);
}

TEST_CASE("vfio-user: bad region indexes, offsets and counts get error replies with the errno") {
  Negotiated n;
  CHECK(header(n.send(user::kRegionRead, rw(0, 9, 4))).error == EINVAL);
  CHECK(header(n.send(user::kRegionRead, rw(128 * GiB, 4, 4))).error == EINVAL);
  CHECK(header(n.send(user::kRegionRead, rw(~0ull, 4, 4))).error == EINVAL);
  CHECK(header(n.send(user::kRegionRead, rw(0, 3, 4))).error == EINVAL);
  CHECK(header(n.send(user::kRegionRead, rw(0, 4, user::kMaxDataXferSize + 1))).error == EINVAL);
  CHECK(header(n.send(user::kRegionWrite, rw(0, 4, 8, {1, 2}))).error == EINVAL);  // count says 8, 2 sent
  CHECK(header(n.send(user::kRegionRead, {1, 2, 3})).error == EINVAL);          // payload too short
  auto e = n.send(user::kRegionRead, rw(0, 9, 4));
  CHECK(e.bytes.size() == 16);  // an error reply is the header alone
  CHECK((header(e).flags & user::kError) != 0);
}

TEST_CASE("vfio-user: posted writes get no reply but take effect") {
  Negotiated n;
  auto r = n.send(user::kRegionWrite, rw(0x100, 4, 4, {9, 9, 9, 9}), user::kNoReply);
  CHECK(r.bytes.empty());
  auto back = n.send(user::kRegionRead, rw(0x100, 4, 4));
  CHECK(payload(back)[16] == 9);
}

TEST_CASE("vfio-user: unknown commands, replies sent as commands, too many fds") {
  Negotiated n;
  CHECK(header(n.send(99, {})).error == ENOSYS);
  CHECK(header(n.send(user::kDmaRead, {})).error == EINVAL);  // server-to-client only
  CHECK(header(n.send(user::kDeviceGetInfo, argsz_index(16, 0, 16), user::kTypeReply)).error == EINVAL);
  std::vector<UniqueFd> fds;
  for (int i = 0; i < 9; ++i) fds.emplace_back(::dup(0));
  auto r = n.send_raw(message(user::kDeviceGetInfo, argsz_index(16, 0, 16)), std::move(fds));
  CHECK(header(r).error == EINVAL);
}

TEST_CASE("vfio-user: a short message or a size field that lies closes the connection") {
  Negotiated n;
  CHECK(n.send_raw(std::vector<std::uint8_t>{1, 2, 3}).close);
  auto m = message(user::kDeviceGetInfo, argsz_index(16, 0, 16));
  m[4] = 200;  // msg_size no longer matches what was received
  CHECK(n.send_raw(m).close);
}

TEST_CASE("vfio-user: DMA_MAP and DMA_UNMAP are recorded, overlaps refused, unmaps echoed") {
  Negotiated n;
  std::vector<std::uint8_t> map;
  put(map, std::uint32_t{32});
  put(map, std::uint32_t{3});
  put(map, std::uint64_t{0});
  put(map, std::uint64_t{0x100000});
  put(map, std::uint64_t{0x200000});
  CHECK(header(n.send(user::kDmaMap, map)).error == 0);
  CHECK(header(n.send(user::kDmaMap, map)).error == EEXIST);
  CHECK(n.s.dma().size() == 1);
  std::vector<std::uint8_t> unmap;
  put(unmap, std::uint32_t{24});
  put(unmap, std::uint32_t{0});
  put(unmap, std::uint64_t{0x100000});
  put(unmap, std::uint64_t{0x200000});
  auto r = n.send(user::kDmaUnmap, unmap);
  CHECK(std::vector<std::uint8_t>(payload(r).begin(), payload(r).end()) == unmap);
  CHECK(header(n.send(user::kDmaUnmap, unmap)).error == ENOENT);
}

TEST_CASE("vfio-user: SET_IRQS is recorded within the IRQ count, DEVICE_RESET zeroes the BARs (R14)") {
  Negotiated n;
  std::vector<std::uint8_t> set;
  for (std::uint32_t v : {20u, static_cast<std::uint32_t>(VFIO_IRQ_SET_DATA_NONE | VFIO_IRQ_SET_ACTION_TRIGGER),
                          static_cast<std::uint32_t>(VFIO_PCI_MSIX_IRQ_INDEX), 0u, 6u})
    put(set, v);
  CHECK(header(n.send(user::kDeviceSetIrqs, set)).error == 0);
  CHECK(n.s.irqs().size() == 1);
  set[16] = 7;  // count 7 > 6 vectors
  CHECK(header(n.send(user::kDeviceSetIrqs, set)).error == EINVAL);
  n.send(user::kRegionWrite, rw(0x24, 7, 4, {0, 1, 0, 0}));
  CHECK(header(n.send(user::kDeviceReset, {})).error == 0);
  auto r = n.send(user::kRegionRead, rw(0x24, 7, 4));
  CHECK(payload(r)[17] == 0);
}

TEST_CASE("vfio-user mutation: 50,000 corrupted messages never crash the session") {
  Negotiated n;
  const std::vector<std::vector<std::uint8_t>> seeds{
      message(user::kVersion, version_payload()),           message(user::kDeviceGetInfo, argsz_index(16, 0, 16)),
      message(user::kDeviceGetRegionInfo, argsz_index(64, 4)), message(user::kDeviceGetIrqInfo, argsz_index(16, 2, 16)),
      message(user::kRegionRead, rw(0x20, 7, 8)),            message(user::kRegionWrite, rw(0x1000, 4, 4, {1, 2, 3, 4})),
      message(user::kDeviceReset, {})};
  std::mt19937 rng(0x5EED);
  std::size_t errors = 0, closes = 0;
  for (int i = 0; i < 50000; ++i) {
    auto m = seeds[static_cast<std::size_t>(i) % seeds.size()];
    for (int e = 0, edits = 1 + static_cast<int>(rng() % 6); e < edits; ++e) {
      const std::size_t at = rng() % m.size();
      switch (rng() % 4) {
        case 0: m[at] = static_cast<std::uint8_t>(rng()); break;
        case 1: m[at] ^= static_cast<std::uint8_t>(1u << (rng() % 8)); break;
        case 2: m.resize(std::max<std::size_t>(1, at)); break;
        case 3: m.insert(m.begin() + static_cast<std::ptrdiff_t>(at), static_cast<std::uint8_t>(rng())); break;
      }
    }
    // Mostly keep msg_size honest so the payload checks are reached.
    if (m.size() >= 8 && rng() % 4 != 0) {
      const auto size = static_cast<std::uint32_t>(m.size());
      std::memcpy(m.data() + 4, &size, 4);
    }
    auto r = n.send_raw(m);
    if (r.close) ++closes;
    else if (!r.bytes.empty() && (header(r).flags & user::kError)) ++errors;
  }
  CHECK(errors > 1000);
  CHECK(closes > 1000);
}

TEST_CASE("vfio-user over a socket: the memfd arrives by SCM_RIGHTS, mmap and REGION_READ agree, clients come and go") {
  const auto path = (std::filesystem::temp_directory_path() / ("nvgrace-vu-" + std::to_string(getpid()) + ".sock")).string();
  std::vector<serve::ServedDevice> devices;
  devices.push_back({path, test::make_device("gh200")});
  auto server = serve::Server::create(std::move(devices)).value();
  std::thread loop([&] { (void)server->run(false); });

  auto connect_client = [&] {
    auto fd = test::vfio_user_connect(path);
    REQUIRE(fd);
    return fd;
  };
  auto roundtrip = [](int fd, const std::vector<std::uint8_t>& m, int* got_fd = nullptr) {
    auto reply = test::vfio_user_call(fd, m, got_fd);
    REQUIRE(reply.size() >= 16);
    return reply;
  };

  {
    auto c = connect_client();
    roundtrip(c.get(), message(user::kVersion, version_payload()));
    int memfd = -1;
    auto info = roundtrip(c.get(), message(user::kDeviceGetRegionInfo, argsz_index(64, 4)), &memfd);
    REQUIRE(memfd >= 0);
    UniqueFd owned(memfd);
    auto d = decode_region_info(std::span(info).subspan(16)).value();
    void* map = ::mmap(nullptr, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, memfd, static_cast<off_t>(d.offset));
    REQUIRE(map != MAP_FAILED);
    std::memcpy(map, "vfio-user", 9);
    auto r = roundtrip(c.get(), message(user::kRegionRead, rw(0, 4, 9)));
    CHECK(std::string(reinterpret_cast<const char*>(r.data() + 32), 9) == "vfio-user");
    ::munmap(map, 4096);
    // Leave in the middle of a message.
    auto m = message(user::kRegionRead, rw(0, 7, 4));
    REQUIRE(::send(c.get(), m.data(), 10, 0) == 10);
  }
  {
    // The next client is served; an oversized message closes only its connection.
    auto c = connect_client();
    roundtrip(c.get(), message(user::kVersion, version_payload()));
    auto r = roundtrip(c.get(), message(user::kRegionRead, rw(0, 7, 2)));
    CHECK(r[32] == 0xde);
    std::vector<std::uint8_t> huge;
    put(huge, user::Header{1, user::kRegionWrite, user::kMaxMessageSize + 1, 0, 0});
    REQUIRE(::send(c.get(), huge.data(), huge.size(), 0) == 16);
    std::uint8_t b;
    CHECK(::recv(c.get(), &b, 1, 0) == 0);  // the server closed it
  }
  {
    auto c = connect_client();
    auto v = roundtrip(c.get(), message(user::kVersion, version_payload()));
    CHECK(v.size() > 16);
  }
  server->stop();
  loop.join();
  CHECK_FALSE(std::filesystem::exists(path));
  CHECK(server->messages() == 6);  // the cut-off and the oversized message were never handled
}

namespace {

// A function whose error IRQ index VFIO refuses, as Linux 6.12's vfio-pci
// does for a conventional PCI device (VFIO_PCI_ERR_IRQ_INDEX: EINVAL).
class NoErrIrq final : public Function {
 public:
  explicit NoErrIrq(std::unique_ptr<Function> inner) : inner_(std::move(inner)) {}
  DeviceInfo info() const override { return inner_->info(); }
  Result<RegionInfoView> region_info(RegionIndex index) override { return inner_->region_info(index); }
  Result<IrqInfo> irq(unsigned index) const override {
    if (index == VFIO_PCI_ERR_IRQ_INDEX) return fail_errno(EINVAL, "VFIO_DEVICE_GET_IRQ_INFO({})", index);
    return inner_->irq(index);
  }
  Result<std::size_t> read(RegionIndex index, std::uint64_t offset, std::span<std::uint8_t> out) override {
    return inner_->read(index, offset, out);
  }
  Result<std::size_t> write(RegionIndex index, std::uint64_t offset, std::span<const std::uint8_t> in) override {
    return inner_->write(index, offset, in);
  }
  Result<void> reset() override { return inner_->reset(); }
  const DmaLimits& dma_limits() const override { return inner_->dma_limits(); }
  Result<void> dma_map(const DmaMapping& m) override { return inner_->dma_map(m); }
  Result<void> dma_unmap(Iova iova, std::uint64_t size) override { return inner_->dma_unmap(iova, size); }
  Result<void> set_irqs(const IrqSet& s) override { return inner_->set_irqs(s); }

 private:
  std::unique_ptr<Function> inner_;
};

}  // namespace

TEST_CASE("vfio-user client: an IRQ index the device answers EINVAL for has no interrupts, the others are kept") {
  const auto path = (std::filesystem::temp_directory_path() / ("nvgrace-noerr-" + std::to_string(getpid()) + ".sock")).string();
  std::vector<serve::ServedDevice> devices;
  devices.push_back({path, std::make_unique<NoErrIrq>(test::make_device("gh200"))});
  auto server = serve::Server::create(std::move(devices)).value();
  std::thread loop([&] { (void)server->run(false); });
  {
    auto fd = test::vfio_user_connect(path);
    REQUIRE(fd);
    auto c = user::Client::create(std::move(fd));
    INFO((c ? std::string() : c.error().message));
    REQUIRE(c.has_value());
    const auto err = (*c)->irq(VFIO_PCI_ERR_IRQ_INDEX);
    REQUIRE(err.has_value());
    CHECK(err->count == 0);
    CHECK(err->flags == 0);
    const auto msix = (*c)->irq(VFIO_PCI_MSIX_IRQ_INDEX);
    REQUIRE(msix.has_value());
    CHECK(msix->count > 0);
  }
  server->stop();
  loop.join();
}
