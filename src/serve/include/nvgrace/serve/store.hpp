// Where a serving process keeps, at every moment, what its successor needs
// should it die (nvgrace-model.md R41): a memfd held by the keeper process
// (keeper.hpp), with per socket
//   - the last record the server published: the device's state and its
//     connection's (a hand-over document, handover.hpp), in two copies, the
//     new one written beside the current one and then made current, so a
//     death mid-write leaves the previous record whole;
//   - a journal word: which message was answered last (its id and a
//     checksum of its bytes), stored just before its reply is sent.
// A process that dies cannot tear a store to memory, and the memory
// outlives it: nothing published is lost.
//
// Thread-safety: one writer per socket at a time (its connection's thread,
// or the main thread while it has none); read by a successor once the
// writer is dead.
#pragma once

#include <atomic>
#include <cstdint>
#include <span>
#include <vector>

#include "nvgrace/common/result.hpp"
#include "nvgrace/sys/fd.hpp"

namespace nvgrace::serve {

class StateStore {
 public:
  // Room for one record (the device, the connection, a pending reply).
  static constexpr std::uint64_t kRecordRoom = 1ull << 20;
  static constexpr std::size_t kMaxSlots = 64;

  [[nodiscard]] static Result<StateStore> create(std::size_t slots);
  // A store another process made (its memfd, inherited).
  [[nodiscard]] static Result<StateStore> attach(sys::UniqueFd fd);

  [[nodiscard]] int fd() const { return fd_.get(); }
  [[nodiscard]] std::size_t slots() const { return slots_; }
  // Writes `record` as the slot's new current record.
  [[nodiscard]] Result<void> publish(std::size_t slot, std::span<const std::uint8_t> record);
  // The slot's current record; empty when none was published.
  [[nodiscard]] std::vector<std::uint8_t> record(std::size_t slot) const;
  // The journal word: the tag (connection.hpp) of the last message answered
  // on the slot's connection; 0 when none (a new connection).
  [[nodiscard]] std::atomic_ref<std::uint64_t> replied(std::size_t slot) const;

 private:
  struct SlotHeader {
    std::uint64_t current;  // which copy is current (0/1); publishes count up from 2 (bit 0: the copy)
    std::uint64_t replied;
    std::uint64_t length[2];
  };
  StateStore(sys::UniqueFd fd, sys::Mapping map, std::size_t slots)
      : fd_(std::move(fd)), map_(std::move(map)), slots_(slots) {}
  [[nodiscard]] SlotHeader& header(std::size_t slot) const;
  [[nodiscard]] std::uint8_t* copy(std::size_t slot, unsigned which) const;

  sys::UniqueFd fd_;
  sys::Mapping map_;
  std::size_t slots_ = 0;
};

}  // namespace nvgrace::serve
