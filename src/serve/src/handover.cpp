#include "nvgrace/serve/handover.hpp"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cstring>
#include <set>
#include <vector>

#include "nvgrace/sys/memfd.hpp"

extern char** environ;

namespace nvgrace::serve {

namespace {

constexpr std::array<char, 8> kMagic{'N', 'V', 'G', 'R', 'S', 'T', 'A', 'T'};

struct Header {
  std::array<char, 8> magic{};
  std::uint32_t format = 0;
  std::uint32_t reserved = 0;
  std::uint64_t size = 0;      // of the body
  std::uint64_t checksum = 0;  // FNV-1a 64 of the body
};
static_assert(sizeof(Header) == 32);

// FNV-1a, 64 bits: catches a truncated or damaged document; no packaged
// library here has a checksum small enough to be worth the dependency.
std::uint64_t fnv1a(std::span<const std::uint8_t> data) {
  std::uint64_t h = 0xcbf29ce484222325ULL;
  for (auto b : data) {
    h ^= b;
    h *= 0x100000001b3ULL;
  }
  return h;
}

Result<void> write_all(int fd, const void* data, std::size_t size) {
  const auto* p = static_cast<const std::uint8_t*>(data);
  while (size > 0) {
    const ssize_t n = ::write(fd, p, size);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return fail_errno(errno, "writing the hand-over: {}", std::strerror(errno));
    p += n;
    size -= static_cast<std::size_t>(n);
  }
  return {};
}

Result<void> read_all(int fd, std::uint64_t offset, void* data, std::size_t size) {
  auto* p = static_cast<std::uint8_t*>(data);
  while (size > 0) {
    const ssize_t n = ::pread(fd, p, size, static_cast<off_t>(offset));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return fail_errno(errno, "reading the hand-over: {}", std::strerror(errno));
    if (n == 0) return fail_errno(EINVAL, "the hand-over ends {} bytes early", size);
    p += n;
    size -= static_cast<std::size_t>(n);
    offset += static_cast<std::uint64_t>(n);
  }
  return {};
}

}  // namespace

std::vector<std::uint8_t> encode_handover(nlohmann::json doc, std::span<const int> fds) {
  doc["fds"] = std::vector<int>(fds.begin(), fds.end());
  const std::vector<std::uint8_t> body = nlohmann::json::to_cbor(doc);
  Header h;
  h.magic = kMagic;
  h.format = kHandoverFormat;
  h.size = body.size();
  h.checksum = fnv1a(body);
  std::vector<std::uint8_t> out(sizeof h + body.size());
  std::memcpy(out.data(), &h, sizeof h);
  std::memcpy(out.data() + sizeof h, body.data(), body.size());
  return out;
}

Result<sys::UniqueFd> write_handover(nlohmann::json doc, std::span<const int> fds) {
  const auto bytes = encode_handover(std::move(doc), fds);
  sys::UniqueFd fd(::memfd_create("nvgrace-handover", MFD_CLOEXEC | MFD_ALLOW_SEALING));
  if (!fd) return fail_errno(errno, "memfd for the hand-over: {}", std::strerror(errno));
  if (auto ok = write_all(fd.get(), bytes.data(), bytes.size()); !ok) return fail(ok.error());
  if (::fcntl(fd.get(), F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE | F_SEAL_SEAL) != 0)
    return fail_errno(errno, "sealing the hand-over: {}", std::strerror(errno));
  return fd;
}

Result<Handover> read_handover(int fd) {
  struct stat st {};
  if (::fstat(fd, &st) != 0) return fail_errno(errno, "the hand-over's descriptor {}: {}", fd, std::strerror(errno));
  if (static_cast<std::uint64_t>(st.st_size) > (1ull << 31))
    return fail_errno(EINVAL, "descriptor {} holds {} bytes: no nvgrace hand-over", fd, static_cast<long long>(st.st_size));
  std::vector<std::uint8_t> all(static_cast<std::size_t>(st.st_size));
  if (auto ok = read_all(fd, 0, all.data(), all.size()); !ok) return fail(ok.error());
  return decode_handover(all);
}

std::vector<std::string> successor_environment(std::span<const std::string_view> drop,
                                               std::span<const std::string> add) {
  std::vector<std::string> env;
  for (char** e = environ; e && *e; ++e) {
    const std::string_view v(*e);
    const auto eq = v.find('=');
    const auto name = v.substr(0, eq);
    if (std::find(drop.begin(), drop.end(), name) == drop.end()) env.emplace_back(v);
  }
  env.insert(env.end(), add.begin(), add.end());
  return env;
}

std::vector<char*> exec_strings(std::vector<std::string>& strings) {
  std::vector<char*> out;
  for (auto& s : strings) out.push_back(s.data());
  out.push_back(nullptr);
  return out;
}

Result<std::vector<int>> handover_descriptors(std::span<const std::uint8_t> bytes) {
  Header h;
  if (bytes.size() < sizeof h) return fail_errno(EINVAL, "{} bytes hold no nvgrace hand-over", bytes.size());
  std::memcpy(&h, bytes.data(), sizeof h);
  if (h.magic != kMagic || h.format != kHandoverFormat || bytes.size() - sizeof h != h.size ||
      fnv1a(bytes.subspan(sizeof h)) != h.checksum)
    return fail_errno(EBADMSG, "not a whole nvgrace hand-over of format {}", kHandoverFormat);
  const auto doc = nlohmann::json::from_cbor(bytes.subspan(sizeof h), true, false);
  std::vector<int> out;
  if (doc.is_object())
    if (const auto it = doc.find("fds"); it != doc.end() && it->is_array())
      for (const auto& n : *it)
        if (n.is_number_integer() && n.get<long long>() >= 0 && n.get<long long>() <= INT32_MAX)
          out.push_back(n.get<int>());
  return out;
}

Result<Handover> decode_handover(std::span<const std::uint8_t> bytes, std::span<const int> duplicate) {
  Header h;
  if (bytes.size() < sizeof h) return fail_errno(EINVAL, "{} bytes hold no nvgrace hand-over", bytes.size());
  std::memcpy(&h, bytes.data(), sizeof h);
  if (h.magic != kMagic) return fail_errno(EINVAL, "no nvgrace hand-over (its magic is missing)");
  if (h.format != kHandoverFormat)
    return fail_errno(EPROTO, "the hand-over is in format {}; this binary reads format {} only", h.format,
                      kHandoverFormat);
  if (bytes.size() - sizeof h != h.size)
    return fail_errno(EINVAL, "the hand-over's header announces {} bytes of document; {} came", h.size,
                      bytes.size() - sizeof h);
  const auto body = bytes.subspan(sizeof h);
  if (fnv1a(body) != h.checksum) return fail_errno(EBADMSG, "the hand-over's checksum does not match its document");
  Handover out;
  out.doc = nlohmann::json::from_cbor(body, true, false);
  if (out.doc.is_discarded() || !out.doc.is_object())
    return fail_errno(EBADMSG, "the hand-over's document is not a CBOR object");
  const auto it = out.doc.find("fds");
  if (it == out.doc.end() || !it->is_array()) return fail_errno(EBADMSG, "the hand-over lists no descriptors");
  // Every descriptor checked before any is owned: a refused hand-over
  // closes nothing.
  std::vector<int> numbers;
  for (const auto& n : *it) {
    if (!n.is_number_integer() || n.get<long long>() < 0 || n.get<long long>() > INT32_MAX)
      return fail_errno(EBADMSG, "the hand-over lists {} as a descriptor", n.dump());
    const int f = n.get<int>();
    if (::fcntl(f, F_GETFD) < 0)
      return fail_errno(EBADF, "the hand-over names descriptor {}, which is not open here", f);
    numbers.push_back(f);
  }
  // A descriptor listed again (a keeper's one copy of a file two DMA
  // mappings use) is owned once more as a duplicate.
  std::vector<sys::UniqueFd> owned;
  std::set<int> seen;
  for (int f : numbers) {
    if (!seen.insert(f).second || std::find(duplicate.begin(), duplicate.end(), f) != duplicate.end()) {
      sys::UniqueFd again(::fcntl(f, F_DUPFD_CLOEXEC, 0));
      if (!again) return fail_errno(errno, "duplicating descriptor {}: {}", f, std::strerror(errno));
      owned.push_back(std::move(again));
      continue;
    }
    ::fcntl(f, F_SETFD, FD_CLOEXEC);
    owned.emplace_back(f);
  }
  out.fds = sys::FdTable(std::move(owned));
  return out;
}

}  // namespace nvgrace::serve
