#include "nvgrace/vfio/user/client.hpp"

#include <linux/vfio.h>
#include <poll.h>

#include <cerrno>
#include <cstring>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "nvgrace/sys/scm.hpp"
#include "nvgrace/vfio/wire.hpp"

namespace nvgrace::vfio::user {
namespace {

using Clock = std::chrono::steady_clock;

template <class T>
void put(std::vector<std::uint8_t>& v, const T& x) {
  const auto* p = reinterpret_cast<const std::uint8_t*>(&x);
  v.insert(v.end(), p, p + sizeof x);
}

// Waits until `fd` is readable or `deadline` passes.
Result<void> wait_readable(int fd, Clock::time_point deadline) {
  for (;;) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
    if (left <= 0) return fail_errno(ETIMEDOUT, "no reply within the timeout");
    pollfd p{fd, POLLIN, 0};
    const int n = ::poll(&p, 1, static_cast<int>(left));
    if (n > 0) return {};
    if (n < 0 && errno != EINTR) return fail_errno(errno, "poll: {}", std::strerror(errno));
  }
}

}  // namespace

Result<std::unique_ptr<Client>> Client::create(sys::UniqueFd connected, ClientOptions o) {
  if (!connected) return fail_errno(EBADF, "no socket");
  std::unique_ptr<Client> c(new Client(std::move(connected), o));
  if (auto ok = c->negotiate(); !ok) return fail(ok.error());
  // DEVICE_GET_INFO: 16 bytes in vfio-user (argsz, flags, num_regions, num_irqs).
  std::vector<std::uint8_t> p;
  put(p, std::uint32_t{16});
  p.resize(16, 0);
  auto r = c->request(kDeviceGetInfo, p);
  if (!r) return fail(r.error());
  if (r->payload.size() < 16) return fail_errno(EPROTO, "DEVICE_GET_INFO reply of {} bytes", r->payload.size());
  c->info_.flags = wire::load<std::uint32_t>(r->payload, 4);
  c->info_.num_regions = wire::load<std::uint32_t>(r->payload, 8);
  c->info_.num_irqs = wire::load<std::uint32_t>(r->payload, 12);
  for (std::uint32_t i = 0; i < c->info_.num_irqs; ++i) {
    vfio_irq_info q{};
    q.argsz = sizeof q;
    q.index = i;
    std::vector<std::uint8_t> qp;
    put(qp, q);
    auto ir = c->request(kDeviceGetIrqInfo, qp);
    if (!ir && ir.error().err == EINVAL) {
      // VFIO answers EINVAL for an index the function lacks (the error
      // index on a conventional PCI device, Linux 6.12): no interrupts
      // there, as QEMU's client takes it.
      c->irqs_.push_back({i, 0, 0});
      continue;
    }
    if (!ir) return fail(ir.error());
    if (ir->payload.size() < sizeof q) return fail_errno(EPROTO, "GET_IRQ_INFO reply of {} bytes", ir->payload.size());
    const auto a = wire::load<vfio_irq_info>(ir->payload, 0);
    c->irqs_.push_back({a.index, a.flags, a.count});
  }
  return c;
}

Result<void> Client::negotiate() {
  std::vector<std::uint8_t> p;
  put(p, kMajor);
  put(p, kMinor);
  const auto caps = fmt::format(R"({{"capabilities":{{"max_msg_fds":{},"max_data_xfer_size":{}}}}})",
                                opts_.max_msg_fds, opts_.max_data_xfer_size);
  p.insert(p.end(), caps.begin(), caps.end());
  p.push_back(0);
  auto r = request(kVersion, p);
  if (!r) return fail(r.error());
  if (r->payload.size() < 4) return fail_errno(EPROTO, "VERSION reply of {} bytes", r->payload.size());
  if (wire::load<std::uint16_t>(r->payload, 0) != kMajor)
    return fail_errno(EPROTO, "the server speaks protocol major {}", wire::load<std::uint16_t>(r->payload, 0));
  limits_ = {};
  limits_.needs_fd = true;
  if (r->payload.size() > 4) {
    std::string text(r->payload.begin() + 4, r->payload.end());
    if (!text.empty() && text.back() == '\0') text.pop_back();
    const auto j = nlohmann::json::parse(text, nullptr, false);
    if (j.is_discarded() || !j.is_object()) return fail_errno(EPROTO, "the server's capabilities are not JSON");
    if (auto c = j.find("capabilities"); c != j.end() && c->is_object()) {
      auto num = [&](const char* key, auto& to) {
        if (auto v = c->find(key); v != c->end() && v->is_number_unsigned())
          to = v->get<std::remove_reference_t<decltype(to)>>();
      };
      num("max_data_xfer_size", server_xfer_);
      num("max_msg_fds", server_fds_);
      num("pgsizes", limits_.pgsizes);
      num("max_dma_maps", limits_.max_maps);
    }
  }
  if (server_xfer_ == 0) return fail_errno(EPROTO, "the server announced max_data_xfer_size 0");
  return {};
}

Result<RawReply> Client::call(std::span<const std::uint8_t> message, std::span<const int> fds) {
  if (message.size() < sizeof(Header)) return fail_errno(EINVAL, "a message of {} bytes has no header", message.size());
  std::vector<std::uint8_t> msg(message.begin(), message.end());
  auto h = wire::load<Header>(msg, 0);
  h.msg_id = next_id_++;
  std::memcpy(msg.data(), &h, sizeof h);
  if (auto ok = sys::send_with_fds(sock_.get(), msg, fds); !ok) return fail(ok.error().context("sending"));
  const auto deadline = Clock::now() + opts_.timeout;
  RawReply reply;
  std::array<sys::UniqueFd, sys::kMaxScmFds> got;
  // The header, then the rest; fds may come with either part.
  auto receive = [&](std::span<std::uint8_t> into) -> Result<void> {
    std::size_t have = 0;
    while (have < into.size()) {
      if (auto ok = wait_readable(sock_.get(), deadline); !ok) return fail(ok.error());
      auto r = sys::recv_with_fds(sock_.get(), into.subspan(have), got);
      if (!r) return fail(r.error());
      if (r->bytes == 0) return fail_errno(ECONNRESET, "the server closed the socket");
      for (std::size_t i = 0; i < r->fds; ++i) reply.fds.push_back(std::move(got[i]));
      have += r->bytes;
    }
    return {};
  };
  std::array<std::uint8_t, sizeof(Header)> head{};
  if (auto ok = receive(head); !ok) return fail(ok.error());
  std::memcpy(&reply.header, head.data(), sizeof reply.header);
  if (reply.header.msg_size < sizeof(Header) || reply.header.msg_size > kMaxMessageSize + (1u << 20))
    return fail_errno(EPROTO, "a reply of msg_size {}", reply.header.msg_size);
  reply.payload.resize(reply.header.msg_size - sizeof(Header));
  if (auto ok = receive(reply.payload); !ok) return fail(ok.error());
  if ((reply.header.flags & kTypeMask) != kTypeReply)
    return fail_errno(EPROTO, "the server sent a command ({}) where a reply was due", reply.header.command);
  if (reply.header.msg_id != h.msg_id || reply.header.command != h.command)
    return fail_errno(EPROTO, "reply to id {} command {}, expected id {} command {}", reply.header.msg_id,
                      reply.header.command, h.msg_id, h.command);
  return reply;
}

Result<RawReply> Client::request(std::uint16_t command, std::span<const std::uint8_t> payload, std::span<const int> fds) {
  std::vector<std::uint8_t> msg(sizeof(Header));
  msg.insert(msg.end(), payload.begin(), payload.end());
  const Header h{0, command, static_cast<std::uint32_t>(msg.size()), kTypeCommand, 0};
  std::memcpy(msg.data(), &h, sizeof h);
  auto r = call(msg, fds);
  if (!r) return fail(r.error().context(command_name(command)));
  if (r->header.flags & kError) {
    const int e = static_cast<int>(r->header.error);
    return fail_errno(e ? e : EIO, "{}: the server answered {} ({})", command_name(command), std::strerror(e), e);
  }
  return r;
}

Result<std::vector<std::uint8_t>> Client::region_info_raw(unsigned index, std::uint32_t argsz) {
  vfio_region_info q{};
  q.argsz = argsz;
  q.index = index;
  std::vector<std::uint8_t> p;
  put(p, q);
  auto r = request(kDeviceGetRegionInfo, p);
  if (!r) return fail(r.error());
  return std::move(r->payload);
}

Result<RegionInfoView> Client::region_info(RegionIndex index) {
  auto it = regions_.find(index.value());
  if (it == regions_.end()) {
    // Asked once with room for a generous chain; asked again when the
    // server says it needs more.
    std::uint32_t argsz = 4096;
    for (int attempt = 0; attempt < 3; ++attempt) {
      vfio_region_info q{};
      q.argsz = argsz;
      q.index = index.value();
      std::vector<std::uint8_t> p;
      put(p, q);
      auto r = request(kDeviceGetRegionInfo, p);
      if (!r) return fail(r.error());
      if (r->payload.size() < sizeof q)
        return fail_errno(EPROTO, "GET_REGION_INFO {} reply of {} bytes", index, r->payload.size());
      const auto a = wire::load<vfio_region_info>(r->payload, 0);
      if (a.argsz > argsz) {
        argsz = a.argsz;
        continue;
      }
      Region reg{std::move(r->payload), {}};
      if (!r->fds.empty()) reg.fd = std::move(r->fds.front());
      it = regions_.emplace(index.value(), std::move(reg)).first;
      break;
    }
    if (it == regions_.end()) return fail_errno(EMSGSIZE, "GET_REGION_INFO {}: the info keeps growing", index);
  }
  return RegionInfoView{it->second.bytes, it->second.fd.get()};
}

Result<IrqInfo> Client::irq(unsigned index) const {
  if (index >= irqs_.size()) return fail_errno(EINVAL, "IRQ index {} of {}", index, irqs_.size());
  return irqs_[index];
}

Result<std::size_t> Client::read(RegionIndex index, std::uint64_t offset, std::span<std::uint8_t> out) {
  std::size_t done = 0;
  while (done < out.size()) {
    const auto n = static_cast<std::uint32_t>(std::min<std::size_t>(out.size() - done, server_xfer_));
    std::vector<std::uint8_t> p;
    put(p, RegionAccess{offset + done, index.value(), n});
    auto r = request(kRegionRead, p);
    if (!r) return done ? Result<std::size_t>(done) : fail(r.error());
    if (r->payload.size() < sizeof(RegionAccess)) return fail_errno(EPROTO, "REGION_READ reply of {} bytes", r->payload.size());
    const auto a = wire::load<RegionAccess>(r->payload, 0);
    const std::size_t got = std::min<std::size_t>({a.count, r->payload.size() - sizeof a, n});
    std::memcpy(out.data() + done, r->payload.data() + sizeof a, got);
    done += got;
    if (got < n) break;  // a short read: the server says where it stopped
  }
  return done;
}

Result<std::size_t> Client::write(RegionIndex index, std::uint64_t offset, std::span<const std::uint8_t> in) {
  std::size_t done = 0;
  while (done < in.size()) {
    const auto n = static_cast<std::uint32_t>(std::min<std::size_t>(in.size() - done, server_xfer_));
    std::vector<std::uint8_t> p;
    put(p, RegionAccess{offset + done, index.value(), n});
    p.insert(p.end(), in.begin() + static_cast<std::ptrdiff_t>(done), in.begin() + static_cast<std::ptrdiff_t>(done + n));
    auto r = request(kRegionWrite, p);
    if (!r) return done ? Result<std::size_t>(done) : fail(r.error());
    if (r->payload.size() < sizeof(RegionAccess)) return fail_errno(EPROTO, "REGION_WRITE reply of {} bytes", r->payload.size());
    const auto got = std::min<std::size_t>(wire::load<RegionAccess>(r->payload, 0).count, n);
    done += got;
    if (got < n) break;
  }
  return done;
}

Result<void> Client::reset() {
  auto r = request(kDeviceReset, {});
  if (!r) return fail(r.error());
  return {};
}

Result<void> Client::dma_map(const DmaMapping& m) {
  std::vector<std::uint8_t> p;
  put(p, DmaMapRequest{sizeof(DmaMapRequest),
                       (m.readable ? static_cast<std::uint32_t>(VFIO_DMA_MAP_FLAG_READ) : 0u) |
                           (m.writable ? static_cast<std::uint32_t>(VFIO_DMA_MAP_FLAG_WRITE) : 0u),
                       m.offset, m.iova.value(), m.size});
  std::array<int, 1> fd{m.fd};
  auto r = request(kDmaMap, p, m.fd >= 0 ? std::span<const int>(fd) : std::span<const int>());
  if (!r) return fail(r.error());
  return {};
}

Result<void> Client::dma_unmap(Iova iova, std::uint64_t size) {
  std::vector<std::uint8_t> p;
  put(p, DmaUnmapRequest{sizeof(DmaUnmapRequest), 0, iova.value(), size});
  auto r = request(kDmaUnmap, p);
  if (!r) return fail(r.error());
  return {};
}

Result<void> Client::set_irqs(const IrqSet& s) {
  std::vector<std::uint8_t> p;
  put(p, SetIrqsRequest{static_cast<std::uint32_t>(sizeof(SetIrqsRequest) + s.bools.size()), s.flags, s.index,
                        s.start, s.count});
  p.insert(p.end(), s.bools.begin(), s.bools.end());
  auto r = request(kDeviceSetIrqs, p, s.fds);
  if (!r) return fail(r.error());
  return {};
}

}  // namespace nvgrace::vfio::user
