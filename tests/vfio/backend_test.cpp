// Memory backends (R19, R24) and the host-VFIO region parsing and comparison.
#include <catch2/catch.hpp>

#include <linux/vfio.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>

#include "arch.hpp"
#include "nvgrace/vfio/host/memory_type.hpp"
#include "nvgrace/pciemu/layout.hpp"
#include "nvgrace/vfio/variant/memory.hpp"
#include "nvgrace/sys/fd.hpp"
#include "nvgrace/vfio/host/devmem.hpp"
#include "nvgrace/vfio/host/function.hpp"
#include "nvgrace/vfio/region_info.hpp"

using namespace nvgrace;
using namespace nvgrace::vfio;
using nvgrace::vfio::host::compare_regions;

namespace {
pciemu::Layout gh200_layout() { return *pciemu::compute_layout({0x400000000000, 96 * GiB, true}); }

std::uint64_t rss_kib() {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line))
    if (line.rfind("VmRSS:", 0) == 0) return std::stoull(line.substr(6));
  return 0;
}
}  // namespace

TEST_CASE("memfd backend: one sparse memfd with usemem then resmem in a 1 GiB-aligned mapping (R24)") {
  const auto before = rss_kib();
  auto b = make_memfd_backend(gh200_layout(), "nvgrace-test").value();
  CHECK(b->kind() == "memfd");
  auto use = b->range(pciemu::MemRole::usemem).value();
  auto res = b->range(pciemu::MemRole::resmem).value();
  CHECK(use.size == 95 * GiB);
  CHECK(res.size == 1 * GiB);
  CHECK(res.data == use.data + 95 * GiB);
  CHECK(reinterpret_cast<std::uintptr_t>(use.data) % GiB == 0);
  CHECK(use.cache == CacheMode::write_back);
  CHECK(res.cache == CacheMode::write_combined);
  // Touch a page at each end: 96 GiB costs only the pages touched.
  use.data[0] = 1;
  res.data[res.size - 1] = 2;
  CHECK(rss_kib() - before < 64 * 1024);
  CHECK(::lseek(use.fd, 0, SEEK_END) == static_cast<off_t>(96 * GiB));
}

TEST_CASE("file backend: data lands in the file at the device-memory offset") {
  const auto path = std::filesystem::temp_directory_path() / ("nvgrace-file-backend-" + std::to_string(getpid()));
  auto layout = *pciemu::compute_layout({0, 3 * GiB / 2, true});  // 512 MiB usemem + 1 GiB resmem
  {
    auto b = make_file_backend(layout, path).value();
    CHECK(b->kind() == "file");
    std::memcpy(b->range(pciemu::MemRole::resmem)->data + 8, "resmem!", 7);
  }
  std::ifstream in(path, std::ios::binary);
  in.seekg(static_cast<std::streamoff>(512 * MiB + 8));
  char buf[8] = {};
  in.read(buf, 7);
  CHECK(std::string(buf) == "resmem!");
  CHECK(std::filesystem::file_size(path) == 3 * GiB / 2);
  std::filesystem::remove(path);
}

TEST_CASE("devmem backend: a missing device is a clear error and passthrough layouts have nothing to back") {
  auto r = host::make_devmem_backend(gh200_layout(), "/nonexistent/mem");
  REQUIRE_FALSE(r.has_value());
  if (test::kDevmemNormal) {
    CHECK(r.error().err == ENOENT);
    CHECK(r.error().message.find("needs root") != std::string::npos);
  }
  auto none = make_memfd_backend(*pciemu::compute_layout({0, 0, true}), "x");
  REQUIRE_FALSE(none.has_value());
  CHECK(none.error().err == EINVAL);
}

TEST_CASE("R40: /dev/mem backs the fake BARs only where it gives Normal memory (x86), never Device memory (arm64)") {
  const auto& type = host::devmem_memory_type();
  CHECK(type.usable == test::kDevmemNormal);
  auto r = host::make_devmem_backend(gh200_layout(), "/nonexistent/mem");
  REQUIRE_FALSE(r.has_value());
  if (test::kDevmemNormal) {
    CHECK(type.usemem == "write-back");
    CHECK(r.error().err == ENOENT);  // it went on to open the device
  } else {
    CHECK(type.usemem == "Device-nGnRnE");
    CHECK(type.resmem == "Device-nGnRnE");
    CHECK(r.error().err == EPERM);  // refused before it opens anything
    const auto& m = r.error().message;
    CHECK(m.find("Device-nGnRnE (phys_mem_access_prot())") != std::string::npos);
    CHECK(m.find("DC ZVA") != std::string::npos);
    CHECK(m.find("driver_override nvgrace_gpu_vfio_pci") != std::string::npos);
    CHECK(m.find('\n') == std::string::npos);  // one line
  }
}

TEST_CASE("host VFIO: the model's region info decodes back and compares equal") {
  auto layout = gh200_layout();
  std::vector<RegionDesc> model{{RegionIndex{4}, 128 * GiB, VFIO_REGION_INFO_FLAG_READ | VFIO_REGION_INFO_FLAG_WRITE | VFIO_REGION_INFO_FLAG_MMAP,
                                 {{0, 95 * GiB}}, false}};
  auto host = decode_region_info(encode_region_info(model[0], 4096)).value();
  CHECK(compare_regions(model, {host}).empty());
}

TEST_CASE("host VFIO: mismatches in size, flags and sparse areas are each reported") {
  RegionDesc m{RegionIndex{4}, 128 * GiB, VFIO_REGION_INFO_FLAG_READ | VFIO_REGION_INFO_FLAG_WRITE | VFIO_REGION_INFO_FLAG_MMAP,
               {{0, 95 * GiB}}, false};
  RegionDesc h = m;
  h.size = 64 * GiB;
  h.flags = VFIO_REGION_INFO_FLAG_READ | VFIO_REGION_INFO_FLAG_WRITE;
  h.sparse = {{0, 94 * GiB}};
  auto diffs = compare_regions({m}, {decode_region_info(encode_region_info(h, 4096)).value()});
  REQUIRE(diffs.size() == 3);
  CHECK(diffs[0] == "region 4: size 0x2000000000 in the model, 0x1000000000 on the host");
  CHECK(diffs[1] == "region 4: flags read,write,mmap in the model, read,write on the host");
  CHECK(diffs[2] == "region 4: sparse area 0 is [0x0, +0x17c0000000) in the model, [0x0, +0x1780000000) on the host");
  auto missing = compare_regions({m}, {});
  CHECK(missing == std::vector<std::string>{"region 4: missing on the host"});
}

TEST_CASE("host VFIO: capability chains from the kernel are parsed defensively") {
  RegionDesc r{RegionIndex{4}, 128 * GiB, VFIO_REGION_INFO_FLAG_READ | VFIO_REGION_INFO_FLAG_MMAP, {{0, 95 * GiB}}, false};
  auto good = encode_region_info(r, 4096);
  // An unknown capability first, pointing at the sparse one.
  std::vector<std::uint8_t> chained(good.begin(), good.begin() + sizeof(vfio_region_info));
  vfio_info_cap_header unknown{0x7777, 1, 0};
  unknown.next = static_cast<std::uint32_t>(sizeof(vfio_region_info) + 16);
  chained.resize(sizeof(vfio_region_info) + 16, 0);
  std::memcpy(chained.data() + sizeof(vfio_region_info), &unknown, sizeof unknown);
  chained.insert(chained.end(), good.begin() + sizeof(vfio_region_info), good.end());
  vfio_region_info info{};
  std::memcpy(&info, chained.data(), sizeof info);
  info.cap_offset = sizeof(vfio_region_info);
  info.argsz = static_cast<std::uint32_t>(chained.size());
  std::memcpy(chained.data(), &info, sizeof info);
  auto d = decode_region_info(chained).value();
  CHECK(d.cap_ids == std::vector<std::uint16_t>{0x7777, VFIO_REGION_INFO_CAP_SPARSE_MMAP});
  CHECK(d.region.sparse.at(0).size == 95 * GiB);

  auto bad = [](std::vector<std::uint8_t> b, auto edit) {
    edit(b);
    return decode_region_info(b);
  };
  // A loop: the sparse capability points back at itself.
  auto loop = bad(good, [](auto& b) {
    std::uint32_t self = sizeof(vfio_region_info);
    std::memcpy(b.data() + sizeof(vfio_region_info) + 4, &self, 4);
  });
  CHECK(loop.error().err == ELOOP);
  // A capability past the end.
  auto past = bad(good, [](auto& b) {
    std::uint32_t far = 4000;
    std::memcpy(b.data() + 12, &far, 4);
  });
  CHECK(past.error().message.find("outside") != std::string::npos);
  // More areas than bytes.
  auto areas = bad(good, [](auto& b) {
    std::uint32_t n = 1000000;
    std::memcpy(b.data() + sizeof(vfio_region_info) + 8, &n, 4);
  });
  CHECK(areas.error().message.find("claims 1000000 areas") != std::string::npos);
  // Shorter than the struct.
  CHECK(decode_region_info(std::span(good).first(10)).error().err == EINVAL);
  // Every truncation of a good reply is either parsed or refused, never read past.
  for (std::size_t n = 0; n <= good.size(); ++n) (void)decode_region_info(std::span(good).first(n));
}
