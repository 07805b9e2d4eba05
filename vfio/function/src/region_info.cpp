#include "nvgrace/vfio/region_info.hpp"

#include <linux/vfio.h>

#include <cstring>
#include <set>

#include "nvgrace/vfio/wire.hpp"

namespace nvgrace::vfio {
namespace {

using wire::load;
using wire::store;

std::uint32_t caps_size(const RegionDesc& r) {
  if (r.sparse.empty()) return 0;
  return static_cast<std::uint32_t>(sizeof(vfio_region_info_cap_sparse_mmap) +
                                    r.sparse.size() * sizeof(vfio_region_sparse_mmap_area));
}

}  // namespace

std::uint32_t region_info_size(const RegionDesc& region) {
  return static_cast<std::uint32_t>(sizeof(vfio_region_info)) + caps_size(region);
}

std::vector<std::uint8_t> encode_region_info(const RegionDesc& r, std::uint32_t argsz,
                                             std::optional<std::uint64_t> offset, ShortReply short_reply) {
  const std::uint32_t full = region_info_size(r);
  const bool caps_fit = caps_size(r) == 0 || argsz >= full;
  std::vector<std::uint8_t> out(caps_fit ? full : sizeof(vfio_region_info), 0);
  vfio_region_info info{};
  info.argsz = caps_size(r) == 0 ? static_cast<std::uint32_t>(sizeof info) : full;
  const bool caps_flag = caps_size(r) && (caps_fit || short_reply == ShortReply::caps_flag_set);
  info.flags = r.flags | (caps_flag ? VFIO_REGION_INFO_FLAG_CAPS : 0u);
  info.index = r.index.value();
  info.cap_offset = caps_fit && caps_size(r) ? static_cast<std::uint32_t>(sizeof info) : 0;
  info.size = r.size;
  info.offset = offset.value_or(region_offset(r.index));
  store(std::span(out), 0, info);
  if (caps_fit && caps_size(r)) {
    vfio_region_info_cap_sparse_mmap cap{};
    cap.header.id = VFIO_REGION_INFO_CAP_SPARSE_MMAP;
    cap.header.version = 1;
    cap.header.next = 0;
    cap.nr_areas = static_cast<std::uint32_t>(r.sparse.size());
    std::size_t at = sizeof info;
    store(std::span(out), at, cap);
    at += sizeof cap;
    for (const auto& a : r.sparse) {
      vfio_region_sparse_mmap_area area{a.offset, a.size};
      store(std::span(out), at, area);
      at += sizeof area;
    }
  }
  return out;
}

Result<DecodedRegionInfo> decode_region_info(std::span<const std::uint8_t> b) {
  if (b.size() < sizeof(vfio_region_info))
    return fail_errno(EINVAL, "region info of {} bytes is shorter than struct vfio_region_info ({})", b.size(),
                      sizeof(vfio_region_info));
  const auto info = load<vfio_region_info>(b, 0);
  DecodedRegionInfo d;
  d.region.index = RegionIndex{info.index};
  d.region.size = info.size;
  d.region.flags = info.flags & ~static_cast<std::uint32_t>(VFIO_REGION_INFO_FLAG_CAPS);
  d.offset = info.offset;
  d.argsz = info.argsz;
  if (!(info.flags & VFIO_REGION_INFO_FLAG_CAPS) || info.cap_offset == 0) return d;

  std::set<std::uint32_t> seen;
  for (std::uint32_t at = info.cap_offset; at != 0;) {
    if (at < sizeof(vfio_region_info) || at > b.size() || b.size() - at < sizeof(vfio_info_cap_header))
      return fail_errno(EINVAL, "capability at offset {} lies outside the {}-byte reply", at, b.size());
    if (!seen.insert(at).second) return fail_errno(ELOOP, "capability chain loops back to offset {}", at);
    const auto hdr = load<vfio_info_cap_header>(b, at);
    d.cap_ids.push_back(hdr.id);
    if (hdr.id == VFIO_REGION_INFO_CAP_SPARSE_MMAP) {
      if (b.size() - at < sizeof(vfio_region_info_cap_sparse_mmap))
        return fail_errno(EINVAL, "sparse-mmap capability at offset {} is truncated", at);
      const auto cap = load<vfio_region_info_cap_sparse_mmap>(b, at);
      const std::size_t areas_at = at + sizeof cap;
      if ((b.size() - areas_at) / sizeof(vfio_region_sparse_mmap_area) < cap.nr_areas)
        return fail_errno(EINVAL, "sparse-mmap capability at offset {} claims {} areas past the reply's end", at,
                          cap.nr_areas);
      for (std::uint32_t i = 0; i < cap.nr_areas; ++i) {
        const auto a = load<vfio_region_sparse_mmap_area>(b, areas_at + i * sizeof(vfio_region_sparse_mmap_area));
        d.region.sparse.push_back({a.offset, a.size});
      }
    }
    at = hdr.next;
  }
  return d;
}

}  // namespace nvgrace::vfio
