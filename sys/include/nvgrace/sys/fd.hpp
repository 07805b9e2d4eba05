// RAII for kernel resources (style.md, point 5): file descriptors and memory
// mappings. Both are move-only; destruction releases the resource.
// Thread-safety: none; each object has one owner.
#pragma once

#include <sys/mman.h>
#include <unistd.h>

#include <cstdint>
#include <utility>

#include "nvgrace/common/result.hpp"
#include "nvgrace/common/types.hpp"

namespace nvgrace::sys {

class UniqueFd {
 public:
  UniqueFd() = default;
  explicit UniqueFd(int fd) : fd_(fd) {}
  UniqueFd(UniqueFd&& o) noexcept : fd_(std::exchange(o.fd_, -1)) {}
  UniqueFd& operator=(UniqueFd&& o) noexcept {
    if (this != &o) {
      reset();
      fd_ = std::exchange(o.fd_, -1);
    }
    return *this;
  }
  UniqueFd(const UniqueFd&) = delete;
  UniqueFd& operator=(const UniqueFd&) = delete;
  ~UniqueFd() { reset(); }

  [[nodiscard]] int get() const { return fd_; }
  [[nodiscard]] explicit operator bool() const { return fd_ >= 0; }
  void reset() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }
  // Gives up ownership without closing.
  [[nodiscard]] int release() { return std::exchange(fd_, -1); }

 private:
  int fd_ = -1;
};

// dup(2) with FD_CLOEXEC: a second owner of the same open file.
[[nodiscard]] Result<UniqueFd> duplicate(int fd);

// A mapping of [fd_offset, fd_offset + length) of an fd (or anonymous memory).
class Mapping {
 public:
  Mapping() = default;
  Mapping(Mapping&& o) noexcept
      : base_(std::exchange(o.base_, nullptr)), reserved_(std::exchange(o.reserved_, 0)),
        data_(std::exchange(o.data_, nullptr)), length_(std::exchange(o.length_, 0)) {}
  Mapping& operator=(Mapping&& o) noexcept {
    if (this != &o) {
      reset();
      base_ = std::exchange(o.base_, nullptr);
      reserved_ = std::exchange(o.reserved_, 0);
      data_ = std::exchange(o.data_, nullptr);
      length_ = std::exchange(o.length_, 0);
    }
    return *this;
  }
  Mapping(const Mapping&) = delete;
  Mapping& operator=(const Mapping&) = delete;
  ~Mapping() { reset(); }

  // Maps `length` bytes so that the address is a multiple of `align` (a power
  // of two), which lets the kernel use huge page-table entries (R24). `fd` < 0
  // maps anonymous zero memory. The reservation is made with PROT_NONE and
  // NORESERVE, then the aligned part mapped over it with MAP_FIXED.
  [[nodiscard]] static Result<Mapping> map(int fd, std::uint64_t fd_offset, std::uint64_t length, std::uint64_t align,
                                           int prot, int flags);

  [[nodiscard]] std::uint8_t* data() const { return data_; }
  [[nodiscard]] HostVirtAddr address() const { return HostVirtAddr(data_); }
  [[nodiscard]] std::uint64_t size() const { return length_; }
  void reset();

 private:
  void* base_ = nullptr;       // the whole reservation
  std::size_t reserved_ = 0;
  std::uint8_t* data_ = nullptr;  // aligned start
  std::uint64_t length_ = 0;
};

// R24: the alignment a mapping of `size` bytes should have: the smaller of its
// power-of-two size (rounded up) and 1 GiB, and at least a page.
[[nodiscard]] std::uint64_t huge_alignment(std::uint64_t size);

// The system's page size (sysconf): 4 KiB here, 64 KiB on many Grace hosts.
[[nodiscard]] std::uint64_t page_size();

}  // namespace nvgrace::sys
