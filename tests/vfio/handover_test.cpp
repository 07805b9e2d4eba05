// R41 in process: what a server hands its successor. A device (the variant
// over the emulated function) saved and restored into one built afresh
// answers exactly as the first; a session keeps what the client negotiated,
// its DMA table and its interrupts; the hand-over's envelope refuses what
// it cannot trust.
#include <catch2/catch.hpp>

#include <fcntl.h>
#include <linux/pci_regs.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>

#include <nlohmann/json.hpp>

#include "nvgrace/devices/emulated.hpp"
#include "nvgrace/serve/handover.hpp"
#include "nvgrace/serve/store.hpp"
#include "nvgrace/sys/memfd.hpp"
#include "nvgrace/vfio/emulated/function.hpp"
#include "nvgrace/vfio/function.hpp"
#include "nvgrace/vfio/user/session.hpp"

using namespace nvgrace;

namespace {

std::unique_ptr<vfio::Variant> gpu(const std::string& profile = "gh200") {
  devices::EmulatedOptions o;
  o.profile = profile;
  o.mem_size = 0x60000000;  // 1 GiB resmem + 512 MiB usemem, sparse
  auto emu = devices::make_emulated_device(o);
  if (!emu) FAIL(emu.error().error.message);
  return std::move(emu->device);
}

// Saves `from` and restores it into `to` the way an upgrade does: the
// descriptors travel as duplicates (as across exec, the same open files).
void hand_over(const vfio::Function& from, vfio::Function& to) {
  sys::FdTable out;
  auto state = from.save_state(out);
  REQUIRE(state);
  // Through CBOR, as the envelope carries it.
  const auto doc = nlohmann::json::from_cbor(nlohmann::json::to_cbor(*state));
  std::vector<sys::UniqueFd> fds;
  for (int fd : out.borrowed()) fds.emplace_back(::fcntl(fd, F_DUPFD_CLOEXEC, 0));
  sys::FdTable in(std::move(fds));
  auto ok = to.restore_state(doc, in);
  REQUIRE(ok);
  CHECK(in.untaken() == 0);
}

std::vector<std::uint8_t> bytes(vfio::Function& f, RegionIndex r, std::uint64_t off, std::size_t n) {
  std::vector<std::uint8_t> b(n);
  auto got = f.read(r, off, b);
  REQUIRE(got);
  REQUIRE(*got == n);
  return b;
}

}  // namespace

TEST_CASE("handover: a GH200 restored from its saved state answers as before - config, fake BARs, memory, BAR0, "
          "counters (R41)") {
  auto a = gpu();
  // The guest's programming (R11-R14), data in both fake BARs, a BAR0 register.
  REQUIRE(vfio::config_write(*a, ConfigOffset{PCI_COMMAND}, 2, PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER));
  REQUIRE(vfio::config_write(*a, ConfigOffset{PCI_BASE_ADDRESS_4}, 4, 0x40000000u));
  REQUIRE(vfio::config_write(*a, ConfigOffset{PCI_BASE_ADDRESS_5}, 4, 0x1u));
  REQUIRE(vfio::config_write(*a, ConfigOffset{PCI_BASE_ADDRESS_2}, 4, 0x80000000u));
  const std::vector<std::uint8_t> data{1, 2, 3, 4, 5, 6, 7, 8};
  REQUIRE(a->write(vfio::kBar4Region, 0x1000, data));
  REQUIRE(a->write(vfio::kBar2Region, 0x10, data));
  const std::uint32_t reg = 0xC0FFEE;
  REQUIRE(a->write(vfio::kBar0Region, 0x100, std::span(reinterpret_cast<const std::uint8_t*>(&reg), 4)));
  // A write into BAR4's unbacked tail is dropped and counted (R17).
  const auto bar4 = a->region(vfio::kBar4Region);
  REQUIRE(bar4);
  const auto usemem_len = a->layout().usemem->length;
  if (usemem_len < bar4->size) REQUIRE(a->write(vfio::kBar4Region, usemem_len, data));
  const auto config_a = vfio::config_dump(*a, 4096);
  REQUIRE(config_a);
  const auto& config = *config_a;

  auto b = gpu();
  CHECK(*vfio::config_dump(*b, 4096) != config);  // a fresh device differs until restored
  hand_over(*a, *b);
  CHECK(*vfio::config_dump(*b, 4096) == config);
  CHECK(bytes(*b, vfio::kBar4Region, 0x1000, 8) == data);
  CHECK(bytes(*b, vfio::kBar2Region, 0x10, 8) == data);
  CHECK(bytes(*b, vfio::kBar0Region, 0x100, 4) == bytes(*a, vfio::kBar0Region, 0x100, 4));
  CHECK(b->dropped_writes() == a->dropped_writes());
  // Same memory, not a copy: a write through one is seen through the other.
  const std::vector<std::uint8_t> later{9, 9, 9, 9};
  REQUIRE(b->write(vfio::kBar4Region, 0x2000, later));
  CHECK(bytes(*a, vfio::kBar4Region, 0x2000, 4) == later);
  // The region the client maps is the handed-over memory.
  auto area = b->mmap(vfio::kBar4Region, 0, 0x10000);
  REQUIRE(area);
  auto* p = static_cast<std::uint8_t*>(::mmap(nullptr, 0x10000, PROT_READ, MAP_SHARED, area->fd,
                                              static_cast<off_t>(area->fd_offset)));
  REQUIRE(p != MAP_FAILED);
  CHECK(std::memcmp(p + 0x1000, data.data(), data.size()) == 0);
  ::munmap(p, 0x10000);
}

TEST_CASE("handover: a reset carries over - decode off gives EIO on the successor too, BAR0 stays cleared (R20, R41)") {
  auto a = gpu();
  const std::uint32_t reg = 0x12345678;
  REQUIRE(a->write(vfio::kBar0Region, 0x200, std::span(reinterpret_cast<const std::uint8_t*>(&reg), 4)));
  REQUIRE(a->reset());
  auto b = gpu();
  hand_over(*a, *b);
  std::vector<std::uint8_t> buf(4);
  auto r = b->read(vfio::kBar4Region, 0, buf);
  REQUIRE_FALSE(r);
  CHECK(r.error().err == EIO);
  CHECK(bytes(*b, vfio::kBar0Region, 0x200, 4) == std::vector<std::uint8_t>(4, 0));
}

TEST_CASE("handover: a state is refused by a device it does not fit - another GPU, another kind, missing fields") {
  auto a = gpu("gh200");
  sys::FdTable out;
  auto state = a->save_state(out);
  REQUIRE(state);
  auto dup_all = [&] {
    std::vector<sys::UniqueFd> fds;
    for (int fd : out.borrowed()) fds.emplace_back(::fcntl(fd, F_DUPFD_CLOEXEC, 0));
    return sys::FdTable(std::move(fds));
  };
  {
    auto b = gpu("gb200");  // another device id (and no resmem)
    auto in = dup_all();
    auto ok = b->restore_state(*state, in);
    REQUIRE_FALSE(ok);
    CHECK(ok.error().message.find("hand-over state") != std::string::npos);
  }
  {
    auto b = gpu("gh200");
    auto in = dup_all();
    auto bad = *state;
    bad["function"]["kind"] = "host";
    auto ok = b->restore_state(bad, in);
    REQUIRE_FALSE(ok);
    CHECK(ok.error().message.find("a host was saved where this server has a emulated") != std::string::npos);
  }
  {
    auto b = gpu("gh200");
    auto in = dup_all();
    auto bad = *state;
    bad.erase("overlay");
    auto ok = b->restore_state(bad, in);
    REQUIRE_FALSE(ok);
    CHECK(ok.error().message == "hand-over state: no 'overlay'");
  }
  {
    auto b = gpu("gh200");
    sys::FdTable none;
    auto ok = b->restore_state(*state, none);
    REQUIRE_FALSE(ok);
    CHECK(ok.error().err == EBADF);
  }
}

TEST_CASE("handover: a session keeps the client's limits, DMA table and interrupts across a save and restore (R28, R29, R41)") {
  auto dev = gpu();
  vfio::user::Session a(*dev);
  nlohmann::json saved;
  {
    // What a negotiated client leaves: written directly through restore()
    // of a hand-made state, then saved again - the round trip must be exact.
    saved = {{"negotiated", true},
             {"max_msg_fds", 16u},
             {"max_data_xfer_size", 65536u},
             {"dma", nlohmann::json::array({{{"address", 0x100000u}, {"size", 0x2000u}, {"offset", 0u},
                                             {"flags", 3u}, {"had_fd", true}}})},
             {"irqs", nlohmann::json::array({{{"index", 2u}, {"triggers", 6u}, {"calls", 1u}}})}};
    REQUIRE(a.restore(saved));
  }
  CHECK(a.negotiated());
  CHECK(a.client_max_msg_fds() == 16);
  CHECK(a.client_max_data_xfer_size() == 65536);
  REQUIRE(a.dma().size() == 1);
  CHECK(a.dma()[0].address == 0x100000);
  REQUIRE(a.irqs().size() == 1);
  CHECK(a.irqs()[0].triggers == 6);
  CHECK(a.save() == saved);
  vfio::user::Session b(*dev);
  auto bad = saved;
  bad["max_msg_fds"] = 1ull << 40;
  CHECK_FALSE(b.restore(bad));
  CHECK_FALSE(b.negotiated());  // a refused state leaves the session as it was
  bad = saved;
  bad["dma"][0].erase("size");
  CHECK_FALSE(b.restore(bad));
  CHECK(b.dma().empty());
}

TEST_CASE("handover: the envelope refuses another format, a wrong checksum, a truncated document and descriptors "
          "that are not open, and owns one named twice as a duplicate") {
  auto keep = sys::make_memfd("x", 4096);
  REQUIRE(keep);
  const int fds[] = {::fcntl(keep->get(), F_DUPFD_CLOEXEC, 0)};  // read_handover owns what it lists
  auto fd = serve::write_handover({{"a", 1}}, fds);
  REQUIRE(fd);
  auto good = serve::read_handover(fd->get());
  REQUIRE(good);
  CHECK(good->doc["a"] == 1);
  // Sealed: the document cannot change under its reader.
  CHECK(::pwrite(fd->get(), "x", 1, 40) < 0);

  auto copy_with = [&](std::size_t at, std::uint8_t value, bool truncate) {
    struct stat st {};
    REQUIRE(::fstat(fd->get(), &st) == 0);
    std::vector<std::uint8_t> all(static_cast<std::size_t>(st.st_size));
    REQUIRE(::pread(fd->get(), all.data(), all.size(), 0) == static_cast<ssize_t>(all.size()));
    if (truncate) all.resize(all.size() - 1);
    else all[at] = value;
    auto m = sys::make_memfd("copy", 0);
    REQUIRE(m);
    REQUIRE(::write(m->get(), all.data(), all.size()) == static_cast<ssize_t>(all.size()));
    return std::move(*m);
  };
  {
    auto m = copy_with(8, 2, false);  // format 2
    auto r = serve::read_handover(m.get());
    REQUIRE_FALSE(r);
    CHECK(r.error().message == "the hand-over is in format 2; this binary reads format 1 only");
  }
  {
    auto m = copy_with(0, 'X', false);
    CHECK_FALSE(serve::read_handover(m.get()));
  }
  {
    auto m = copy_with(40, 0xFF, false);  // a byte of the document
    auto r = serve::read_handover(m.get());
    REQUIRE_FALSE(r);
    CHECK(r.error().message == "the hand-over's checksum does not match its document");
  }
  {
    auto m = copy_with(0, 0, true);
    CHECK_FALSE(serve::read_handover(m.get()));
  }
  {
    const int closed[] = {1 << 20};
    auto m = serve::write_handover({{"a", 1}}, closed);
    REQUIRE(m);
    auto r = serve::read_handover(m->get());
    REQUIRE_FALSE(r);
    CHECK(r.error().err == EBADF);
  }
  {
    // Named twice (a keeper's one copy of a file two DMA mappings use): the
    // second is owned as a duplicate, never the same number twice.
    const int d = ::fcntl(keep->get(), F_DUPFD_CLOEXEC, 0);
    const int twice[] = {d, d};
    auto m = serve::write_handover({{"a", 1}}, twice);
    REQUIRE(m);
    auto r = serve::read_handover(m->get());
    REQUIRE(r);
    auto first = r->fds.take(0), second = r->fds.take(1);
    REQUIRE(first);
    REQUIRE(second);
    CHECK(first->get() == d);
    CHECK(second->get() != d);
    struct stat a {}, b {};
    REQUIRE(::fstat(first->get(), &a) == 0);
    REQUIRE(::fstat(second->get(), &b) == 0);
    CHECK(a.st_ino == b.st_ino);
  }
}

TEST_CASE("handover: the state store keeps the last whole record per socket, in another process's view too, and "
          "its journal word (R41)") {
  auto store = serve::StateStore::create(2);
  REQUIRE(store);
  CHECK(store->record(0).empty());
  const std::vector<std::uint8_t> a(1000, 0xAA), b(3000, 0xBB);
  REQUIRE(store->publish(0, a));
  CHECK(store->record(0) == a);
  REQUIRE(store->publish(0, b));
  CHECK(store->record(0) == b);
  CHECK(store->record(1).empty());  // sockets are separate
  store->replied(1).store((1ull << 32) | 7);
  // What a successor sees: the same memfd, attached through another descriptor.
  auto other = serve::StateStore::attach(sys::UniqueFd(::fcntl(store->fd(), F_DUPFD_CLOEXEC, 0)));
  REQUIRE(other);
  CHECK(other->slots() == 2);
  CHECK(other->record(0) == b);
  CHECK(other->replied(1).load() == ((1ull << 32) | 7));
  // A record too large for its room is refused and the current one stays.
  const std::vector<std::uint8_t> huge(serve::StateStore::kRecordRoom + 1, 1);
  auto r = store->publish(0, huge);
  REQUIRE_FALSE(r);
  CHECK(r.error().err == E2BIG);
  CHECK(other->record(0) == b);
  // Not a store.
  auto m = sys::make_memfd("not-a-store", 8192);
  REQUIRE(m);
  CHECK_FALSE(serve::StateStore::attach(std::move(*m)));
}
