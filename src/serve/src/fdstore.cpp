#include "nvgrace/serve/fdstore.hpp"

#include <fcntl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstdlib>
#include <cstring>

#include <fmt/format.h>

namespace nvgrace::serve {
namespace {

constexpr std::string_view kPrefix = "nvgrace-";

// "nvgrace-<number>" -> number; nullopt for any other name.
std::optional<int> number_of(std::string_view name) {
  if (!name.starts_with(kPrefix)) return std::nullopt;
  name.remove_prefix(kPrefix.size());
  int n = -1;
  const auto [p, ec] = std::from_chars(name.data(), name.data() + name.size(), n);
  if (ec != std::errc() || p != name.data() + name.size() || n < 0) return std::nullopt;
  return n;
}

std::vector<std::string> split(std::string_view text, char sep) {
  std::vector<std::string> out;
  std::size_t at = 0;
  for (;;) {
    const auto next = text.find(sep, at);
    out.emplace_back(text.substr(at, next == std::string_view::npos ? std::string_view::npos : next - at));
    if (next == std::string_view::npos) return out;
    at = next + 1;
  }
}

}  // namespace

std::string fdstore_name(int number) { return fmt::format("{}{}", kPrefix, number); }

Result<std::unique_ptr<FdStore>> FdStore::connect() {
  const char* where = std::getenv("NOTIFY_SOCKET");
  if (!where || !*where)
    return fail_errno(EINVAL, "--fdstore needs systemd's notify socket ($NOTIFY_SOCKET is not set: run it as a unit "
                      "with NotifyAccess=main and FileDescriptorStoreMax=, or use --keeper)");
  std::string address(where);
  if (address[0] == '@') address[0] = '\0';
  else if (address[0] != '/')
    return fail_errno(EAFNOSUPPORT, "$NOTIFY_SOCKET={}: only UNIX sockets (a path or @name) are supported", where);
  if (address.size() >= sizeof(sockaddr_un::sun_path))
    return fail_errno(ENAMETOOLONG, "$NOTIFY_SOCKET={} is too long for a UNIX socket address", where);
  std::unique_ptr<FdStore> s(new FdStore());
  s->socket_ = sys::UniqueFd(::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  if (!s->socket_) return fail_errno(errno, "socket: {}", std::strerror(errno));
  s->address_ = std::move(address);
  return s;
}

// One sd_notify datagram, with at most one descriptor.
Result<void> FdStore::send(std::string_view text, int fd) {
  sockaddr_un to{};
  to.sun_family = AF_UNIX;
  std::memcpy(to.sun_path, address_.data(), address_.size());
  iovec iov{const_cast<char*>(text.data()), text.size()};
  msghdr m{};
  m.msg_name = &to;
  m.msg_namelen = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + address_.size());
  m.msg_iov = &iov;
  m.msg_iovlen = 1;
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))] = {};
  if (fd >= 0) {
    m.msg_control = control;
    m.msg_controllen = sizeof control;
    cmsghdr* c = CMSG_FIRSTHDR(&m);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int));
    std::memcpy(CMSG_DATA(c), &fd, sizeof fd);
  }
  std::lock_guard lock(mutex_);
  ssize_t n;
  do n = ::sendmsg(socket_.get(), &m, MSG_NOSIGNAL);
  while (n < 0 && errno == EINTR);
  if (n < 0) return fail_errno(errno, "telling systemd '{}': {}", text.substr(0, text.find('\n')), std::strerror(errno));
  return {};
}

Result<void> FdStore::store(int fd, std::string_view name) {
  return send(fmt::format("FDSTORE=1\nFDNAME={}\nFDPOLL=0", name), fd);
}

Result<void> FdStore::remove(std::string_view name) { return send(fmt::format("FDSTOREREMOVE=1\nFDNAME={}", name), -1); }

Result<void> FdStore::hold_connection(std::size_t slot, int fd) {
  return store(fd, fdstore_name(kConnectionFd + static_cast<int>(slot)));
}

void FdStore::drop_connection(std::size_t slot) { (void)remove(fdstore_name(kConnectionFd + static_cast<int>(slot))); }

// A copy of this process's own at the lowest free number of the range, not
// closed on exec (an upgrade's successor finds it where the records say),
// and in the store under that number.
Result<int> FdStore::hold_copy(int fd) {
  auto copy = copy_into_kept_range(fd, false);
  if (!copy) return fail(copy.error());
  const int at = *copy;
  if (auto ok = store(at, fdstore_name(at)); !ok) {
    ::close(at);
    return fail(ok.error());
  }
  std::lock_guard lock(mutex_);
  copies_.insert(at);
  return at;
}

void FdStore::release_copy(int number) {
  (void)remove(fdstore_name(number));
  std::lock_guard lock(mutex_);
  if (copies_.erase(number) != 0) ::close(number);
}

void FdStore::adopt_copies(std::span<const int> numbers) {
  std::lock_guard lock(mutex_);
  for (int n : numbers)
    if (::fcntl(n, F_GETFD) >= 0) copies_.insert(n);
}

Result<void> FdStore::ready() { return send("READY=1", -1); }

Result<std::optional<FdStoreRestore>> restore_from_fdstore() {
  const char* pid_text = std::getenv("LISTEN_PID");
  const char* count_text = std::getenv("LISTEN_FDS");
  const char* names_text = std::getenv("LISTEN_FDNAMES");
  if (!pid_text || !count_text) return std::optional<FdStoreRestore>();
  const std::string pid_s(pid_text), count_s(count_text), names_s(names_text ? names_text : "");
  ::unsetenv("LISTEN_PID");
  ::unsetenv("LISTEN_FDS");
  ::unsetenv("LISTEN_FDNAMES");
  long pid = 0;
  int count = 0;
  if (std::from_chars(pid_s.data(), pid_s.data() + pid_s.size(), pid).ec != std::errc() || pid != ::getpid())
    return std::optional<FdStoreRestore>();  // another process's
  if (std::from_chars(count_s.data(), count_s.data() + count_s.size(), count).ec != std::errc() || count < 0)
    return fail("LISTEN_FDS={} is not a count", count_s);
  const auto names = split(names_s, ':');
  if (count == 0) return std::optional<FdStoreRestore>();
  if (static_cast<int>(names.size()) != count)
    return fail("LISTEN_FDNAMES names {} descriptors, LISTEN_FDS says {}", names.size(), count);
  constexpr int kFirst = 3;  // SD_LISTEN_FDS_START
  bool ours = false;
  int highest = kFirst + count;
  for (const auto& n : names) {
    if (n == kFdStoreStateName) ours = true;
    if (const auto at = number_of(n)) highest = std::max(highest, *at);
  }
  if (!ours) {
    for (const auto& n : names)
      if (number_of(n))
        return fail("systemd passed nvgrace's descriptors without its state ({}): the store is not whole",
                    kFdStoreStateName);
    return std::optional<FdStoreRestore>();  // socket activation of something else: not ours to touch
  }
  // Room above every number in play, then each moved there and put back
  // at its own number (a passed descriptor may sit where another belongs).
  rlimit lim{};
  if (::getrlimit(RLIMIT_NOFILE, &lim) == 0 && lim.rlim_cur < lim.rlim_max) {
    lim.rlim_cur = lim.rlim_max;
    (void)::setrlimit(RLIMIT_NOFILE, &lim);
  }
  std::vector<sys::UniqueFd> moved;
  for (int i = 0; i < count; ++i) {
    sys::UniqueFd m(::fcntl(kFirst + i, F_DUPFD_CLOEXEC, highest + 1));
    if (!m) return fail_errno(errno, "moving descriptor {} aside: {}", kFirst + i, std::strerror(errno));
    ::close(kFirst + i);
    moved.push_back(std::move(m));
  }
  FdStoreRestore out;
  for (int i = 0; i < count; ++i) {
    if (names[static_cast<std::size_t>(i)] == kFdStoreStateName) {
      out.state = std::move(moved[static_cast<std::size_t>(i)]);
      continue;
    }
    const auto at = number_of(names[static_cast<std::size_t>(i)]);
    if (!at) return fail("systemd passed a descriptor named '{}', which is not nvgrace's", names[static_cast<std::size_t>(i)]);
    if (::fcntl(*at, F_GETFD) >= 0)
      return fail_errno(EBUSY, "descriptor {} ({}) cannot be put back: the number is in use", *at,
                        names[static_cast<std::size_t>(i)]);
    // A copy (hold_copy) stays open across exec, as it was made.
    const bool copy = *at >= kKeptFd && *at < kConnectionFd;
    if (::dup3(moved[static_cast<std::size_t>(i)].get(), *at, copy ? 0 : O_CLOEXEC) < 0)
      return fail_errno(errno, "putting descriptor {} back: {}", *at, std::strerror(errno));
    out.placed.push_back(*at);
    if (copy) out.copies.push_back(*at);
  }
  return std::optional<FdStoreRestore>(std::move(out));
}

}  // namespace nvgrace::serve
