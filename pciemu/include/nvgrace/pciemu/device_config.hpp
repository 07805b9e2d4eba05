// The config space of an emulated (or profiled) Grace GPU: the data tables
// that fill a ConfigSpace, and the BAR state a VMM needs (R11-R15, R21).
//
// Thread-safety: none; the owner serialises accesses. Ownership: plain value.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <vector>

#include "nvgrace/common/result.hpp"
#include "nvgrace/pciemu/config_space.hpp"
#include "nvgrace/pciemu/bars.hpp"

namespace nvgrace::pciemu {

// Where the emulated capabilities live. The offsets are invented but typical;
// docs/config-space.md lists every invented byte.
namespace cfg {
inline constexpr std::uint16_t kPmCap = 0x60;
inline constexpr std::uint16_t kMsixCap = 0x68;
inline constexpr std::uint16_t kExpCap = 0x78;
inline constexpr std::uint16_t kAerCap = 0x100;
inline constexpr std::uint16_t kDvsecCap = 0x148;
inline constexpr std::uint16_t kCxlDvsecCap = 0x160;  // only with DeviceConfigParams::cxl_active_timeout
inline constexpr std::uint8_t kRevision = 0xa1;
inline constexpr std::uint16_t kMsixVectors = 6;
inline constexpr std::uint32_t kMsixTableOffset = 0xB90000;  // in BAR0
inline constexpr std::uint32_t kMsixPbaOffset = 0xBA0000;    // in BAR0
}  // namespace cfg

struct DeviceConfigParams {
  std::uint16_t device_id = 0;
  std::uint16_t subsystem_vendor = 0;
  std::uint16_t subsystem_id = 0;
  bool mig_hw_bug = false;        // the DVSEC's MIG bit is its inverse (R2)
  std::vector<GuestBar> bars;     // the BARs the guest sees (visible_bars)
  std::uint32_t rom_size = 0;     // 0: no expansion ROM; else a power of two >= 2 KiB
  // A CXL Device DVSEC (R31, parts after Blackwell), with this
  // Memory_Active_Timeout code (0..7) in Range 1 Size Low; unset: none.
  std::optional<std::uint8_t> cxl_active_timeout;
};

// One BAR as the guest has programmed it.
struct BarState {
  BarIndex index;
  BarRole role = BarRole::device;
  std::uint64_t size = 0;
  std::uint64_t address = 0;  // what the BAR decodes now (flag bits removed)
  bool sizing = false;        // every address bit of the whole BAR (both halves) set: a size probe (R21)
};

// A device's BARs (at most six), returned by value without allocating: the
// VMM asks for them on every config write (R21).
class BarStates {
 public:
  void push_back(const BarState& b) { bars_[count_++] = b; }
  [[nodiscard]] std::size_t size() const { return count_; }
  [[nodiscard]] const BarState& operator[](std::size_t i) const { return bars_[i]; }
  [[nodiscard]] const BarState* begin() const { return bars_.data(); }
  [[nodiscard]] const BarState* end() const { return bars_.data() + count_; }

 private:
  std::array<BarState, 6> bars_{};
  std::size_t count_ = 0;
};

class DeviceConfig {
 public:
  [[nodiscard]] static Result<DeviceConfig> build(const DeviceConfigParams& params);

  // Guest accesses (R12, R13, R15): any width 1/2/4 at any offset in 4 KiB.
  [[nodiscard]] Result<std::uint32_t> read(std::size_t offset, std::size_t width) const {
    return space_.read(offset, width);
  }
  Result<void> write(std::size_t offset, std::size_t width, std::uint32_t value) {
    return space_.write(offset, width, value);
  }

  // Device open and device reset: every register, fake BARs included, back to
  // its power-on value (R14).
  void reset() { space_.reset(); }

  [[nodiscard]] bool memory_decode() const;
  [[nodiscard]] BarStates bars() const;
  [[nodiscard]] std::optional<BarState> bar(BarIndex index) const;

  [[nodiscard]] const ConfigSpace& space() const { return space_; }
  [[nodiscard]] ConfigSpace& space() { return space_; }
  [[nodiscard]] const DeviceConfigParams& params() const { return params_; }

 private:
  DeviceConfig() = default;
  ConfigSpace space_;
  DeviceConfigParams params_;
};

// The register tables, exposed for tests and for docs: header, then the
// capability blocks. BAR and ROM rows depend on `params`.
[[nodiscard]] std::vector<RegDef> config_registers(const DeviceConfigParams& params);

}  // namespace nvgrace::pciemu
