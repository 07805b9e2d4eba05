// The descriptors of a hand-over from one server process to its successor
// (nvgrace-model.md R41), named in the hand-over's document by their index
// here. Saving collects borrowed descriptors; restoring owns the ones that
// arrived until each is taken, once.
// Thread-safety: none; one owner.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "nvgrace/common/result.hpp"
#include "nvgrace/sys/fd.hpp"

namespace nvgrace::sys {

class FdTable {
 public:
  FdTable() = default;
  // Restoring: the descriptors that came, in index order.
  explicit FdTable(std::vector<UniqueFd> owned) : owned_(std::move(owned)) {}

  // Saving: a descriptor to hand over (borrowed: it must outlive the
  // hand-over); returns its index.
  std::uint32_t add(int fd) {
    borrowed_.push_back(fd);
    return static_cast<std::uint32_t>(borrowed_.size() - 1);
  }
  [[nodiscard]] std::span<const int> borrowed() const { return borrowed_; }

  // Restoring: descriptor `index`, owned by the caller from here on. EBADF
  // for an index out of range or one already taken.
  [[nodiscard]] Result<UniqueFd> take(std::uint64_t index);
  // Descriptors that arrived and were never taken (the caller closes them).
  [[nodiscard]] std::size_t untaken() const;

 private:
  std::vector<int> borrowed_;
  std::vector<UniqueFd> owned_;
};

}  // namespace nvgrace::sys
