// An emulated Grace GPU's PCI function as its host sees it before any
// variant driver (nvgrace-model.md R37): the identity, the real BARs (GH200:
// BAR0 16 MiB, BAR2 128 GiB, BAR4 32 MiB), the capability chain with the MIG
// DVSEC (R2) and, on parts that have one, the CXL Device DVSEC (R31), and the
// readiness registers of R20 in BAR0. None of the GPU's memory is behind a
// BAR: on a Grace host it is host memory the firmware describes (R3).
//
// Reset keeps the config space, as vfio-pci's reset (which saves and restores
// it around the function reset) does. BAR0 is a register file in a memfd
// (zero until written, cleared by reset; handed to a successor server as it
// is, R41) whose R20
// status registers read 0xFF once the GPU is ready; the function's other BARs
// have nothing behind them: reads are all-ones, writes dropped. Readiness is
// emulated: the status registers (or the CXL DVSEC's MEM_INFO_VALID and
// MEM_ACTIVE) turn ready `ready_after` after creation and after each reset.
// No DMA engine and no interrupt source: mappings and eventfds are accepted
// and not used.
//
// Concurrency: every call may come from any thread; config space and BAR0
// are serialised internally. Ownership: the function owns its config space
// and its BAR0 register file.
#pragma once

#include <chrono>
#include <memory>
#include <mutex>
#include <optional>
#include <vector>

#include "nvgrace/pciemu/device_config.hpp"
#include "nvgrace/sys/fd.hpp"
#include "nvgrace/vfio/function.hpp"
#include "nvgrace/vfio/regions.hpp"

namespace nvgrace::vfio::emulated {

// How the emulated GPU's readiness registers behave (R20, R31).
struct Timing {
  std::chrono::milliseconds ready_after{0};   // after creation and after each reset
  std::chrono::milliseconds active_after{0};  // CXL DVSEC: MEM_ACTIVE this long after MEM_INFO_VALID
};

class EmulatedFunction final : public Function {
 public:
  // `params`: the function's config space (its BARs are the real ones).
  [[nodiscard]] static Result<std::unique_ptr<EmulatedFunction>> create(const pciemu::DeviceConfigParams& params,
                                                                        Timing timing = {});

  [[nodiscard]] DeviceInfo info() const override;
  [[nodiscard]] Result<RegionInfoView> region_info(RegionIndex index) override;
  [[nodiscard]] Result<IrqInfo> irq(unsigned index) const override;
  [[nodiscard]] Result<std::size_t> read(RegionIndex index, std::uint64_t offset, std::span<std::uint8_t> out) override;
  [[nodiscard]] Result<std::size_t> write(RegionIndex index, std::uint64_t offset,
                                          std::span<const std::uint8_t> in) override;
  // Config space to power-on values, BAR0's registers cleared, readiness
  // re-armed (R14, R20).
  Result<void> reset() override;
  [[nodiscard]] const DmaLimits& dma_limits() const override { return dma_limits_; }
  [[nodiscard]] Result<void> dma_map(const DmaMapping&) override { return {}; }
  Result<void> dma_unmap(Iova, std::uint64_t) override { return {}; }
  [[nodiscard]] Result<void> set_irqs(const IrqSet&) override { return {}; }

  // R41: config space, BAR0's memfd, the readiness clock and the counters.
  [[nodiscard]] Result<nlohmann::json> save_state(sys::FdTable& fds) const override;
  [[nodiscard]] Result<void> restore_state(const nlohmann::json& state, sys::FdTable& fds) override;

  // Writes dropped because nothing is behind them (BARs other than BAR0).
  [[nodiscard]] std::uint64_t dropped_writes() const;

 private:
  explicit EmulatedFunction(pciemu::DeviceConfig config) : config_(std::move(config)) {}
  [[nodiscard]] std::uint32_t status_reg() const;        // R20: 0xFF once ready_after has passed
  [[nodiscard]] std::uint32_t cxl_status(std::uint32_t stored) const;  // R31
  void overlay_live_registers(std::uint64_t offset, std::uint8_t* buf, std::size_t count) const;
  Result<std::size_t> access(RegionIndex index, std::uint64_t offset, std::uint8_t* buf, std::size_t len,
                             bool is_write);

  pciemu::DeviceConfig config_;
  std::vector<RegionDesc> regions_;
  std::vector<std::vector<std::uint8_t>> region_info_;  // per region: vfio_region_info + caps
  DmaLimits dma_limits_;
  sys::UniqueFd bar0_fd_;  // BAR0 register file: a sparse memfd, zero until written
  sys::Mapping bar0_;      // ...mapped shared
  Timing timing_;
  std::optional<unsigned> cxl_dvsec_;
  mutable std::mutex mutex_;  // config space, BAR0, armed_at_, dropped_
  std::chrono::steady_clock::time_point armed_at_;
  std::uint64_t dropped_ = 0;
};

}  // namespace nvgrace::vfio::emulated
