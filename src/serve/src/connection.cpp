#include "nvgrace/serve/connection.hpp"

#include <poll.h>
#include <sys/socket.h>

#include <cstring>

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

Connection::Ended Connection::serve() {
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

nlohmann::json Connection::save(sys::FdTable& fds) const {
  nlohmann::json batches = nlohmann::json::array();
  for (const auto& b : batches_) {
    if (b.count == 0) continue;
    nlohmann::json list = nlohmann::json::array();
    for (std::size_t i = 0; i < b.count; ++i) list.push_back(fds.add(b.fds[i].get()));
    batches.push_back({{"start", b.start}, {"end", b.end}, {"fds", std::move(list)}});
  }
  return {{"socket", fds.add(fd_.get())},
          {"position", base_ + begin_},
          {"unparsed", vfio::state::binary(std::span(in_.get() + begin_, end_ - begin_))},
          {"fd_batches", std::move(batches)},
          {"session", session_.save()}};
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
  std::memcpy(c->in_.get(), unparsed->data(), unparsed->size());
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
  // Last: nothing fails after it, so a half-restored session is never torn
  // down (its DMA table is the predecessor's and still in force).
  if (auto ok = c->session_.restore(**session); !ok) return fail(ok.error());
  return c;
}

}  // namespace nvgrace::serve
