// A server handing itself to its successor across exec (nvgrace-model.md
// R41): the hand-over document and the descriptors it names.
//
// The document travels in a memfd: a header - magic, format version, the
// body's size and its FNV-1a 64 checksum - and the body, the document as
// CBOR (nlohmann::json; byte strings stay binary). The descriptors stay open
// across exec at the numbers the document lists under "fds"; the successor
// finds the memfd's number in NVGRACE_HANDOVER_FD. A successor that does not
// know the format version, or finds the checksum wrong, refuses.
//
// Thread-safety: plain functions.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "nvgrace/common/result.hpp"
#include "nvgrace/sys/fd.hpp"
#include "nvgrace/sys/fd_table.hpp"

namespace nvgrace::serve {

// The format this binary writes and reads.
inline constexpr std::uint32_t kHandoverFormat = 1;
// The environment variable naming the memfd, and the one that asks the
// successor only to check that it can take the state on, then leave.
inline constexpr const char* kHandoverFdEnv = "NVGRACE_HANDOVER_FD";
inline constexpr const char* kHandoverCheckEnv = "NVGRACE_HANDOVER_CHECK";

// The document with "fds" (the numbers of `fds`, in order) added: header
// and CBOR body as bytes, and in a new memfd, sealed against changes.
[[nodiscard]] std::vector<std::uint8_t> encode_handover(nlohmann::json doc, std::span<const int> fds);
[[nodiscard]] Result<sys::UniqueFd> write_handover(nlohmann::json doc, std::span<const int> fds);

struct Handover {
  nlohmann::json doc;
  sys::FdTable fds;  // every descriptor "fds" names, owned (close-on-exec set again)
};
// Reads and checks the hand-over in `fd`: magic, format, size, checksum, the
// CBOR, and that every descriptor it names is open here (and named once).
[[nodiscard]] Result<Handover> read_handover(int fd);
// `duplicate`: descriptors someone else keeps owning (the fd store's
// copies): a duplicate of each is owned instead.
[[nodiscard]] Result<Handover> decode_handover(std::span<const std::uint8_t> bytes,
                                               std::span<const int> duplicate = {});
// What a successor process is started with: this process's environment
// without the variables named in `drop`, with `add` ("NAME=VALUE") after it;
// and the NULL-terminated pointer arrays execve wants over such strings.
[[nodiscard]] std::vector<std::string> successor_environment(std::span<const std::string_view> drop,
                                                             std::span<const std::string> add);
[[nodiscard]] std::vector<char*> exec_strings(std::vector<std::string>& strings);

// The descriptor numbers a hand-over lists, checked but not owned.
[[nodiscard]] Result<std::vector<int>> handover_descriptors(std::span<const std::uint8_t> bytes);

}  // namespace nvgrace::serve
