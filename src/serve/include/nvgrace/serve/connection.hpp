// One vfio-user client on one socket, served in its own thread: messages are
// read with one recvmsg into a buffer the connection owns (so a request costs
// one recvmsg and its reply one sendmsg), handed to the session, and the reply
// built in place in another owned buffer is sent. Nothing is allocated per
// message.
//
// SCM_RIGHTS fds: Linux ends a recvmsg right after the data that carried fds,
// and a vfio-user client sends each message with one sendmsg whose first bytes
// carry its fds, so the fds of a read belong to the last message that starts
// inside that read.
//
// Hand-over (R41): request_pause() from another thread, then a signal to the
// serving thread (any handler installed without SA_RESTART), makes serve()
// return at the next message boundary - the message being answered is
// finished first - with the stream's unparsed bytes and fds kept; save()
// then describes the connection for a successor process, whose restore()
// continues it, or serve() may simply be called again.
//
// Journaled (crash survival, R41, with a keeper process holding the
// descriptors): each message is peeked, answered, and only then taken from
// the socket; a message that changes state first has the slot's record
// published with its reply, and the journal word names each message just
// before its reply goes out. A successor started after a death finds the
// unanswered message still in the socket (and handles it), or its reply in
// the record (and sends that), or - by the journal word - that it was
// answered already (and takes it from the socket): the message in flight is
// neither handled nor answered twice. One window remains: a death between
// the journal word's store and the reply's system call (a few
// instructions) loses that reply, and the client's request times out.
//
// Thread-safety: serve() runs in one thread; stop() and request_pause() may
// be called from any other thread (stop() shuts the socket down, which ends
// serve()).
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>
#include <spdlog/spdlog.h>

#include "nvgrace/sys/fd.hpp"
#include "nvgrace/sys/fd_table.hpp"
#include "nvgrace/vfio/user/reply.hpp"
#include "nvgrace/vfio/user/session.hpp"

namespace nvgrace::serve {

class Connection {
 public:
  Connection(std::string name, sys::UniqueFd fd, vfio::Function& device, std::shared_ptr<spdlog::logger> log,
             std::atomic<std::uint64_t>& messages);

  // A connection a predecessor process saved (R41): same socket, same
  // stream position, the session as it was.
  [[nodiscard]] static Result<std::unique_ptr<Connection>> restore(std::string name, const nlohmann::json& state,
                                                                   sys::FdTable& fds, vfio::Function& device,
                                                                   std::shared_ptr<spdlog::logger> log,
                                                                   std::atomic<std::uint64_t>& messages);

  // A reply published before it is sent (journaled mode).
  struct Pending {
    std::uint64_t tag = 0;  // message_tag() of the message it answers
    std::span<const std::uint8_t> reply;  // empty: the message asked for none
  };
  struct Journal {
    std::atomic_ref<std::uint64_t> replied;  // the store's journal word: message_tag() of the last answered
    // Publishes the slot's record; `pending`: with this reply (may be null).
    std::function<Result<void>(const Pending* pending)> publish;
  };
  // Journaled, a connection's DMA table is republished with each change:
  // it holds at most this many mappings (announced as max_dma_maps).
  static constexpr std::uint32_t kJournaledMaxDmaMaps = 1024;
  void set_journal(Journal j) {
    journal_.emplace(std::move(j));
    session_.cap_dma_maps(kJournaledMaxDmaMaps);
  }

  struct Ended {
    std::string why;      // one line
    bool paused = false;  // request_pause(): nothing ended, serve() may go on
  };
  // Serves until the client leaves, breaks the protocol, or stop(); returns
  // why it ended, one line. The session's mappings and interrupts are still
  // in place: call teardown() next (R30). Or until a pause was requested.
  [[nodiscard]] Ended serve();
  void request_pause() { pause_.store(true, std::memory_order_release); }
  void clear_pause() { pause_.store(false, std::memory_order_release); }
  // After serve() returned paused: the socket, the unparsed bytes and fds,
  // the session (its descriptors borrowed into `fds`).
  [[nodiscard]] nlohmann::json save(sys::FdTable& fds, const Pending* pending = nullptr) const;
  [[nodiscard]] vfio::user::Teardown teardown() { return session_.teardown(); }
  void stop();
  // Whether the client has closed its end (any thread; reads nothing).
  [[nodiscard]] bool peer_closed() const;

 private:
  struct FdBatch {
    std::uint64_t start = 0, end = 0;  // stream positions of the read that brought them
    std::array<sys::UniqueFd, vfio::user::kMaxMsgFds> fds;
    std::size_t count = 0;
  };
  [[nodiscard]] bool send_reply();
  [[nodiscard]] Ended serve_journaled();
  // Takes `size` bytes (one answered message) and their fds from the socket.
  [[nodiscard]] bool consume(std::size_t size);
  // Moves the fds that belong to the message at [start, end) into fds_.
  [[nodiscard]] bool claim_fds(std::uint64_t start, std::uint64_t end);

  std::string name_;
  sys::UniqueFd fd_;
  std::shared_ptr<spdlog::logger> log_;
  std::atomic<std::uint64_t>& messages_;
  vfio::user::Session session_;
  vfio::user::ReplyBuffer out_;
  std::unique_ptr<std::uint8_t[]> in_;
  std::size_t begin_ = 0, end_ = 0;  // unparsed bytes in in_
  std::uint64_t base_ = 0;           // stream position of in_[0]
  std::array<FdBatch, 2> batches_;   // fds received and not yet claimed
  std::array<sys::UniqueFd, vfio::user::kMaxMsgFds> fds_;  // the current message's
  std::size_t nfds_ = 0;
  std::atomic<bool> pause_{false};
  std::optional<Journal> journal_;
  struct Restored {
    std::uint64_t tag = 0;
    std::vector<std::uint8_t> reply;
  };
  std::optional<Restored> pending_;  // a reply the predecessor published and may not have sent
  bool after_death_ = false;         // restored from a record that may have had a message in flight
  // What the journal word and a pending reply name a message by: its id and
  // an FNV-1a checksum of its bytes.
  [[nodiscard]] static std::uint64_t message_tag(std::span<const std::uint8_t> message);
};

}  // namespace nvgrace::serve
