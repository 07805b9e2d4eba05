#include "nvgrace/probe/memory_type.hpp"

#include <linux/pci_regs.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <iterator>

#include <fmt/format.h>

#include "accesses.hpp"
#include "fault_guard.hpp"
#include "nvgrace/vfio/region_info.hpp"

namespace nvgrace::probe {

namespace detail {

void fill(volatile std::uint8_t* p, std::size_t n, std::uint8_t seed) {
  for (std::size_t i = 0; i < n; ++i) p[i] = static_cast<std::uint8_t>(seed + i);
}

std::uint64_t bytes_value(const volatile std::uint8_t* p) {
  std::uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | p[i];
  return v;
}

AccessResult expect_bytes(const volatile std::uint8_t* p, std::uint64_t want) {
  const auto got = bytes_value(p);
  if (got != want) return AccessResult::wrong(fmt::format("the bytes hold {:#x}, not {:#x}", got, want));
  return {};
}

AccessResult aligned_store_load(volatile std::uint8_t* b) {
  auto* p = reinterpret_cast<volatile std::uint64_t*>(b);
  const std::uint64_t v = 0x0123456789abcdefull;
  p[0] = v;
  if (const auto got = p[0]; got != v) return AccessResult::wrong(fmt::format("loaded {:#x} after storing {:#x}", got, v));
  return expect_bytes(b, v);
}

AccessResult unaligned_load(volatile std::uint8_t* b) {
  fill(b, 16, 0x10);
  const std::uint64_t v = load8_instruction(b + 1);
  const std::uint64_t want = bytes_value(b + 1);
  if (v != want) return AccessResult::wrong(fmt::format("loaded {:#x}, the bytes are {:#x}", v, want));
  return {};
}

AccessResult unaligned_store(volatile std::uint8_t* b) {
  fill(b, 16, 0x20);
  const std::uint64_t v = 0x8877665544332211ull;
  store8_instruction(b + 3, v);
  return expect_bytes(b + 3, v);
}

}  // namespace detail

namespace {

using detail::AccessResult;

// A shared read-write mapping, as a VMM makes it.
class PageMapping {
 public:
  PageMapping(int fd, std::uint64_t offset, std::size_t length)
      : length_(length),
        p_(::mmap(nullptr, length, PROT_READ | PROT_WRITE, MAP_SHARED, fd, static_cast<off_t>(offset))) {}
  ~PageMapping() {
    if (p_ != MAP_FAILED) ::munmap(p_, length_);
  }
  PageMapping(const PageMapping&) = delete;
  PageMapping& operator=(const PageMapping&) = delete;
  [[nodiscard]] bool ok() const { return p_ != MAP_FAILED; }
  [[nodiscard]] volatile std::uint8_t* bytes() const { return static_cast<volatile std::uint8_t*>(p_); }

 private:
  std::size_t length_;
  void* p_;
};

}  // namespace

RegionMemoryType probe_mapping_memory_type(int fd, std::uint64_t offset, std::size_t length, std::string name) {
  RegionMemoryType r;
  r.name = std::move(name);
  const auto page = static_cast<std::size_t>(::sysconf(_SC_PAGESIZE));
  PageMapping map(fd, offset, std::max(length, page));
  if (!map.ok()) {
    r.map_errno = errno;
    r.skipped = fmt::format("mmap of {:#x} bytes at {:#x} failed: {}", std::max(length, page), offset,
                            ::strerrorname_np(errno));
    return r;
  }
  volatile std::uint8_t* block = map.bytes();
  // What was there, to put back: byte loads and stores work on every type.
  std::array<std::uint8_t, detail::kBlock> saved{};
  const bool saved_ok = detail::without_fault([&] {
    for (std::size_t i = 0; i < saved.size(); ++i) saved[i] = block[i];
  });
  for (const auto& a : detail::memory_accesses()) {
    AccessOutcome o{std::string(a.name), a.kind, AccessOutcome::Result::ok, {}};
    AccessResult res;
    if (!detail::without_fault([&] { res = a.run(block); })) {
      o.result = AccessOutcome::Result::faulted;
    } else if (res.outcome == AccessResult::Outcome::wrong) {
      o.result = AccessOutcome::Result::wrong;
      o.detail = std::move(res.detail);
    } else if (res.outcome == AccessResult::Outcome::not_applicable) {
      o.result = AccessOutcome::Result::not_applicable;
      o.detail = std::move(res.detail);
    }
    r.accesses.push_back(std::move(o));
  }
  if (saved_ok)
    (void)detail::without_fault([&] {
      for (std::size_t i = 0; i < saved.size(); ++i) block[i] = saved[i];
    });
  return r;
}

RegionMemoryType::Verdict RegionMemoryType::verdict() const {
  if (!skipped.empty()) return Verdict::skipped;
  auto any = [&](AccessKind k, AccessOutcome::Result res) {
    for (const auto& a : accesses)
      if (a.kind == k && a.result == res) return true;
    return false;
  };
  using R = AccessOutcome::Result;
  if (any(AccessKind::aligned, R::faulted)) return Verdict::faulting;
  if (any(AccessKind::unaligned, R::faulted)) return Verdict::device;
  if (any(AccessKind::other, R::faulted)) return Verdict::other_faulted;
  for (const auto& a : accesses)
    if (a.result == R::wrong) return Verdict::wrong;
  return Verdict::normal;
}

Result<std::vector<RegionMemoryType>> probe_memory_types(Target& target) {
  auto& f = target.function();
  auto cmd = vfio::config_read(f, ConfigOffset{PCI_COMMAND}, 2);
  if (!cmd) return fail(cmd.error().context("reading COMMAND"));
  if (!(*cmd & PCI_COMMAND_MEMORY))
    if (auto ok = vfio::config_write(f, ConfigOffset{PCI_COMMAND}, 2, *cmd | PCI_COMMAND_MEMORY); !ok)
      return fail(ok.error().context("turning memory decode on"));
  std::vector<RegionMemoryType> out;
  const auto info = f.info();
  for (unsigned i = 0; i < info.num_regions; ++i) {
    auto view = f.region_info(RegionIndex{i});
    if (!view) continue;  // a region the device does not have (VGA, ...)
    auto d = vfio::decode_region_info(view->bytes);
    if (!d || d->region.sparse.empty()) continue;  // only memory with a sparse area: the fake BARs (R16)
    if (view->fd < 0 || !(d->region.flags & VFIO_REGION_INFO_FLAG_MMAP)) {
      RegionMemoryType r;
      r.index = i;
      r.name = fmt::format("region {}", i);
      r.skipped = fmt::format("not mappable (flags {:#x}{})", d->region.flags, view->fd < 0 ? ", no fd" : "");
      out.push_back(std::move(r));
      continue;
    }
    // One page, as a VMM's first touch would reach; a device-DAX instance
    // maps only in its own granule (2 MiB or 1 GiB: EINVAL below it), as
    // serve --host --host-memory hands it out.
    const auto& area = d->region.sparse.front();
    RegionMemoryType r;
    for (const std::uint64_t length : {std::uint64_t{0}, std::uint64_t{2} << 20, std::uint64_t{1} << 30}) {
      if (length > area.size) break;
      r = probe_mapping_memory_type(view->fd, d->offset + area.offset, length, fmt::format("region {}", i));
      if (r.map_errno != EINVAL) break;
    }
    r.index = i;
    out.push_back(std::move(r));
  }
  return out;
}

std::string format_memory_types(const std::vector<RegionMemoryType>& regions) {
  std::string s;
  using R = AccessOutcome::Result;
  using V = RegionMemoryType::Verdict;
  for (const auto& r : regions) {
    fmt::format_to(std::back_inserter(s), "memory-type {}: ", r.name);
    if (!r.skipped.empty()) {
      s += "not probed: " + r.skipped + "\n";
      continue;
    }
    for (const auto& a : r.accesses) {
      s += a.name;
      switch (a.result) {
        case R::ok: s += " ok"; break;
        case R::faulted: s += " FAULTED (SIGBUS)"; break;
        case R::wrong: s += " WRONG (" + a.detail + ")"; break;
        case R::not_applicable: s += " n/a (" + a.detail + ")"; break;
      }
      s += "; ";
    }
    switch (r.verdict()) {
      case V::normal: s += "behaves as Normal memory"; break;
      case V::device: s += "behaves as Device memory: unaligned accesses fault (R40)"; break;
      case V::faulting: s += "no usable memory: even an aligned access faults"; break;
      case V::wrong: s += "an access left the wrong bytes"; break;
      case V::other_faulted: s += "unaligned accesses work, but block zeroing or atomics fault (Device memory on a CPU "
                                  "that models them, R40)"; break;
      case V::skipped: break;
    }
    s += '\n';
  }
  return s;
}

}  // namespace nvgrace::probe
