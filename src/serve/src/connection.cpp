#include "nvgrace/serve/connection.hpp"

#include <linux/vfio.h>
#include <poll.h>
#include <sys/socket.h>

#include <chrono>
#include <cstring>
#include <thread>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "nvgrace/sys/scm.hpp"
#include "nvgrace/vfio/state.hpp"

namespace nvgrace::serve {

namespace user = vfio::user;

namespace {
// Room for the largest message plus whatever a pipelining client sends
// behind it before the buffer is compacted.
constexpr std::size_t kInCapacity = user::kMaxMessageSize + 64 * 1024;
// Control buffer: more fds than announced are refused, but must fit to be seen.
constexpr std::size_t kFdRoom = user::kMaxMsgFds + 8;
}  // namespace

Connection::Connection(std::string name, sys::UniqueFd fd, vfio::Function& device,
                       std::shared_ptr<spdlog::logger> log, std::atomic<std::uint64_t>& messages)
    : name_(std::move(name)), fd_(std::move(fd)), log_(std::move(log)), messages_(messages), session_(device),
      in_(new std::uint8_t[kInCapacity]) {
  session_.set_detail(log_->should_log(spdlog::level::debug));
}

void Connection::stop() { ::shutdown(fd_.get(), SHUT_RDWR); }

bool Connection::peer_closed() const {
  pollfd p{fd_.get(), POLLRDHUP, 0};
  return ::poll(&p, 1, 0) == 1 && (p.revents & (POLLRDHUP | POLLHUP | POLLERR));
}

bool Connection::claim_fds(std::uint64_t start, std::uint64_t end) {
  nfds_ = 0;
  for (auto& b : batches_) {
    if (b.count == 0) continue;
    if (b.start <= start && start < b.end && b.end <= end) {
      for (std::size_t i = 0; i < b.count; ++i) fds_[nfds_++] = std::move(b.fds[i]);
      b.count = 0;
    } else if (b.end <= start) {
      // fds whose message has gone by: they came in the middle of one.
      for (std::size_t i = 0; i < b.count; ++i) b.fds[i].reset();
      b.count = 0;
      return false;
    }
  }
  return true;
}

bool Connection::send_reply() {
  out_.finish();
  const auto fds = out_.fds();
  return sys::send_with_fds(fd_.get(), out_.bytes(), std::span(fds.data(), fds.size())).has_value();
}

namespace {
// The messages whose handling changes what a successor must know: the
// negotiation, the DMA table, interrupts, reset, and config-space writes.
// Writes to the other regions land in memory the successor shares (GPU
// memory, BAR0's register file); what they change of the variant's own
// state (readiness seen, counters) a successor finds again by itself.
bool changes_state(const user::Header& h, std::span<const std::uint8_t> message) {
  switch (h.command) {
    case user::kVersion:
    case user::kDmaMap:
    case user::kDmaUnmap:
    case user::kDeviceSetIrqs:
    case user::kDeviceReset: return true;
    case user::kRegionWrite: {
      // struct vfio_user_region_access: offset (8 bytes), then the region.
      std::uint32_t region = VFIO_PCI_CONFIG_REGION_INDEX;
      if (message.size() >= sizeof h + 12) std::memcpy(&region, message.data() + sizeof h + 8, sizeof region);
      return region == VFIO_PCI_CONFIG_REGION_INDEX;
    }
    default: return false;
  }
}
}  // namespace

std::uint64_t Connection::message_tag(std::span<const std::uint8_t> message) {
  std::uint32_t h = 2166136261u;  // FNV-1a, 32 bits
  for (auto b : message) {
    h ^= b;
    h *= 16777619u;
  }
  std::uint16_t id = 0;
  std::memcpy(&id, message.data() + offsetof(user::Header, msg_id), sizeof id);
  return (std::uint64_t{1} << 63) | (std::uint64_t{h} << 16) | id;
}

bool Connection::consume(std::size_t size) {
  std::array<sys::UniqueFd, kFdRoom> got;
  auto r = sys::recv_with_fds(fd_.get(), std::span(in_.get(), size), got, true);
  if (!r || r->bytes != size) return false;
  base_ += size;
  return true;
}

Connection::Ended Connection::serve_journaled() {
  auto& j = *journal_;
  unsigned partial = 0;  // looks at an incomplete message so far
  for (;;) {
    if (pause_.load(std::memory_order_acquire)) return {"paused for a hand-over", true};
    // The front message, peeked: it stays in the socket until answered.
    std::array<sys::UniqueFd, kFdRoom> got;
    auto r = sys::recv_with_fds(fd_.get(), std::span(in_.get(), kInCapacity), got, false, true, true);
    if (!r) {
      if (r.error().err == EINTR) continue;
      return {r.error().message};
    }
    if (r->bytes == 0) return {"client disconnected"};
    if (r->truncated) return {fmt::format("protocol violation: more than {} fds with a message", kFdRoom)};
    user::Header h{};
    if (r->bytes >= sizeof h) std::memcpy(&h, in_.get(), sizeof h);
    if (r->bytes >= sizeof h && (h.msg_size < sizeof h || h.msg_size > user::kMaxMessageSize))
      return {fmt::format("protocol violation: message size {} outside {}..{}", h.msg_size, sizeof h,
                          user::kMaxMessageSize)};
    if (r->bytes < sizeof h || r->bytes < h.msg_size) {
      // Part of a message: the rest is on its way (a message larger than the
      // socket's buffer), or the client left in the middle of it. A peek
      // cannot wait for more, so look again soon, less often the longer it
      // takes.
      if (peer_closed()) return {fmt::format("client disconnected {} bytes into a message", r->bytes)};
      std::this_thread::sleep_for(std::chrono::microseconds(std::min<unsigned>(50u << std::min(partial++, 8u), 10000u)));
      continue;
    }
    partial = 0;
    // A message is known by its id and a checksum of its bytes: QEMU's ids
    // count up, and a client that reuses ids still sends other bytes.
    const std::uint64_t tag = message_tag(std::span(in_.get(), h.msg_size));
    if (after_death_) {
      // The first message after a predecessor died: it may be the one that
      // predecessor was dealing with.
      after_death_ = false;
      if (j.replied.load(std::memory_order_acquire) == tag) {
        // Answered (the journal word is stored just before a reply is
        // sent); the predecessor died before taking it from the socket.
        pending_.reset();
        if (!consume(h.msg_size)) return {"client went away"};
        continue;
      }
      if (pending_ && pending_->tag == tag) {
        // Its reply was published, not sent: send that one, never handle
        // the message twice.
        const auto reply = std::move(pending_->reply);
        pending_.reset();
        j.replied.store(tag, std::memory_order_release);
        if (!reply.empty() && !sys::send_with_fds(fd_.get(), reply, {}))
          return {"client went away while receiving a reply"};
        if (!consume(h.msg_size)) return {"client went away"};
        continue;
      }
    }
    pending_.reset();
    const std::size_t nfds = r->fds;
    for (std::size_t i = 0; i < nfds; ++i) fds_[i] = std::move(got[i]);
    const auto outcome = session_.handle(std::span(in_.get(), h.msg_size), std::span(fds_.data(), nfds), out_);
    for (std::size_t i = 0; i < nfds; ++i) fds_[i].reset();
    messages_.fetch_add(1, std::memory_order_relaxed);
    if (outcome == user::Outcome::close) return {"protocol violation: " + session_.log()};
    if (!session_.log().empty()) log_->debug("{}: {}", name_, session_.log());
    if (outcome == user::Outcome::reply) out_.finish();
    if (changes_state(h, std::span(in_.get(), h.msg_size))) {
      const Pending p{tag, outcome == user::Outcome::reply ? out_.bytes() : std::span<const std::uint8_t>()};
      if (auto ok = j.publish(&p); !ok)
        log_->warn("{}: publishing the state for a successor failed ({}); a crash now would lose it", name_,
                   ok.error().message);
    }
    // The journal word before the reply: once the client can have the reply
    // (and act on it - even by killing this process), a successor knows it
    // was answered. A death between this store and the send's system call
    // loses the reply (the client's request times out); never answering
    // twice is the better side of that window, as a stray reply puts QEMU's
    // client out of step for good.
    j.replied.store(tag, std::memory_order_release);
    if (outcome == user::Outcome::reply) {
      const auto fds = out_.fds();
      if (!sys::send_with_fds(fd_.get(), out_.bytes(), std::span(fds.data(), fds.size())))
        return {"client went away while receiving a reply"};
    }
    if (!consume(h.msg_size)) return {"client went away"};
  }
}

Connection::Ended Connection::serve() {
  if (journal_) return serve_journaled();
  for (;;) {
    // Every complete message already here.
    while (end_ - begin_ >= sizeof(user::Header)) {
      user::Header h{};
      std::memcpy(&h, in_.get() + begin_, sizeof h);
      if (h.msg_size < sizeof h || h.msg_size > user::kMaxMessageSize)
        return {fmt::format("protocol violation: message size {} outside {}..{}", h.msg_size, sizeof h,
                           user::kMaxMessageSize)};
      if (end_ - begin_ < h.msg_size) break;
      const std::uint64_t start = base_ + begin_;
      if (!claim_fds(start, start + h.msg_size))
        return {"protocol violation: fds arrived in the middle of a message"};
      const auto outcome =
          session_.handle(std::span(in_.get() + begin_, h.msg_size), std::span(fds_.data(), nfds_), out_);
      for (std::size_t i = 0; i < nfds_; ++i) fds_[i].reset();  // the ones the session did not keep
      begin_ += h.msg_size;
      messages_.fetch_add(1, std::memory_order_relaxed);
      if (outcome == user::Outcome::close) return {"protocol violation: " + session_.log()};
      if (!session_.log().empty()) log_->debug("{}: {}", name_, session_.log());
      if (outcome == user::Outcome::reply && !send_reply()) return {"client went away while receiving a reply"};
    }
    // Keep the unparsed tail at the front, so the largest message fits.
    if (begin_ == end_) {
      base_ += end_;
      begin_ = end_ = 0;
    } else if (begin_ > 0 && kInCapacity - end_ < user::kMaxMessageSize) {
      std::memmove(in_.get(), in_.get() + begin_, end_ - begin_);
      base_ += begin_;
      end_ -= begin_;
      begin_ = 0;
    }
    // R41: a pause is taken only here, between messages, and a signal wakes
    // the wait so that it is seen.
    if (pause_.load(std::memory_order_acquire)) return {"paused for a hand-over", true};
    std::array<sys::UniqueFd, kFdRoom> got;
    auto r = sys::recv_with_fds(fd_.get(), std::span(in_.get() + end_, kInCapacity - end_), got, false, true);
    if (!r) {
      if (r.error().err == EINTR) continue;
      return {r.error().message};
    }
    const std::size_t n = r->bytes;
    const std::size_t got_fds = r->fds + r->dropped;
    if (r->truncated) return {fmt::format("protocol violation: more than {} fds with a message", kFdRoom)};
    if (got_fds > user::kMaxMsgFds)
      return {fmt::format("protocol violation: {} fds with a message, at most {}", got_fds, user::kMaxMsgFds)};
    FdBatch* batch = nullptr;
    if (got_fds) {
      for (auto& b : batches_)
        if (b.count == 0) batch = &b;
      if (!batch) return {"protocol violation: fds with every message of a pipeline"};
      for (std::size_t i = 0; i < r->fds && batch->count < batch->fds.size(); ++i)
        batch->fds[batch->count++] = std::move(got[i]);
      batch->start = base_ + end_;
      batch->end = base_ + end_ + static_cast<std::uint64_t>(n);
    }
    if (n == 0)
      return {begin_ == end_ ? std::string("client disconnected")
                             : fmt::format("client disconnected {} bytes into a message", end_ - begin_)};
    end_ += n;
  }
}

nlohmann::json Connection::save(sys::FdTable& fds, const Pending* pending) const {
  nlohmann::json batches = nlohmann::json::array();
  for (const auto& b : batches_) {
    if (b.count == 0) continue;
    nlohmann::json list = nlohmann::json::array();
    for (std::size_t i = 0; i < b.count; ++i) list.push_back(fds.add(b.fds[i].get()));
    batches.push_back({{"start", b.start}, {"end", b.end}, {"fds", std::move(list)}});
  }
  nlohmann::json j{{"socket", fds.add(fd_.get())},
                   {"position", base_ + begin_},
                   {"unparsed", vfio::state::binary(std::span(in_.get() + begin_, end_ - begin_))},
                   {"fd_batches", std::move(batches)},
                   {"session", session_.save()}};
  // A reply a predecessor published and this process has not dealt with
  // yet travels on as it came.
  if (pending)
    j["pending"] = {{"tag", pending->tag}, {"reply", vfio::state::binary(pending->reply)}};
  else if (pending_)
    j["pending"] = {{"tag", pending_->tag}, {"reply", vfio::state::binary(pending_->reply)}};
  // Saved between messages (an upgrade's pause): nothing was in flight.
  if (pause_.load(std::memory_order_acquire)) j["between_messages"] = true;
  return j;
}

Result<std::unique_ptr<Connection>> Connection::restore(std::string name, const nlohmann::json& j, sys::FdTable& fds,
                                                        vfio::Function& device, std::shared_ptr<spdlog::logger> log,
                                                        std::atomic<std::uint64_t>& messages) {
  namespace state = vfio::state;
  auto socket = state::u64(j, "socket");
  auto position = state::u64(j, "position");
  auto unparsed = state::bytes(j, "unparsed");
  auto batches = state::array(j, "fd_batches");
  auto session = state::object(j, "session");
  if (!socket || !position || !unparsed || !batches || !session)
    return fail(!socket ? socket.error() : !position ? position.error() : !unparsed ? unparsed.error()
                : !batches ? batches.error() : session.error());
  if (unparsed->size() > kInCapacity || (*batches)->size() > 2)
    return fail_errno(EINVAL, "hand-over state: {} unparsed bytes and {} fd batches do not fit a connection",
                      unparsed->size(), (*batches)->size());
  auto fd = fds.take(*socket);
  if (!fd) return fail(fd.error());
  auto c = std::make_unique<Connection>(std::move(name), std::move(*fd), device, std::move(log), messages);
  if (!unparsed->empty()) std::memcpy(c->in_.get(), unparsed->data(), unparsed->size());
  c->begin_ = 0;
  c->end_ = unparsed->size();
  c->base_ = *position;
  std::size_t k = 0;
  for (const auto& b : **batches) {
    auto start = state::u64(b, "start"), end = state::u64(b, "end");
    auto list = state::array(b, "fds");
    if (!start || !end || !list) return fail(!start ? start.error() : !end ? end.error() : list.error());
    auto& batch = c->batches_[k++];
    if ((*list)->size() > batch.fds.size())
      return fail_errno(EINVAL, "hand-over state: {} fds in one batch", (*list)->size());
    batch.start = *start;
    batch.end = *end;
    for (const auto& i : **list) {
      if (!i.is_number_unsigned()) return fail_errno(EINVAL, "hand-over state: a batch names a non-number fd");
      auto f = fds.take(i.get<std::uint64_t>());
      if (!f) return fail(f.error());
      batch.fds[batch.count++] = std::move(*f);
    }
  }
  if (const auto p = j.find("pending"); p != j.end()) {
    auto tag = state::u64(*p, "tag");
    auto reply = state::bytes(*p, "reply");
    if (!tag || !reply) return fail_errno(EINVAL, "hand-over state: a pending reply without its tag or bytes");
    c->pending_ = Restored{*tag, std::vector<std::uint8_t>(reply->begin(), reply->end())};
  }
  // A record published while a message may have been in flight (the keeper
  // restarting after a death) rather than saved between messages.
  c->after_death_ = !j.value("between_messages", false);
  // Last: nothing fails after it, so a half-restored session is never torn
  // down (its DMA table is the predecessor's and still in force).
  if (auto ok = c->session_.restore(**session); !ok) return fail(ok.error());
  return c;
}

}  // namespace nvgrace::serve
