// Errors are values (style.md, point 4): every fallible operation returns
// Result<T>, whose error names the operation and carries context and, where
// one applies, the errno. Exceptions never cross a module boundary.
#pragma once

#include <cerrno>
#include <expected>
#include <string>
#include <utility>

#include <fmt/format.h>

namespace nvgrace {

struct Error {
  std::string message;  // complete sentence fragment: "mem-size 0: ..."; no trailing period
  int err = 0;          // errno value where the failure maps to one, else 0

  Error() = default;
  explicit Error(std::string msg, int e = 0) : message(std::move(msg)), err(e) {}

  // Prefix the message with the operation that failed: "reading DSDT: <message>".
  [[nodiscard]] Error context(std::string_view what) const {
    return Error(fmt::format("{}: {}", what, message), err);
  }
};

template <class T>
using Result = std::expected<T, Error>;

template <class... Args>
[[nodiscard]] std::unexpected<Error> fail(fmt::format_string<Args...> f, Args&&... args) {
  return std::unexpected(Error(fmt::format(f, std::forward<Args>(args)...)));
}

template <class... Args>
[[nodiscard]] std::unexpected<Error> fail_errno(int e, fmt::format_string<Args...> f, Args&&... args) {
  return std::unexpected(Error(fmt::format(f, std::forward<Args>(args)...), e));
}

}  // namespace nvgrace
