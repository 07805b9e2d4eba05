#include "nvgrace/serve/store.hpp"

#include <sys/mman.h>
#include <sys/stat.h>

#include <array>
#include <cstring>

#include "nvgrace/sys/memfd.hpp"

namespace nvgrace::serve {

namespace {
constexpr std::array<char, 8> kStoreMagic{'N', 'V', 'G', 'R', 'K', 'E', 'E', 'P'};
// Magic, slot count, then the slot headers; a whole page of the largest
// size Linux uses (64 KiB, arm64), so the records start on a page.
constexpr std::uint64_t kHeaderRoom = 65536;
constexpr std::uint64_t size_for(std::size_t slots) { return kHeaderRoom + slots * 2 * StateStore::kRecordRoom; }
}  // namespace

Result<StateStore> StateStore::create(std::size_t slots) {
  if (slots == 0 || slots > kMaxSlots) return fail_errno(EINVAL, "a state store holds 1..{} sockets", kMaxSlots);
  auto fd = sys::make_memfd("nvgrace-state", size_for(slots));
  if (!fd) return fail(fd.error().context("state store"));
  auto map = sys::Mapping::map(fd->get(), 0, size_for(slots), sys::page_size(), PROT_READ | PROT_WRITE, MAP_SHARED);
  if (!map) return fail(map.error().context("state store"));
  std::memcpy(map->data(), kStoreMagic.data(), kStoreMagic.size());
  const std::uint64_t n = slots;
  std::memcpy(map->data() + 8, &n, sizeof n);
  return StateStore(std::move(*fd), std::move(*map), slots);
}

Result<StateStore> StateStore::attach(sys::UniqueFd fd) {
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0 || st.st_size < static_cast<off_t>(kHeaderRoom))
    return fail_errno(EINVAL, "descriptor {} holds no state store", fd.get());
  auto map = sys::Mapping::map(fd.get(), 0, static_cast<std::uint64_t>(st.st_size), sys::page_size(),
                               PROT_READ | PROT_WRITE, MAP_SHARED);
  if (!map) return fail(map.error().context("state store"));
  std::uint64_t n = 0;
  std::memcpy(&n, map->data() + 8, sizeof n);
  if (std::memcmp(map->data(), kStoreMagic.data(), kStoreMagic.size()) != 0 || n == 0 || n > kMaxSlots ||
      static_cast<std::uint64_t>(st.st_size) != size_for(n))
    return fail_errno(EINVAL, "descriptor {} holds no state store", fd.get());
  return StateStore(std::move(fd), std::move(*map), n);
}

StateStore::SlotHeader& StateStore::header(std::size_t slot) const {
  return *reinterpret_cast<SlotHeader*>(map_.data() + 64 + slot * sizeof(SlotHeader));
}

std::uint8_t* StateStore::copy(std::size_t slot, unsigned which) const {
  return map_.data() + kHeaderRoom + (slot * 2 + which) * kRecordRoom;
}

Result<void> StateStore::publish(std::size_t slot, std::span<const std::uint8_t> record) {
  if (slot >= slots_) return fail_errno(EINVAL, "state store: no socket {}", slot);
  if (record.size() > kRecordRoom)
    return fail_errno(E2BIG, "state store: a record of {} bytes does not fit {}", record.size(), kRecordRoom);
  auto& h = header(slot);
  std::atomic_ref<std::uint64_t> current(h.current);
  const std::uint64_t now = current.load(std::memory_order_acquire);
  const unsigned next = static_cast<unsigned>((now & 1) ^ 1);
  std::memcpy(copy(slot, next), record.data(), record.size());
  std::atomic_ref<std::uint64_t>(h.length[next]).store(record.size(), std::memory_order_relaxed);
  // The count goes up by one and its low bit names the copy: one store
  // makes the new record current.
  current.store((now | 1) + 1 + next, std::memory_order_release);
  return {};
}

std::vector<std::uint8_t> StateStore::record(std::size_t slot) const {
  if (slot >= slots_) return {};
  auto& h = header(slot);
  const std::uint64_t now = std::atomic_ref<std::uint64_t>(h.current).load(std::memory_order_acquire);
  if (now < 2) return {};
  const unsigned which = static_cast<unsigned>(now & 1);
  const std::uint64_t len = std::atomic_ref<std::uint64_t>(h.length[which]).load(std::memory_order_relaxed);
  if (len > kRecordRoom) return {};
  return std::vector<std::uint8_t>(copy(slot, which), copy(slot, which) + len);
}

std::atomic_ref<std::uint64_t> StateStore::replied(std::size_t slot) const {
  return std::atomic_ref<std::uint64_t>(header(slot).replied);
}

}  // namespace nvgrace::serve
