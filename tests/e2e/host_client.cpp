// The project's own vfio-user client for the host-device end-to-end tests.
// It runs inside a q35 guest whose kernel's real vfio-pci and intel-iommu
// serve an emulated NVMe controller, which `nvgrace serve --host` passes
// through (R26-R31). It drives the NVMe the way a guest driver would: maps
// BAR0 through the device fd the server sends, DMA-maps its own memory,
// builds the admin queues in it, issues Identify Controller and waits for the
// completion's MSI-X on its eventfd.
//
//   e2e_host_client nvme SOCKET SERIAL     Identify; then a command aimed at an
//                                          unmapped IOVA must not land
//   e2e_host_client fakebar SOCKET VALUE   writes VALUE through BAR4's mmap at
//                                          +0x1000, prints BAR2's +0x2000
//   e2e_host_client hold SOCKET            maps DMA, sets an IRQ, then waits to
//                                          be killed
//   e2e_host_client loop SOCKET SERIAL STOPFILE
//                                          Identify in a loop until STOPFILE
//                                          exists, through server upgrades and
//                                          deaths (R41): each iteration reads
//                                          config space through the server, and
//                                          every other one maps a fresh buffer,
//                                          Identifies into it and unmaps it
//   e2e_host_client systemd NOTIFY PIDFILE LOG -- PROGRAM ARGS...
//                                          runs PROGRAM as a stand-in systemd
//                                          runs a unit with a file-descriptor
//                                          store and Restart=on-failure
//                                          (tests/support/standin_systemd.hpp);
//                                          PIDFILE holds the service's pid;
//                                          SIGTERM stops it and the stand-in
//   e2e_host_client devmem ADDR [VALUE]    8 bytes of /dev/mem, mapped write-back
//   e2e_host_client mapmem PATH GRANULE OFFSET [VALUE]
//                                          8 bytes of any memory file, mapped
//                                          GRANULE at a time (device-DAX: its align)
//   e2e_host_client bench SOCKET           prints DMA_MAP 1 GiB, interrupt and
//   e2e_host_client bench-direct BDF API   BAR0 figures through nvgrace, or
//                                          through VFIO directly (cdev|group)
// Lines start with "ok", "FAIL", "bench" or "info"; the exit code is the
// number of FAIL lines.
#include <fcntl.h>
#include <linux/pci_regs.h>
#include <linux/vfio.h>
#include <poll.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "nvgrace/vfio/host/vfio_io.hpp"
#include "nvgrace/vfio/region_info.hpp"
#include "nvgrace/vfio/user/protocol.hpp"
#include "standin_systemd.hpp"
#include "vfio_user_client.hpp"

namespace user = nvgrace::vfio::user;
using nvgrace::sys::UniqueFd;
using Clock = std::chrono::steady_clock;

namespace {

int failures = 0;
void ok(bool good, const std::string& what) {
  if (!good) ++failures;
  std::printf("%s %s\n", good ? "ok  " : "FAIL", what.c_str());
  std::fflush(stdout);
}
[[noreturn]] void die(const std::string& why) {
  std::printf("FAIL %s\n", why.c_str());
  std::exit(100);
}

template <class T>
void put(std::vector<std::uint8_t>& b, const T& v) {
  const auto* p = reinterpret_cast<const std::uint8_t*>(&v);
  b.insert(b.end(), p, p + sizeof v);
}

// A memfd of `size` bytes, mapped here.
struct Memory {
  UniqueFd fd;
  std::uint8_t* data = nullptr;
  std::uint64_t size = 0;
  explicit Memory(std::uint64_t n) : fd(::memfd_create("e2e-dma", MFD_CLOEXEC)), size(n) {
    if (!fd || ::ftruncate(fd.get(), static_cast<off_t>(n)) != 0) die("memfd");
    void* p = ::mmap(nullptr, n, PROT_READ | PROT_WRITE, MAP_SHARED, fd.get(), 0);
    if (p == MAP_FAILED) die("mmap memfd");
    data = static_cast<std::uint8_t*>(p);
  }
  ~Memory() { ::munmap(data, size); }
};

// What the NVMe driver needs from whoever gives it the device.
class Transport {
 public:
  virtual ~Transport() = default;
  virtual volatile std::uint8_t* bar0() = 0;
  virtual void config_write16(unsigned off, std::uint16_t v) = 0;
  virtual std::uint16_t config_read16(unsigned off) = 0;
  virtual bool dma_map(std::uint64_t iova, const Memory& m, std::string& why) = 0;
  virtual bool dma_unmap(std::uint64_t iova, std::uint64_t size, std::string& why) = 0;
  virtual bool msix_eventfd(int efd, std::string& why) = 0;
  virtual void msix_off() = 0;
};

// Through `nvgrace serve --host` over vfio-user.
class UserTransport final : public Transport {
 public:
  explicit UserTransport(const std::string& socket) : sock_(test::vfio_user_connect(socket)) {
    if (!sock_) die("cannot connect to " + socket);
    // QEMU's client gives up on a reply after x-msg-timeout (5 s); this one
    // after 10 s, so that a server that never answers is a failure, not a hang.
    const timeval limit{10, 0};
    ::setsockopt(sock_.get(), SOL_SOCKET, SO_RCVTIMEO, &limit, sizeof limit);
    std::vector<std::uint8_t> v;
    put(v, std::uint32_t{0});
    const std::string caps = R"({"capabilities":{"max_msg_fds":8,"max_data_xfer_size":1048576}})";
    v.insert(v.end(), caps.begin(), caps.end());
    v.push_back(0);
    call(user::kVersion, v);
  }
  ~UserTransport() override {
    if (bar0_) ::munmap(bar0_, bar0_size_);
  }

  std::vector<std::uint8_t> call(std::uint16_t cmd, const std::vector<std::uint8_t>& p, int* got_fd = nullptr,
                                 const std::vector<int>& fds = {}, int* err = nullptr) {
    std::vector<std::uint8_t> m;
    put(m, user::Header{++id_, cmd, static_cast<std::uint32_t>(16 + p.size()), 0, 0});
    m.insert(m.end(), p.begin(), p.end());
    auto r = test::vfio_user_call(sock_.get(), m, got_fd, fds);
    if (r.size() < 16)
      die(fmt::format("{}: no reply (the server closed the connection, or none came within 10 s)",
                      user::command_name(cmd)));
    user::Header h{};
    std::memcpy(&h, r.data(), 16);
    if (err) *err = (h.flags & user::kError) ? static_cast<int>(h.error) : 0;
    else if (h.flags & user::kError) die(fmt::format("{}: error {}", user::command_name(cmd), h.error));
    return std::vector<std::uint8_t>(r.begin() + 16, r.end());
  }

  // GET_REGION_INFO with room for the capabilities, and the fd sent with it.
  nvgrace::vfio::DecodedRegionInfo region(unsigned index, int& fd) {
    std::vector<std::uint8_t> q(32, 0);
    const std::uint32_t argsz = 512;
    std::memcpy(q.data(), &argsz, 4);
    std::memcpy(q.data() + 8, &index, 4);
    auto r = call(user::kDeviceGetRegionInfo, q, &fd);
    auto d = nvgrace::vfio::decode_region_info(r);
    if (!d) die(d.error().message);
    return *d;
  }

  volatile std::uint8_t* bar0() override {
    if (bar0_) return static_cast<volatile std::uint8_t*>(bar0_);
    int fd = -1;
    const auto d = region(VFIO_PCI_BAR0_REGION_INDEX, fd);
    if (fd < 0 || !(d.region.flags & VFIO_REGION_INFO_FLAG_MMAP)) die("BAR0 came without an fd to map");
    UniqueFd owned(fd);
    bar0_size_ = d.region.size;
    // The device fd at VFIO's region offset (R27).
    bar0_ = ::mmap(nullptr, bar0_size_, PROT_READ | PROT_WRITE, MAP_SHARED, fd, static_cast<off_t>(d.offset));
    if (bar0_ == MAP_FAILED) die(fmt::format("mmap of BAR0 through the device fd: {}", std::strerror(errno)));
    return static_cast<volatile std::uint8_t*>(bar0_);
  }
  void config_write16(unsigned off, std::uint16_t v) override {
    std::vector<std::uint8_t> p;
    put(p, user::RegionAccess{off, VFIO_PCI_CONFIG_REGION_INDEX, 2});
    put(p, v);
    call(user::kRegionWrite, p);
  }
  std::uint16_t config_read16(unsigned off) override {
    std::vector<std::uint8_t> p;
    put(p, user::RegionAccess{off, VFIO_PCI_CONFIG_REGION_INDEX, 2});
    auto r = call(user::kRegionRead, p);
    std::uint16_t v = 0;
    std::memcpy(&v, r.data() + 16, 2);
    return v;
  }
  bool dma_map(std::uint64_t iova, const Memory& m, std::string& why) override {
    std::vector<std::uint8_t> p;
    put(p, user::DmaMapRequest{32, VFIO_DMA_MAP_FLAG_READ | VFIO_DMA_MAP_FLAG_WRITE, 0, iova, m.size});
    int err = 0;
    call(user::kDmaMap, p, nullptr, {m.fd.get()}, &err);
    why = err ? fmt::format("DMA_MAP error {}", err) : "";
    return err == 0;
  }
  bool dma_unmap(std::uint64_t iova, std::uint64_t size, std::string& why) override {
    std::vector<std::uint8_t> p;
    put(p, user::DmaUnmapRequest{24, 0, iova, size});
    int err = 0;
    call(user::kDmaUnmap, p, nullptr, {}, &err);
    why = err ? fmt::format("DMA_UNMAP error {}", err) : "";
    return err == 0;
  }
  bool msix_eventfd(int efd, std::string& why) override {
    std::vector<std::uint8_t> p;
    put(p, user::SetIrqsRequest{20, VFIO_IRQ_SET_DATA_EVENTFD | VFIO_IRQ_SET_ACTION_TRIGGER, VFIO_PCI_MSIX_IRQ_INDEX,
                                0, 1});
    int err = 0;
    call(user::kDeviceSetIrqs, p, nullptr, {efd}, &err);
    why = err ? fmt::format("SET_IRQS error {}", err) : "";
    return err == 0;
  }
  void msix_off() override {
    std::vector<std::uint8_t> p;
    put(p, user::SetIrqsRequest{20, VFIO_IRQ_SET_DATA_NONE | VFIO_IRQ_SET_ACTION_TRIGGER, VFIO_PCI_MSIX_IRQ_INDEX, 0, 0});
    call(user::kDeviceSetIrqs, p);
  }

 private:
  UniqueFd sock_;
  std::uint16_t id_ = 0;
  void* bar0_ = nullptr;
  std::uint64_t bar0_size_ = 0;
};

// The same device opened with the VFIO API directly, for the benchmarks.
class DirectTransport final : public Transport {
 public:
  DirectTransport(const std::string& bdf, nvgrace::vfio::host::VfioApi api) {
    auto parsed = nvgrace::Bdf::parse(bdf);
    if (!parsed) die(parsed.error().message);
    auto v = nvgrace::vfio::host::open_vfio({*parsed, api, "/sys", "/dev"});
    if (!v) die(v.error().message);
    vfio_ = std::move(*v);
    auto cfg = nvgrace::vfio::decode_region_info(*vfio_.device->region_info(VFIO_PCI_CONFIG_REGION_INDEX));
    config_offset_ = cfg->offset;
  }
  ~DirectTransport() override {
    if (bar0_) ::munmap(bar0_, bar0_size_);
    for (auto& [iova, m] : maps_) (void)vfio_.iommu->unmap(nvgrace::Iova{iova}, m.second);
  }
  volatile std::uint8_t* bar0() override {
    if (bar0_) return static_cast<volatile std::uint8_t*>(bar0_);
    auto d = nvgrace::vfio::decode_region_info(*vfio_.device->region_info(VFIO_PCI_BAR0_REGION_INDEX));
    bar0_size_ = d->region.size;
    bar0_ = ::mmap(nullptr, bar0_size_, PROT_READ | PROT_WRITE, MAP_SHARED, vfio_.device->fd(),
                   static_cast<off_t>(d->offset));
    if (bar0_ == MAP_FAILED) die("direct mmap of BAR0");
    return static_cast<volatile std::uint8_t*>(bar0_);
  }
  void config_write16(unsigned off, std::uint16_t v) override {
    (void)vfio_.device->pwrite(std::span(reinterpret_cast<const std::uint8_t*>(&v), 2), config_offset_ + off);
  }
  std::uint16_t config_read16(unsigned off) override {
    std::uint16_t v = 0;
    (void)vfio_.device->pread(std::span(reinterpret_cast<std::uint8_t*>(&v), 2), config_offset_ + off);
    return v;
  }
  bool dma_map(std::uint64_t iova, const Memory& m, std::string& why) override {
    auto r = vfio_.iommu->map(nvgrace::Iova{iova}, m.size, nvgrace::HostVirtAddr(m.data), true, true);
    why = r ? "" : r.error().message;
    if (r) maps_.emplace_back(iova, std::make_pair(m.data, m.size));
    return r.has_value();
  }
  bool dma_unmap(std::uint64_t iova, std::uint64_t size, std::string& why) override {
    auto r = vfio_.iommu->unmap(nvgrace::Iova{iova}, size);
    why = r ? "" : r.error().message;
    std::erase_if(maps_, [&](const auto& e) { return e.first == iova; });
    return r.has_value();
  }
  bool msix_eventfd(int efd, std::string& why) override {
    std::vector<std::uint8_t> buf(sizeof(vfio_irq_set) + 4);
    vfio_irq_set s{};
    s.argsz = static_cast<std::uint32_t>(buf.size());
    s.flags = VFIO_IRQ_SET_DATA_EVENTFD | VFIO_IRQ_SET_ACTION_TRIGGER;
    s.index = VFIO_PCI_MSIX_IRQ_INDEX;
    s.count = 1;
    std::memcpy(buf.data(), &s, sizeof s);
    std::memcpy(buf.data() + sizeof s, &efd, 4);
    auto r = vfio_.device->set_irqs(buf);
    why = r ? "" : r.error().message;
    return r.has_value();
  }
  void msix_off() override {
    vfio_irq_set s{};
    s.argsz = sizeof s;
    s.flags = VFIO_IRQ_SET_DATA_NONE | VFIO_IRQ_SET_ACTION_TRIGGER;
    s.index = VFIO_PCI_MSIX_IRQ_INDEX;
    (void)vfio_.device->set_irqs(std::span(reinterpret_cast<const std::uint8_t*>(&s), sizeof s));
  }

 private:
  nvgrace::vfio::host::OpenedVfio vfio_;
  std::uint64_t config_offset_ = 0;
  void* bar0_ = nullptr;
  std::uint64_t bar0_size_ = 0;
  std::vector<std::pair<std::uint64_t, std::pair<std::uint8_t*, std::uint64_t>>> maps_;
};

// A minimal NVMe admin-queue driver (NVMe base spec 2.0, sections 3.1, 3.5,
// 4.1, 5.17): one admin queue pair of 16 entries, interrupts on MSI-X vector 0.
class Nvme {
 public:
  static constexpr std::uint64_t kQueueIova = 0x100000;  // ASQ at +0, ACQ at +0x1000
  static constexpr unsigned kDepth = 16;

  Nvme(Transport& t, Memory& queues) : t_(t), q_(queues) {}

  bool start(std::string& why) {
    bar_ = t_.bar0();
    t_.config_write16(PCI_COMMAND, static_cast<std::uint16_t>(t_.config_read16(PCI_COMMAND) | PCI_COMMAND_MEMORY |
                                                                PCI_COMMAND_MASTER));
    efd_ = UniqueFd(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
    if (!t_.msix_eventfd(efd_.get(), why)) return false;
    if (!t_.dma_map(kQueueIova, q_, why)) return false;
    w32(0x14, 0);  // CC.EN = 0
    if (!wait_csts(0, why)) return false;
    std::memset(q_.data, 0, 0x2000);
    w32(0x24, (kDepth - 1) << 16 | (kDepth - 1));  // AQA
    w64(0x28, kQueueIova);                         // ASQ
    w64(0x30, kQueueIova + 0x1000);                // ACQ
    w32(0x14, 0x00460001);                         // EN, NVM, 4 KiB pages, 64 B SQE, 16 B CQE
    return wait_csts(1, why);
  }

  // Submits an admin command and waits for its completion and its MSI-X.
  // Returns the status field, or -1 on timeout.
  int admin(std::uint8_t opcode, std::uint64_t prp1, std::uint32_t cdw10, std::chrono::milliseconds limit) {
    auto* sqe = q_.data + tail_ * 64;
    std::memset(sqe, 0, 64);
    sqe[0] = opcode;
    const std::uint16_t cid = ++cid_;
    std::memcpy(sqe + 2, &cid, 2);
    std::memcpy(sqe + 24, &prp1, 8);
    std::memcpy(sqe + 40, &cdw10, 4);
    tail_ = (tail_ + 1) % kDepth;
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
    w32(0x1000, tail_);  // SQ 0 tail doorbell (CAP.DSTRD 0)
    // The completion counts once its entry is posted and its MSI-X has
    // arrived on the eventfd: the entry may be seen first.
    const auto deadline = Clock::now() + limit;
    bool interrupted = false;
    int status = -1;
    for (;;) {
      const auto* cqe = q_.data + 0x1000 + head_ * 16;
      std::uint32_t dw3 = 0;
      std::memcpy(&dw3, cqe + 12, 4);
      if (status < 0 && ((dw3 >> 16) & 1) == phase_) {
        head_ = (head_ + 1) % kDepth;
        if (head_ == 0) phase_ ^= 1;
        w32(0x1004, head_);  // CQ 0 head doorbell
        status = static_cast<int>(dw3 >> 17);
      }
      if (status >= 0 && interrupted) return status;
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
      if (left <= 0) return status >= 0 ? status : -1;  // no interrupt: interrupts() says so
      pollfd p{efd_.get(), POLLIN, 0};
      if (::poll(&p, 1, static_cast<int>(left)) == 1) {
        std::uint64_t n = 0;
        [[maybe_unused]] auto r = ::read(efd_.get(), &n, sizeof n);
        interrupts_ += n;
        interrupted = true;
      }
    }
  }

  void stop() {
    w32(0x14, 0);
    t_.msix_off();
    std::string why;
    t_.dma_unmap(kQueueIova, q_.size, why);
  }
  [[nodiscard]] std::uint64_t interrupts() const { return interrupts_; }
  [[nodiscard]] std::uint32_t csts() { return r32(0x1C); }

 private:
  std::uint32_t r32(unsigned off) { return *reinterpret_cast<volatile std::uint32_t*>(bar_ + off); }
  void w32(unsigned off, std::uint32_t v) { *reinterpret_cast<volatile std::uint32_t*>(bar_ + off) = v; }
  void w64(unsigned off, std::uint64_t v) {
    w32(off, static_cast<std::uint32_t>(v));
    w32(off + 4, static_cast<std::uint32_t>(v >> 32));
  }
  bool wait_csts(std::uint32_t rdy, std::string& why) {
    const auto deadline = Clock::now() + std::chrono::seconds(5);
    while ((r32(0x1C) & 1) != rdy) {
      if (r32(0x1C) & 2) {
        why = "controller fatal status (CSTS.CFS)";
        return false;
      }
      if (Clock::now() > deadline) {
        why = fmt::format("CSTS.RDY did not become {}", rdy);
        return false;
      }
    }
    return true;
  }

  Transport& t_;
  Memory& q_;
  volatile std::uint8_t* bar_ = nullptr;
  UniqueFd efd_;
  unsigned tail_ = 0, head_ = 0;
  std::uint32_t phase_ = 1;
  std::uint16_t cid_ = 0;
  std::uint64_t interrupts_ = 0;
};

constexpr std::uint64_t kDataIova = 0x400000;

int run_nvme(const std::string& socket, const std::string& serial) {
  UserTransport t(socket);
  Memory queues(2 << 20), data(2 << 20);
  Nvme nvme(t, queues);
  std::string why;
  if (!nvme.start(why)) die("NVMe enable through nvgrace: " + why);
  ok(true, "NVMe enabled: BAR0 mapped through the device fd nvgrace sent, admin queues in DMA-mapped memory");
  if (!t.dma_map(kDataIova, data, why)) die(why);
  const auto t0 = Clock::now();
  const int status = nvme.admin(0x06, kDataIova, 1, std::chrono::seconds(10));  // Identify Controller
  const auto us = std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - t0).count();
  const std::string sn(reinterpret_cast<const char*>(data.data + 4), 20);
  ok(status == 0 && nvme.interrupts() > 0,
     fmt::format("Identify Controller completed with status {:#x} in {} us, {} MSI-X interrupt(s) on the eventfd",
                 status, us, nvme.interrupts()));
  ok(sn.starts_with(serial), fmt::format("serial number '{}' found in the DMA-mapped buffer (want '{}')", sn, serial));
  // R28: after DMA_UNMAP the device cannot reach the buffer any more.
  if (!t.dma_unmap(kDataIova, data.size, why)) die(why);
  std::memset(data.data, 0xAB, 4096);
  const int late = nvme.admin(0x06, kDataIova, 1, std::chrono::seconds(5));
  const bool untouched = std::all_of(data.data, data.data + 4096, [](std::uint8_t b) { return b == 0xAB; });
  ok(untouched, fmt::format("Identify aimed at the unmapped IOVA {:#x} did not land ({})", kDataIova,
                            late < 0 ? std::string("no completion within 5 s")
                                     : fmt::format("completion status {:#x}; the IOMMU dropped the write", late)));
  nvme.stop();
  return failures;
}

// A fake BAR's sparse area through the region fd the serving process hands
// out, mapped as a VMM maps it; unmapped when it goes.
struct BarMapping {
  nvgrace::vfio::DecodedRegionInfo info;
  std::uint64_t length = 0;
  volatile std::uint64_t* words = nullptr;
  BarMapping(UserTransport& t, unsigned index) {
    int fd = -1;
    info = t.region(index, fd);
    if (fd < 0 || info.region.sparse.empty()) die(fmt::format("BAR{} came without an fd or sparse area", index));
    UniqueFd owned(fd);
    length = info.region.sparse[0].size;
    void* p = ::mmap(nullptr, length, PROT_READ | PROT_WRITE, MAP_SHARED, fd,
                     static_cast<off_t>(info.offset + info.region.sparse[0].offset));
    if (p == MAP_FAILED) die(fmt::format("mmap of BAR{}: {}", index, std::strerror(errno)));
    words = static_cast<volatile std::uint64_t*>(p);
  }
  ~BarMapping() { ::munmap(const_cast<std::uint64_t*>(words), length); }
  BarMapping(const BarMapping&) = delete;
  BarMapping& operator=(const BarMapping&) = delete;
};

// Eight bytes of the fake BAR4 through REGION_READ: the serving process's
// own mapping of the memory.
std::uint64_t bar4_read(UserTransport& t, std::uint64_t offset) {
  std::vector<std::uint8_t> q;
  put(q, user::RegionAccess{offset, 4, 8});
  auto r = t.call(user::kRegionRead, q);
  if (r.size() < 24) die("REGION_READ of BAR4: short reply");
  std::uint64_t v = 0;
  std::memcpy(&v, r.data() + 16, 8);
  return v;
}

int run_fakebar(const std::string& socket, std::uint64_t value) {
  UserTransport t(socket);
  for (unsigned index : {4u, 2u}) {
    BarMapping m(t, index);
    std::printf("info BAR%u: size %#llx, %#llx bytes mapped at fd offset %#llx\n", index,
                static_cast<unsigned long long>(m.info.region.size), static_cast<unsigned long long>(m.length),
                static_cast<unsigned long long>(m.info.offset));
    if (index == 4) {
      m.words[0x1000 / 8] = value;
      // The same bytes through REGION_READ, the trapped path.
      const std::uint64_t back = bar4_read(t, 0x1000);
      ok(back == value, fmt::format("BAR4+0x1000 written through the mmap reads {:#x} through REGION_READ", back));
    } else {
      std::printf("BAR2+0x2000 %#llx\n", static_cast<unsigned long long>(m.words[0x2000 / 8]));
    }
  }
  return failures;
}

// Reads (or writes) 8 bytes of a memory file at OFFSET through a shared
// mapping of GRANULE bytes (a page for /dev/mem; a device-DAX instance maps
// only in its own alignment). /dev/mem is mapped write-back, as nvgrace maps
// the device memory (busybox devmem maps it uncached, which x86 PAT refuses
// for RAM the kernel holds write-back).
int run_mapmem(const char* path, std::uint64_t granule, std::uint64_t offset, const char* value) {
  UniqueFd fd(::open(path, O_RDWR | O_CLOEXEC));
  if (!fd) die(fmt::format("{}: {}", path, std::strerror(errno)));
  if (granule == 0 || (granule & (granule - 1)) != 0) die(fmt::format("granule {:#x} is not a power of two", granule));
  void* p = ::mmap(nullptr, granule, PROT_READ | PROT_WRITE, MAP_SHARED, fd.get(),
                   static_cast<off_t>(offset & ~(granule - 1)));
  if (p == MAP_FAILED) die(fmt::format("mmap {} at {:#x}: {}", path, offset, std::strerror(errno)));
  auto* word = reinterpret_cast<volatile std::uint64_t*>(static_cast<std::uint8_t*>(p) + (offset & (granule - 1)));
  if (value) *word = std::stoull(value, nullptr, 0);
  std::printf("%#018llx\n", static_cast<unsigned long long>(*word));
  ::munmap(p, granule);
  return 0;
}

int run_hold(const std::string& socket) {
  UserTransport t(socket);
  Memory queues(2 << 20);
  Nvme nvme(t, queues);
  std::string why;
  if (!nvme.start(why)) die(why);
  std::printf("HOLDING with 1 DMA mapping and MSI-X vector 0 set\n");
  std::fflush(stdout);
  for (;;) ::pause();
}

// R41: the device keeps working while the server is upgraded or killed
// under it - DMA into mappings the old process made, completions on the
// eventfd it handed VFIO, and new mappings and config accesses answered by
// whichever process serves now - and the fake BAR4 keeps its bytes: a value
// written through the first process's mapping reads back through every
// later process, by REGION_READ each iteration and through a fresh mapping
// of the region fd every 16th. Any error or wrong value is a FAIL line; the
// last line gives the count and the longest iteration (the stall).
int run_loop(const std::string& socket, const std::string& serial, const std::string& stop_file) {
  constexpr std::uint64_t kFreshIova = 0x800000;
  constexpr std::uint64_t kBar4Offset = 0x3000;
  UserTransport t(socket);
  Memory queues(2 << 20), data(2 << 20), fresh(2 << 20);
  Nvme nvme(t, queues);
  std::string why;
  if (!nvme.start(why)) die("NVMe enable through nvgrace: " + why);
  if (!t.dma_map(kDataIova, data, why)) die(why);
  const std::uint16_t vendor = t.config_read16(PCI_VENDOR_ID);
  const std::uint64_t mark = std::uint64_t{0x5eed} << 48 | static_cast<std::uint32_t>(::getpid());
  BarMapping(t, 4).words[kBar4Offset / 8] = mark;
  std::printf("LOOP START vendor %#06x\n", vendor);
  std::uint64_t iterations = 0, fresh_maps = 0, bad = 0, bar4_maps = 0;
  double longest_ms = 0;
  while (::access(stop_file.c_str(), F_OK) != 0) {
    const auto t0 = Clock::now();
    ++iterations;
    const bool use_fresh = iterations % 2 == 0;
    if (const auto v = t.config_read16(PCI_VENDOR_ID); v != vendor) {
      ++bad;
      ok(false, fmt::format("iteration {}: vendor {:#06x} through the server, {:#06x} before", iterations, v, vendor));
    }
    if (const auto v = bar4_read(t, kBar4Offset); v != mark) {
      ++bad;
      ok(false, fmt::format("iteration {}: BAR4+{:#x} reads {:#x} through REGION_READ, {:#x} was written", iterations,
                            kBar4Offset, v, mark));
    }
    if (iterations % 16 == 0) {
      ++bar4_maps;
      if (const std::uint64_t v = BarMapping(t, 4).words[kBar4Offset / 8]; v != mark) {
        ++bad;
        ok(false, fmt::format("iteration {}: BAR4+{:#x} reads {:#x} through a fresh mapping, {:#x} was written",
                              iterations, kBar4Offset, v, mark));
      }
    }
    Memory& buffer = use_fresh ? fresh : data;
    const std::uint64_t iova = use_fresh ? kFreshIova : kDataIova;
    if (use_fresh && !t.dma_map(kFreshIova, fresh, why)) die(fmt::format("iteration {}: {}", iterations, why));
    std::memset(buffer.data, 0, 4096);
    const auto before = nvme.interrupts();
    const int status = nvme.admin(0x06, iova, 1, std::chrono::seconds(10));
    const std::string sn(reinterpret_cast<const char*>(buffer.data + 4), 20);
    if (status != 0 || nvme.interrupts() == before || !sn.starts_with(serial)) {
      ++bad;
      ok(false, fmt::format("iteration {}: Identify status {}, {} new interrupt(s), serial '{}'", iterations, status,
                            nvme.interrupts() - before, sn));
    }
    if (use_fresh) {
      if (!t.dma_unmap(kFreshIova, fresh.size, why)) die(fmt::format("iteration {}: {}", iterations, why));
      ++fresh_maps;
    }
    longest_ms = std::max(longest_ms, std::chrono::duration<double, std::milli>(Clock::now() - t0).count());
  }
  ok(bad == 0 && iterations > 0,
     fmt::format("LOOP iterations={} fresh_maps={} bad={} interrupts={} longest_ms={:.0f} bar4_maps={}", iterations,
                 fresh_maps, bad, nvme.interrupts(), longest_ms, bar4_maps));
  (void)t.dma_unmap(kDataIova, data.size, why);
  nvme.stop();
  return failures;
}

// The service under a stand-in systemd until SIGTERM, restarted whenever it
// dies other than by a clean stop (Restart=on-failure); one line per start.
volatile sig_atomic_t g_stop = 0;
int run_systemd(const std::string& notify, const std::string& pidfile, const std::string& log,
                std::vector<std::string> argv) {
  struct sigaction sa {};
  sa.sa_handler = [](int) { g_stop = 1; };
  ::sigaction(SIGTERM, &sa, nullptr);
  test::StandInSystemd sd(std::move(argv), notify, log);
  if (!sd.error().empty()) die(sd.error());
  unsigned starts = 0;
  auto start = [&] {
    if (!sd.start()) die(sd.error());
    ++starts;
    std::ofstream(pidfile + ".new") << sd.pid() << "\n";
    std::rename((pidfile + ".new").c_str(), pidfile.c_str());
    std::printf("info start %u: service pid %d, %zu descriptor(s) passed\n", starts, sd.pid(), sd.names().size());
  };
  start();
  while (!g_stop) {
    sd.drain();
    if (const int status = sd.reap(); status != -1) {
      if (WIFEXITED(status) && WEXITSTATUS(status) == 0) return 0;
      if (WIFSIGNALED(status) && WTERMSIG(status) == SIGTERM) return 0;
      start();
    }
    ::usleep(10000);
  }
  const int code = sd.stop();
  for (const auto& b : sd.bad()) ok(false, b);
  std::printf("info stopped: exit %d after %u start(s)\n", code, starts);
  return code == 0 ? failures : 1;
}

// The figures behind scripts/bench's ratios, one round: a 1 GiB DMA map,
// admin-command round trips completed by MSI-X, and 32-bit BAR0 reads.
int run_bench(Transport& t, const char* how) {
  {
    Memory big(1ull << 30);
    std::string why;
    const auto t0 = Clock::now();
    if (!t.dma_map(0x40000000, big, why)) die(why);
    std::printf("bench %s dma_map_1GiB_ms %.2f\n", how,
                std::chrono::duration<double, std::milli>(Clock::now() - t0).count());
    if (!t.dma_unmap(0x40000000, big.size, why)) die(why);
  }
  Memory queues(2 << 20), data(2 << 20);
  Nvme nvme(t, queues);
  std::string why;
  if (!nvme.start(why)) die(why);
  if (!t.dma_map(kDataIova, data, why)) die(why);
  constexpr int kCommands = 4000;  // ~0.5 s a round: shorter rounds were mostly TCG noise
  auto t0 = Clock::now();
  for (int i = 0; i < kCommands; ++i)
    if (nvme.admin(0x0A, kDataIova, 0x07, std::chrono::seconds(5)) != 0) die("Get Features failed");  // queues
  const double irq_s = std::chrono::duration<double>(Clock::now() - t0).count();
  std::printf("bench %s irq_roundtrips_per_s %.0f\n", how, kCommands / irq_s);
  constexpr int kReads = 2000000;
  std::uint32_t sink = 0;
  t0 = Clock::now();
  for (int i = 0; i < kReads; ++i) sink ^= nvme.csts();
  const double bar_s = std::chrono::duration<double>(Clock::now() - t0).count();
  std::printf("bench %s bar0_reads_per_s %.0f (%u)\n", how, kReads / bar_s, sink & 0);
  (void)t.dma_unmap(kDataIova, data.size, why);
  nvme.stop();
  return failures;
}

}  // namespace

int main(int argc, char** argv) {
  std::setvbuf(stdout, nullptr, _IOLBF, 0);
  const std::string cmd = argc > 1 ? argv[1] : "";
  if (cmd == "nvme" && argc == 4) return run_nvme(argv[2], argv[3]);
  if (cmd == "fakebar" && argc == 4) return run_fakebar(argv[2], std::stoull(argv[3], nullptr, 0));
  if (cmd == "hold" && argc == 3) return run_hold(argv[2]);
  if (cmd == "loop" && argc == 5) return run_loop(argv[2], argv[3], argv[4]);
  if (cmd == "systemd" && argc > 6 && std::string(argv[5]) == "--")
    return run_systemd(argv[2], argv[3], argv[4], std::vector<std::string>(argv + 6, argv + argc));
  if (cmd == "devmem" && (argc == 3 || argc == 4))
    return run_mapmem("/dev/mem", static_cast<std::uint64_t>(::sysconf(_SC_PAGESIZE)), std::stoull(argv[2], nullptr, 0),
                      argc == 4 ? argv[3] : nullptr);
  if (cmd == "mapmem" && (argc == 5 || argc == 6))
    return run_mapmem(argv[2], std::stoull(argv[3], nullptr, 0), std::stoull(argv[4], nullptr, 0),
                      argc == 6 ? argv[5] : nullptr);
  if (cmd == "bench" && argc == 3) {
    UserTransport t(argv[2]);
    return run_bench(t, "nvgrace");
  }
  if (cmd == "bench-direct" && argc == 4) {
    const std::string api = argv[3];
    DirectTransport t(argv[2], api == "cdev" ? nvgrace::vfio::host::VfioApi::cdev : nvgrace::vfio::host::VfioApi::group);
    return run_bench(t, "direct");
  }
  std::fprintf(stderr,
               "usage: e2e_host_client nvme SOCKET SERIAL | fakebar SOCKET VALUE | hold SOCKET | "
               "loop SOCKET SERIAL STOPFILE | systemd NOTIFY PIDFILE LOG -- PROGRAM ARGS... | devmem ADDR [VALUE] | "
               "mapmem PATH GRANULE OFFSET [VALUE] | "
               "bench SOCKET | bench-direct BDF cdev|group\n");
  return 2;
}
