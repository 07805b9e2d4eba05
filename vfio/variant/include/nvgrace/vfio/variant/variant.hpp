// The nvgrace variant: one Function over any other Function, as the kernel's
// nvgrace-gpu is one variant driver over any GH200 function (the vfio-pci
// core's). Under it, a real function through the kernel's VFIO (vfio/host)
// or an emulated Grace GPU as the host sees it (vfio/emulated); beside it, a
// memory source (memory.hpp) holding the GPU memory the firmware describes.
// What it adds is what the driver adds (nvgrace-model.md):
//   - config space is the function's, except the fake BAR registers
//     0x18-0x1F (BAR2, resmem) and 0x20-0x27 (BAR4, usemem), which the
//     variant owns (R11-R14, R26): the function's own BAR2/BAR4 values never
//     reach the guest and the guest's never reach the function. An access
//     spanning owned and other bytes goes to both, byte by byte (R13 improve).
//   - regions 2 and 4 (and their upper halves 3 and 5) are the fake BARs over
//     the memory source: region info with one sparse area (R16), accesses
//     bounded and the tail all-ones (R17), mmap only of the memory (R18),
//     the cache mode each needs (R19). Every other region is the function's.
//   - readiness (R20, or R31 where the function has a CXL Device DVSEC): the
//     first memory access after creation or reset waits for it.
//   - reset: the function's, and the fake BARs zeroed (R14).
// DMA, interrupts and IRQ info are the function's (R28, R29).
//
// A function whose MSI-X table or PBA lies in a BAR that a fake BAR replaces
// is refused, as is one whose 64-bit BAR would be cut by a fake one (R27).
//
// Concurrency: memory reads, writes and mmap lookups may run concurrently
// from any number of threads; the fake BAR registers are serialised
// internally; reset() excludes everything else (it waits for accesses in
// flight and blocks new ones until it is done). The function under it must
// allow concurrent calls as far as it is driven concurrently. Ownership: the
// variant owns the function and the memory source.
#pragma once

#include <atomic>
#include <chrono>
#include <memory>
#include <mutex>
#include <optional>
#include <shared_mutex>
#include <span>
#include <string>
#include <vector>

#include "nvgrace/common/result.hpp"
#include "nvgrace/pciemu/device_config.hpp"
#include "nvgrace/pciemu/layout.hpp"
#include "nvgrace/vfio/function.hpp"
#include "nvgrace/vfio/regions.hpp"
#include "nvgrace/vfio/variant/memory.hpp"
#include "nvgrace/vfio/variant/readiness.hpp"

namespace nvgrace::vfio {

struct MmapArea {
  int fd = -1;
  std::uint64_t fd_offset = 0;
  std::uint64_t length = 0;
  CacheMode cache = CacheMode::write_back;
};

enum class ReadinessCheck {
  automatic,  // R31 when the function has a CXL Device DVSEC, else R20's BAR0 registers
  skip,       // a stand-in device without the registers: no wait
};

// When reset() is done with readiness.
enum class ResetWait {
  lazy,   // as R20 says: the next memory access waits (the default)
  eager,  // reset() itself waits and fails with the readiness error: a server
          // that resets a real device between clients (R30) hands the next
          // one a ready device, or says in its log why not
};

struct VariantOptions {
  std::string name;                        // for messages: the BDF (readiness errors name it); may be empty
  pciemu::Layout layout;                   // must have fake BARs (R5: without them there is no variant)
  std::unique_ptr<MemoryBackend> memory;   // holds the layout's usemem and resmem
  std::uint16_t device_id = 0;             // the Grace identity the fake BARs are built for (R1)
  ReadinessCheck readiness = ReadinessCheck::automatic;
  ReadinessOptions ready;
  ResetWait reset_wait = ResetWait::lazy;
  // Reading BAR0's R20 registers needs memory decode on a real device (VFIO
  // refuses a BAR access with decode off): turn it on for the reads, then
  // restore it.
  bool decode_for_readiness = false;
  // Hand the client the memory source's fd for the fake BARs. Off: they are
  // reached through REGION_READ/WRITE only (a client not to be trusted with
  // an fd that maps physical memory).
  bool mmap_fake_bars = true;
};

class Variant final : public Function {
 public:
  [[nodiscard]] static Result<std::unique_ptr<Variant>> create(std::unique_ptr<Function> function,
                                                               VariantOptions options);

  [[nodiscard]] DeviceInfo info() const override { return function_->info(); }
  // The fake BARs' info waits for readiness first, like an mmap (R20).
  [[nodiscard]] Result<RegionInfoView> region_info(RegionIndex index) override;
  [[nodiscard]] Result<IrqInfo> irq(unsigned index) const override { return function_->irq(index); }
  // R17 on the fake BARs: offset at or past the BAR size is EINVAL; an access
  // running past it is cut short (the count returned says how much was done);
  // bytes in [length, BAR size) read 0xFF and writes there are dropped and
  // counted. A first memory access waits for readiness (R20) and fails with
  // ETIME when it does not come; the first after a reset fails with EIO while
  // memory decode is off (as the 7.x kernel driver).
  [[nodiscard]] Result<std::size_t> read(RegionIndex index, std::uint64_t offset, std::span<std::uint8_t> out) override;
  [[nodiscard]] Result<std::size_t> write(RegionIndex index, std::uint64_t offset,
                                          std::span<const std::uint8_t> in) override;
  // The function's reset, the fake BARs zeroed (R14), readiness re-armed
  // (R20); a function that cannot reset still gets its fake BARs zeroed and
  // the error says its own state carried over.
  Result<void> reset() override;
  [[nodiscard]] const DmaLimits& dma_limits() const override { return function_->dma_limits(); }
  [[nodiscard]] Result<void> dma_map(const DmaMapping& m) override { return function_->dma_map(m); }
  Result<void> dma_unmap(Iova iova, std::uint64_t size) override { return function_->dma_unmap(iova, size); }
  [[nodiscard]] Result<void> set_irqs(const IrqSet& s) override { return function_->set_irqs(s); }
  // R41: the function's state, the memory source's descriptor (the memory
  // itself is never copied), the fake BAR registers and where readiness
  // stands. restore_state() takes the memory over from the descriptor.
  [[nodiscard]] Result<nlohmann::json> save_state(sys::FdTable& fds) const override;
  [[nodiscard]] Result<void> restore_state(const nlohmann::json& state, sys::FdTable& fds) override;
  [[nodiscard]] Result<void> claim_state() override { return function_->claim_state(); }

  // R18: what to mmap for [offset, offset + length) of a fake BAR. Only
  // [0, memory length) may be mapped; anything reaching past it is EINVAL.
  [[nodiscard]] Result<MmapArea> mmap(RegionIndex index, std::uint64_t offset, std::uint64_t length);
  // A region as its info describes it (fake or the function's).
  [[nodiscard]] Result<RegionDesc> region(RegionIndex index) const;
  // The guest's view of memory decode and the BARs (R21).
  [[nodiscard]] bool memory_decode();
  [[nodiscard]] pciemu::BarStates bar_states();

  // Writes dropped in the fake BARs' tails (R17, R22).
  [[nodiscard]] std::uint64_t dropped_writes() const { return dropped_.load(std::memory_order_relaxed); }
  [[nodiscard]] const pciemu::Layout& layout() const { return layout_; }
  [[nodiscard]] const MemoryBackend& memory() const { return *memory_; }
  [[nodiscard]] Function& function() { return *function_; }
  // Which readiness rule applies: "R31 (CXL Device DVSEC at 0x...)", "R20
  // (BAR0 registers ...)", or "skipped".
  [[nodiscard]] std::string readiness_rule() const;
  // The config-space bytes the variant owns (the fake BAR registers).
  [[nodiscard]] bool model_owns(std::uint64_t config_offset) const;

 private:
  Variant() = default;
  struct Region {
    std::vector<std::uint8_t> info;            // a fake BAR's vfio_region_info + caps
    std::uint64_t size = 0;
    const pciemu::MemRegion* mem = nullptr;    // the memory behind it
    int fd = -1;                               // what the client maps, -1: none
  };
  [[nodiscard]] const Region* fake(RegionIndex index) const;
  // The bytes of a config access (offset, count) that a fake BAR's register
  // window owns: from `at` in the access, `count` of them.
  struct Window {
    std::size_t at = 0;
    std::size_t count = 0;
  };
  [[nodiscard]] std::optional<Window> window_for(std::uint64_t offset, std::size_t count) const;
  Result<std::size_t> config_access(std::uint64_t offset, std::uint8_t* buf, std::size_t len, bool is_write);
  Result<std::size_t> memory_access(const Region& r, RegionIndex index, std::uint64_t offset, std::uint8_t* buf,
                                    std::size_t len, bool is_write);
  [[nodiscard]] Result<void> ready_for_access();
  [[nodiscard]] Result<void> wait_ready();
  [[nodiscard]] Result<void> poll_ready();

  std::unique_ptr<Function> function_;
  std::string name_;
  pciemu::Layout layout_;
  std::unique_ptr<MemoryBackend> memory_;
  std::optional<pciemu::DeviceConfig> overlay_;  // owns the fake BARs' registers (R11-R14)
  std::vector<Region> regions_;                  // by region index; size 0 and no info: the function's
  std::uint64_t owned_mask_ = 0;                 // bit i: config byte 0x10 + i is the variant's
  std::uint64_t config_size_ = 0;
  std::vector<std::uint64_t> bar_sizes_;         // for bar_states()
  VariantOptions options_;                       // readiness, reset and mmap choices (memory moved out)
  std::optional<unsigned> cxl_dvsec_;

  mutable std::shared_mutex reset_mutex_;  // shared: accesses; exclusive: reset
  mutable std::mutex overlay_mutex_;       // the fake BAR registers
  std::mutex ready_mutex_;                 // one waiter polls, the others wait on it
  std::atomic<bool> ready_{false};
  std::atomic<bool> reset_done_{false};  // a reset since the last access that found memory decode on
  std::atomic<std::uint64_t> dropped_{0};
};

}  // namespace nvgrace::vfio
