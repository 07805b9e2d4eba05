#include "nvgrace/probe/probe.hpp"

#include <linux/pci_regs.h>
#include <linux/vfio.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cstring>
#include <iterator>
#include <map>

#include <fmt/format.h>

#include "fault_guard.hpp"
#include "nvgrace/sys/fd.hpp"
#include "nvgrace/vfio/region_info.hpp"
#include "nvgrace/vfio/wire.hpp"

namespace nvgrace::probe {
namespace {

using vfio::kConfigRegion;

constexpr std::size_t kConfigSize = 4096;

std::string err_name(int e) {
  const char* n = ::strerrorname_np(e);
  return n ? n : fmt::format("errno {}", e);
}

std::string hex(std::span<const std::uint8_t> b) {
  std::string s;
  s.reserve(b.size() * 2);
  for (auto x : b) fmt::format_to(std::back_inserter(s), "{:02x}", x);
  return s;
}

// A store and a load through a mapping that may fault: the kernel's 7.x
// driver answers a fault with SIGBUS where memory is disabled (R20), a
// mapping past a file's end faults too. The fault is part of the
// transcript, not the end of the probe. Stores `store` at `p` when given,
// then loads from `p`; nullopt when either faulted.
std::optional<std::uint64_t> guarded_access(volatile std::uint64_t* p, std::optional<std::uint64_t> store) {
  std::uint64_t got = 0;
  const bool ok = detail::without_fault([&] {
    if (store) p[0] = *store;
    got = p[0];
  });
  return ok ? std::optional(got) : std::nullopt;
}

// A region as the probe needs it: its size, the memory behind it (the
// sparse area, when it has one) and where its fd maps it.
struct RegionFacts {
  unsigned index = 0;
  std::uint64_t size = 0;
  std::uint32_t flags = 0;
  std::uint64_t offset = 0;
  std::optional<std::uint64_t> memory;  // the sparse area's end: the memory a fake BAR has
  int fd = -1;
};

class Prober {
 public:
  Prober(Target& t, const Options& o) : t_(t), f_(t.function()), o_(o) {}

  Result<std::string> run() {
    line("nvgrace-probe 1");
    comment("target: {}", t_.describe());
    comment("region offsets are the transport's own and are not compared");
    const auto info = f_.info();
    line("device flags={:#x} regions={} irqs={}", info.flags, info.num_regions, info.num_irqs);
    regions(info);
    for (unsigned i = 0; i < info.num_irqs; ++i) {
      auto irq = f_.irq(i);
      if (irq) line("irq {} flags={:#x} count={}", i, irq->flags, irq->count);
      else line("irq {} {}", i, err_name(irq.error().err));
    }

    step("reset", [&] { return result(f_.reset()); });
    config_state("after reset");
    config_sequence("decode off");
    command(true);
    config_sequence("decode on");
    region_accesses();
    mappings();
    mapping_across_decode();
    readiness();
    step("reset", [&] { return result(f_.reset()); });
    config_state("after the last reset");
    ioeventfds();
    return std::move(out_);
  }

 private:
  template <class... Args>
  void line(fmt::format_string<Args...> f, Args&&... args) {
    fmt::format_to(std::back_inserter(out_), f, std::forward<Args>(args)...);
    out_ += '\n';
  }
  template <class... Args>
  void comment(fmt::format_string<Args...> f, Args&&... args) {
    out_ += "# ";
    line(f, std::forward<Args>(args)...);
  }
  template <class F>
  void step(std::string_view what, F&& f) {
    line("{}: {}", what, f());
  }
  static std::string result(const Result<void>& r) { return r ? "ok" : err_name(r.error().err); }

  // --- regions ----------------------------------------------------------
  void regions(const vfio::DeviceInfo& info) {
    for (unsigned i = 0; i < info.num_regions; ++i) {
      // Asked with only the struct's room: what a caller learns first.
      auto shortr = t_.region_info_raw(i, sizeof(vfio_region_info));
      if (!shortr) {
        line("region {} argsz=32: {}", i, err_name(shortr.error().err));
      } else {
        line("region {} argsz=32: {}", i, info_fields(*shortr));
      }
      auto view = f_.region_info(RegionIndex{i});
      if (!view) {
        line("region {}: {}", i, err_name(view.error().err));
        continue;
      }
      const auto bytes = view->bytes;
      line("region {}: {}", i, info_fields(bytes));
      auto d = vfio::decode_region_info(bytes);
      if (!d) {
        line("region {}: undecodable: {}", i, d.error().message);
        continue;
      }
      RegionFacts r{i, d->region.size, d->region.flags, d->offset, std::nullopt, view->fd};
      if (!d->region.sparse.empty()) {
        const auto& last = d->region.sparse.back();
        r.memory = last.offset + last.size;
      }
      comment("region {} offset {:#x}{}", i, d->offset, view->fd >= 0 ? ", with an fd to map it through" : "");
      facts_[i] = r;
    }
  }

  // The fields of a region-info answer, the offset left out; the capability
  // chain as bytes.
  static std::string info_fields(std::span<const std::uint8_t> b) {
    if (b.size() < sizeof(vfio_region_info)) return fmt::format("short answer of {} bytes", b.size());
    const auto r = vfio::wire::load<vfio_region_info>(b, 0);
    auto s = fmt::format("argsz={} flags={:#x} index={} cap_offset={} size={:#x}", r.argsz, r.flags, r.index,
                         r.cap_offset, r.size);
    if (b.size() > sizeof r) s += " caps=" + hex(b.subspan(sizeof r));
    return s;
  }

  // --- config space -----------------------------------------------------
  Result<std::uint32_t> cfg_read(std::size_t off, std::size_t width) {
    std::array<std::uint8_t, 4> b{};
    auto n = f_.read(kConfigRegion, off, std::span(b.data(), width));
    if (!n) return fail(n.error());
    if (*n != width) return fail_errno(EIO, "short read {}", *n);
    std::uint32_t v = 0;
    for (std::size_t i = 0; i < width; ++i) v |= std::uint32_t{b[i]} << (8 * i);
    return v;
  }

  // A config write of `width` bytes: "ok" or the count the device took, or
  // the error.
  std::string cfg_write(std::size_t off, std::size_t width, std::uint32_t value) {
    std::array<std::uint8_t, 4> b{};
    for (std::size_t i = 0; i < width; ++i) b[i] = static_cast<std::uint8_t>(value >> (8 * i));
    auto n = f_.write(kConfigRegion, off, std::span<const std::uint8_t>(b.data(), width));
    if (!n) return err_name(n.error().err);
    return *n == width ? std::string("ok") : fmt::format("short write of {}", *n);
  }

  void config_state(std::string_view name) {
    line("config {}:", name);
    // Width 1 at every offset: the bytes.
    std::array<std::int16_t, kConfigSize> bytes{};
    for (std::size_t o = 0; o < kConfigSize; ++o) {
      auto v = cfg_read(o, 1);
      bytes[o] = v ? static_cast<std::int16_t>(*v) : static_cast<std::int16_t>(-1 - (v.error().err & 0x7fff));
    }
    for (std::size_t row = 0; row < kConfigSize; row += 16) {
      std::string s = fmt::format(" {:03x}:", row);
      for (std::size_t i = 0; i < 16; ++i)
        s += bytes[row + i] >= 0 ? fmt::format(" {:02x}", bytes[row + i]) : std::string(" ..");
      out_ += s + '\n';
    }
    for (std::size_t o = 0; o < kConfigSize; ++o)
      if (bytes[o] < 0) line(" w1 {:03x}: {}", o, err_name(-1 - bytes[o]));
    // Widths 2 and 4: only where they do not read what the bytes say.
    for (std::size_t width : {2u, 4u}) {
      for (std::size_t o = 0; o + width <= kConfigSize; ++o) {
        if (!o_.every_offset && o % width) continue;
        auto v = cfg_read(o, width);
        std::optional<std::uint32_t> expect = 0;
        for (std::size_t i = 0; i < width; ++i) {
          if (bytes[o + i] < 0) expect.reset();
          else if (expect) *expect |= static_cast<std::uint32_t>(bytes[o + i]) << (8 * i);
        }
        if (v && expect && *v == *expect) continue;
        if (!v && !expect) continue;  // an error where the bytes fail too
        line(" w{} {:03x}: {}", width, o, v ? fmt::format("{:#0{}x}", *v, 2 + 2 * width) : err_name(v.error().err));
      }
    }
  }

  void command(bool memory) {
    auto cmd = cfg_read(PCI_COMMAND, 2);
    if (!cmd) {
      line("command read: {}", err_name(cmd.error().err));
      return;
    }
    const std::uint32_t v = memory ? (*cmd | PCI_COMMAND_MEMORY) : (*cmd & ~std::uint32_t{PCI_COMMAND_MEMORY});
    line("command {:#06x} -> {:#06x}: {}", *cmd, v, cfg_write(PCI_COMMAND, 2, v));
  }

  // The 64-bit BARs, from the region sizes (BAR i is region i).
  std::vector<std::pair<unsigned, std::uint64_t>> bars64() const {
    std::vector<std::pair<unsigned, std::uint64_t>> out;
    for (unsigned i = 0; i < 6; i += 2)
      if (auto it = facts_.find(i); it != facts_.end() && it->second.size) out.emplace_back(i, it->second.size);
    return out;
  }

  // R21: a BAR below 4 GiB placed where the low dword equals its size mask;
  // bigger ones at a multiple of their size.
  static std::uint64_t placement(unsigned bar, std::uint64_t size) {
    if (size < (std::uint64_t{1} << 32))
      return (std::uint64_t{1 + bar} << 32) | (~(size - 1) & 0xFFFFFFFFu);
    return size * (2 + bar);
  }

  void config_sequence(std::string_view decode) {
    const auto reg = [](unsigned bar) { return PCI_BASE_ADDRESS_0 + 4 * bar; };
    // Sizing: all ones into each dword of each BAR.
    for (const auto& [bar, size] : bars64()) {
      line("write bar{} low all-ones: {}", bar, cfg_write(reg(bar), 4, 0xFFFFFFFFu));
      line("write bar{} high all-ones: {}", bar, cfg_write(reg(bar) + 4, 4, 0xFFFFFFFFu));
    }
    config_state(fmt::format("sized, {}", decode));
    for (const auto& [bar, size] : bars64()) {
      const auto a = placement(bar, size);
      line("place bar{} at {:#x}: low {}, high {}", bar, a, cfg_write(reg(bar), 4, static_cast<std::uint32_t>(a)),
           cfg_write(reg(bar) + 4, 4, static_cast<std::uint32_t>(a >> 32)));
    }
    config_state(fmt::format("placed, {}", decode));
    // 1- and 2-byte writes into the fake BAR registers.
    line("write 1 byte 0x5a at 0x1a: {}", cfg_write(0x1a, 1, 0x5a));
    line("write 2 bytes 0x1234 at 0x22: {}", cfg_write(0x22, 2, 0x1234));
    line("write 1 byte 0xa5 at 0x27: {}", cfg_write(0x27, 1, 0xa5));
    config_state(fmt::format("narrow writes, {}", decode));
    // 4-byte writes straddling a register boundary.
    line("write 4 bytes 0x89abcdef at 0x1e: {}", cfg_write(0x1e, 4, 0x89abcdefu));
    line("write 4 bytes 0x76543210 at 0x26: {}", cfg_write(0x26, 4, 0x76543210u));
    config_state(fmt::format("straddling writes, {}", decode));
    // Placed again, for the accesses that follow.
    for (const auto& [bar, size] : bars64()) {
      const auto a = placement(bar, size);
      line("place bar{} at {:#x}: low {}, high {}", bar, a, cfg_write(reg(bar), 4, static_cast<std::uint32_t>(a)),
           cfg_write(reg(bar) + 4, 4, static_cast<std::uint32_t>(a >> 32)));
    }
  }

  // --- region accesses --------------------------------------------------
  static std::vector<std::uint8_t> pattern(unsigned region, std::uint64_t off, std::size_t n) {
    std::vector<std::uint8_t> b(n);
    for (std::size_t i = 0; i < n; ++i)
      b[i] = static_cast<std::uint8_t>(0x10 * region + ((off + i) * 7 + 3));
    return b;
  }

  void read_op(unsigned r, std::uint64_t off, std::size_t n) {
    std::vector<std::uint8_t> b(n, 0);
    auto got = f_.read(RegionIndex{r}, off, b);
    if (!got) line("read region {} at {:#x}, {} bytes: {}", r, off, n, err_name(got.error().err));
    else line("read region {} at {:#x}, {} bytes: {} -> {}", r, off, n, *got, hex(std::span(b).first(*got)));
  }

  void write_op(unsigned r, std::uint64_t off, std::size_t n) {
    const auto b = pattern(r, off, n);
    auto got = f_.write(RegionIndex{r}, off, b);
    if (!got) line("write region {} at {:#x}, {} bytes: {}", r, off, n, err_name(got.error().err));
    else line("write region {} at {:#x}, {} bytes: {}", r, off, n, *got);
  }

  void region_accesses() {
    for (const auto& [i, r] : facts_) {
      if (i == vfio::kConfigRegion.value() || !r.size) continue;
      if (!r.memory) {
        // A BAR of the device itself: read only (its registers are the
        // device's), at 0 and at the readiness registers of R20.
        read_op(i, 0, 4);
        for (std::uint64_t off : {0x1498ull, 0x200bcull})
          if (off + 4 <= r.size) read_op(i, off, 4);
        continue;
      }
      const auto mem = *r.memory;
      write_op(i, 0, 8);
      read_op(i, 0, 8);
      write_op(i, mem - 8, 8);
      read_op(i, mem - 8, 8);
      read_op(i, mem - 8, 16);   // across the memory's end (R17)
      write_op(i, mem - 8, 16);
      read_op(i, mem - 8, 8);
      if (mem < r.size) {
        read_op(i, mem, 8);       // the padding: all-ones
        write_op(i, mem, 8);      // dropped
      }
      read_op(i, r.size - 8, 8);
      read_op(i, r.size - 8, 16);  // across the BAR's end
      write_op(i, r.size - 8, 16);
      read_op(i, r.size, 8);       // past it
      write_op(i, r.size, 8);
    }
  }

  // --- mmap -------------------------------------------------------------
  void mappings() {
    const auto page = static_cast<std::uint64_t>(::sysconf(_SC_PAGESIZE));
    comment("page size {:#x}", page);
    for (const auto& [i, r] : facts_) {
      if (!r.memory) continue;
      if (r.fd < 0 || !(r.flags & VFIO_REGION_INFO_FLAG_MMAP)) {
        line("mmap region {}: not mappable (flags {:#x}{})", i, r.flags, r.fd < 0 ? ", no fd" : "");
        continue;
      }
      // `store`: through the mapping and back through a region read; else
      // only a load (past the memory a store could land in another
      // region's memory where the fd holds both).
      auto try_map = [&](std::uint64_t off, std::uint64_t len, bool store = true) -> std::string {
        void* p = ::mmap(nullptr, len, PROT_READ | PROT_WRITE, MAP_SHARED, r.fd, static_cast<off_t>(r.offset + off));
        if (p == MAP_FAILED) return err_name(errno);
        if (!store) {
          const auto got = guarded_access(static_cast<volatile std::uint64_t*>(p), std::nullopt);
          ::munmap(p, len);
          return got ? fmt::format("mapped; a load gives {:#x}", *got) : std::string("mapped; the load faulted (SIGBUS)");
        }
        // Through the mapping and back through a region read.
        const std::uint64_t v = 0x0123456789abcdefull ^ (off + i);
        if (!guarded_access(static_cast<volatile std::uint64_t*>(p), v)) {
          ::munmap(p, len);
          return "mapped; the access faulted (SIGBUS)";
        }
        std::array<std::uint8_t, 8> back{};
        auto n = f_.read(RegionIndex{i}, off, back);
        std::uint64_t got = 0;
        std::memcpy(&got, back.data(), 8);
        ::munmap(p, len);
        if (!n) return fmt::format("mapped; region read back: {}", err_name(n.error().err));
        return fmt::format("mapped; stored {:#x}, region read gives {:#x}", v, got);
      };
      line("mmap region {} at 0, one page: {}", i, try_map(0, page));
      const auto mem_pages = *r.memory / page * page;
      if (mem_pages >= page) line("mmap region {} last page of memory: {}", i, try_map(mem_pages - page, page));
      line("mmap region {} last page of memory and the next: {}", i,
           mem_pages >= page ? try_map(mem_pages - page, 2 * page) : std::string("n/a"));
      if (*r.memory < r.size) line("mmap region {} past the memory: {}", i, try_map(mem_pages, page, false));
    }
  }

  // --- readiness --------------------------------------------------------
  // A mapping kept across memory decode off and on, as a VMM keeps its
  // BAR mappings while a guest sizes BARs (the kernel zaps a device's
  // mappings when decode goes off and must fault them back in after).
  void mapping_across_decode() {
    const auto page = static_cast<std::uint64_t>(::sysconf(_SC_PAGESIZE));
    for (const auto& [i, r] : facts_) {
      if (!r.memory || r.fd < 0 || !(r.flags & VFIO_REGION_INFO_FLAG_MMAP)) continue;
      void* p = ::mmap(nullptr, page, PROT_READ | PROT_WRITE, MAP_SHARED, r.fd, static_cast<off_t>(r.offset));
      if (p == MAP_FAILED) {
        line("mmap region {} across memory decode off and on: {}", i, err_name(errno));
        continue;
      }
      auto* word = static_cast<volatile std::uint64_t*>(p);
      const auto before = guarded_access(word, std::nullopt);
      command(false);
      command(true);
      const auto after = guarded_access(word, std::nullopt);
      ::munmap(p, page);
      line("mmap region {} across memory decode off and on: the load before {}, the load after {}", i,
           before ? "worked" : "faulted (SIGBUS)",
           !after ? "faulted (SIGBUS)" : before && *after == *before ? "gives the same value" : "gives another value");
    }
  }

  void readiness() {
    // After a reset, with memory decode off, the first fake-BAR access: the
    // kernel's 7.x driver refuses it until the command register enables
    // memory, then polls readiness (R20, R31).
    line("readiness:");
    step(" reset", [&] { return result(f_.reset()); });
    command(false);
    for (const auto& [i, r] : facts_)
      if (r.memory) read_op(i, 0, 8);
    command(true);
    for (const auto& [i, r] : facts_)
      if (r.memory) read_op(i, 0, 8);
  }

  // --- ioeventfd --------------------------------------------------------
  void ioeventfds() {
    sys::UniqueFd efd(::eventfd(0, EFD_CLOEXEC));
    for (const auto& [i, r] : facts_) {
      if (i == vfio::kConfigRegion.value() || !r.size) continue;
      auto res = t_.ioeventfd(r.offset, VFIO_DEVICE_IOEVENTFD_32, 0x1, efd.get());
      if (!res) {
        line("ioeventfd region {} at 0: the transport has no ioeventfd request", i);
        continue;
      }
      line("ioeventfd region {} at 0: {}", i, result(*res));
      if (*res) (void)t_.ioeventfd(r.offset, VFIO_DEVICE_IOEVENTFD_32, 0x1, -1);  // de-assign
    }
  }

  Target& t_;
  vfio::Function& f_;
  const Options& o_;
  std::string out_;
  std::map<unsigned, RegionFacts> facts_;
};

}  // namespace

Result<std::string> run(Target& target, const Options& options) { return Prober(target, options).run(); }

std::vector<std::string> compared_lines(std::string_view transcript) {
  std::vector<std::string> out;
  while (!transcript.empty()) {
    const auto nl = transcript.find('\n');
    const auto l = transcript.substr(0, nl);
    if (!l.starts_with('#')) out.emplace_back(l);
    if (nl == std::string_view::npos) break;
    transcript.remove_prefix(nl + 1);
  }
  return out;
}

}  // namespace nvgrace::probe
