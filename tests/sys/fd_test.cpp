// sys: RAII for kernel objects and descriptors over UNIX sockets.
#include <catch2/catch.hpp>

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstring>

#include "nvgrace/common/checked.hpp"
#include "nvgrace/sys/fd.hpp"
#include "nvgrace/sys/memfd.hpp"
#include "nvgrace/sys/scm.hpp"

using namespace nvgrace;
using namespace nvgrace::sys;

TEST_CASE("Mapping: a length that is no whole number of pages keeps its last page and gives back the rest") {
  // Pages are the system's (64 KiB on many Grace hosts), never assumed 4 KiB.
  const auto page = static_cast<std::uint64_t>(::sysconf(_SC_PAGESIZE));
  const auto mapped = [](const void* p) {  // mincore: 0 for the page of a mapped byte, -1/ENOMEM if unmapped
    unsigned char v = 0;
    return ::mincore(const_cast<void*>(p), 1, &v);
  };
  for (const std::uint64_t length : {page + 1, 3 * page - 1}) {
    auto m = Mapping::map(-1, 0, length, 2 * MiB, PROT_READ | PROT_WRITE, MAP_PRIVATE).value();
    REQUIRE(reinterpret_cast<std::uintptr_t>(m.data()) % (2 * MiB) == 0);
    m.data()[length - 1] = 1;
    const auto* end = m.data() + align_up(length, page).value();
    CHECK(mapped(end - page) == 0);
    // The 2 MiB of alignment reserved past the end are unmapped, not left
    // behind (munmap of an address inside a page fails).
    errno = 0;
    const int past = mapped(end);
    const int err = errno;
    CHECK(past == -1);
    CHECK(err == ENOMEM);
    const void* at = m.data();
    m.reset();
    CHECK(mapped(at) == -1);
  }
}

TEST_CASE("UniqueFd: a moved-from fd is empty, release gives up ownership, duplicate is a second owner") {
  auto a = make_memfd("sys-test", 4096).value();
  const int raw = a.get();
  UniqueFd b = std::move(a);
  CHECK_FALSE(a);
  CHECK(b.get() == raw);
  auto d = duplicate(b.get()).value();
  CHECK(d.get() != raw);
  CHECK(::lseek(d.get(), 0, SEEK_END) == 4096);  // the same file
  const int released = b.release();
  CHECK_FALSE(b);
  CHECK(::fcntl(released, F_GETFD) >= 0);  // still open: nobody closed it
  ::close(released);
}

TEST_CASE("scm: bytes and descriptors arrive together, the descriptors with the first byte") {
  int sv[2];
  REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0);
  UniqueFd left(sv[0]), right(sv[1]);
  auto m1 = make_memfd("scm-a", 4096).value();
  auto m2 = make_memfd("scm-b", 8192).value();
  const std::uint8_t msg[] = {1, 2, 3, 4, 5};
  const int fds[] = {m1.get(), m2.get()};
  REQUIRE(send_with_fds(left.get(), msg, fds).has_value());
  std::uint8_t buf[16] = {};
  std::array<UniqueFd, 4> got;
  auto r = recv_with_fds(right.get(), buf, got).value();
  CHECK(r.bytes == 5);
  CHECK(r.fds == 2);
  CHECK(r.dropped == 0);
  CHECK(std::memcmp(buf, msg, 5) == 0);
  CHECK(::lseek(got[0].get(), 0, SEEK_END) == 4096);
  CHECK(::lseek(got[1].get(), 0, SEEK_END) == 8192);
  // More descriptors than the caller has room for: the rest are closed here.
  REQUIRE(send_with_fds(left.get(), msg, fds).has_value());
  std::array<UniqueFd, 1> one;
  r = recv_with_fds(right.get(), buf, one).value();
  CHECK(r.fds == 1);
  CHECK(r.dropped == 1);
  // The peer's end closed: 0 bytes.
  left.reset();
  r = recv_with_fds(right.get(), buf, one).value();
  CHECK(r.bytes == 0);
}
