// The oracle probe (nvgrace-model.md R39): one list of operations driven
// through a device's user interface - the kernel's VFIO ioctls, or
// vfio-user - and written as a canonical transcript, so that the kernel's
// nvgrace-gpu driver, `nvgrace serve --host` over a real function and
// nvgrace's emulated GPU can be compared byte for byte with diff(1).
//
// The operations (docs/oracle.md lists them with what each shows):
//   device info; every region's info with its capability chain, asked with
//   argsz 32 and in full; every IRQ index;
//   config space 0..0xFFF at widths 1, 2 and 4 (every offset) after
//   DEVICE_RESET, after all-ones sizing writes to each BAR dword, after
//   placements (one of a 1 GiB BAR at an address whose low dword equals its
//   size mask, R21), after 1- and 2-byte writes into the BAR registers and
//   4-byte writes straddling 0x1C/0x20 and 0x24/0x28 - with memory decode
//   off, then on;
//   reads and writes of every BAR region at 0, at the memory's end minus 8,
//   across it, at the BAR's end and past it; mmap inside and past each
//   region's sparse area; a load through one mapping before and after memory
//   decode goes off and on (the kernel zaps and must refault it); the
//   readiness path (a fake-BAR read after reset
//   with memory decode off, then on); DEVICE_RESET and the registers after
//   it; an ioeventfd request.
//
// Transport facts that cannot agree are kept out of the compared lines:
// region offsets (the kernel's index << 40, a vfio-user server's own) and
// where the device is; they are written on '#' lines.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "nvgrace/common/result.hpp"
#include "nvgrace/vfio/function.hpp"

namespace nvgrace::probe {

// What the probe drives: a function, and the two requests the Function
// interface does not carry.
class Target {
 public:
  virtual ~Target() = default;
  [[nodiscard]] virtual vfio::Function& function() = 0;
  // "vfio (group)", "vfio (cdev)", "vfio-user": for the '#' header.
  [[nodiscard]] virtual std::string describe() const = 0;
  // GET_REGION_INFO with exactly `argsz`, the answer as it came.
  [[nodiscard]] virtual Result<std::vector<std::uint8_t>> region_info_raw(unsigned index, std::uint32_t argsz) = 0;
  // VFIO_DEVICE_IOEVENTFD; nullopt where the transport has no such request
  // (vfio-user).
  [[nodiscard]] virtual std::optional<Result<void>> ioeventfd(std::uint64_t offset, std::uint32_t flags,
                                                              std::uint64_t data, int fd) = 0;
};

struct Options {
  // Every config offset at every width in every state (the full list);
  // false: only the aligned dwords, for a quick look.
  bool every_offset = true;
};

// The transcript. Errors are only the ones that stop the probe (the device
// went away); every operation's own failure is part of the transcript.
[[nodiscard]] Result<std::string> run(Target& target, const Options& options = {});

// The lines two transcripts are compared on: every line that is not a '#'
// comment.
[[nodiscard]] std::vector<std::string> compared_lines(std::string_view transcript);

}  // namespace nvgrace::probe
