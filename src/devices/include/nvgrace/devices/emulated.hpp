// Emulated Grace GPUs, assembled in one place for every command, test,
// benchmark and fuzz target: a built-in profile becomes the physical
// function as its host sees it (vfio/emulated, R37), and - in the guest's
// view - the variant over it (vfio/variant) with its memory source, a
// sparse memfd or a file (R16-R20).
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>

#include "nvgrace/common/result.hpp"
#include "nvgrace/pciemu/emulated.hpp"
#include "nvgrace/vfio/emulated/function.hpp"
#include "nvgrace/vfio/variant/variant.hpp"

namespace nvgrace::devices {

struct EmulatedOptions {
  std::string profile = "gh200";
  unsigned index = 0;                               // which GPU: its memory base follows it (docs/profiles.md)
  std::optional<std::uint64_t> mem_size;            // instead of the profile's
  std::optional<std::filesystem::path> memory_file; // back the memory with this file instead of a memfd
  std::string name;                                 // for messages and the memfd's name; default gpu<index>
  vfio::emulated::Timing timing;                    // when its readiness registers turn ready (R20, R31)
  vfio::ReadinessOptions ready;                     // how the variant waits for them
};

// The physical function only (the host's view, R37): no fake BARs, no GPU
// memory behind any BAR.
struct EmulatedFunction {
  pciemu::EmulatedGpu gpu;
  std::unique_ptr<vfio::emulated::EmulatedFunction> function;
};
[[nodiscard]] Result<EmulatedFunction> make_emulated_function(const EmulatedOptions& o);

// The guest's view: the variant over the emulated function and its memory.
struct EmulatedDevice {
  pciemu::EmulatedGpu gpu;
  std::unique_ptr<vfio::Variant> device;
  std::string memory;  // what backs the memory, one line (MemoryBackend::describe)
};
// Errors: the profile's numbers cannot make a device (a --mem-size the
// layout refuses: `bad_size` is set) or the memory source cannot be had.
struct EmulatedError {
  Error error;
  bool bad_size = false;
};
[[nodiscard]] expected<EmulatedDevice, EmulatedError> make_emulated_device(const EmulatedOptions& o);

}  // namespace nvgrace::devices
