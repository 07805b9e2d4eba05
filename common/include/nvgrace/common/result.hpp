// Errors are values (style.md, point 4): every fallible operation returns
// Result<T>, whose error names the operation and carries context and, where
// one applies, the errno. Exceptions never cross a module boundary.
#pragma once

#include <cerrno>
#include <string>
#include <utility>
#include <version>

#include <fmt/format.h>

// std::expected where the standard library has it (g++ 12 with -std=c++23);
// tl::expected (Debian libexpected-dev) where it does not, as for clang 14,
// which builds the libFuzzer targets against the same libstdc++.
#if defined(__cpp_lib_expected)
#include <expected>
namespace nvgrace {
template <class T, class E>
using expected = std::expected<T, E>;
using std::unexpected;
}  // namespace nvgrace
#else
#include <tl/expected.hpp>
namespace nvgrace {
template <class T, class E>
using expected = tl::expected<T, E>;
using tl::unexpected;
}  // namespace nvgrace
#endif

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
using Result = expected<T, Error>;

// Passes an error on: `return fail(r.error().context("reading DSDT"));`
[[nodiscard]] inline unexpected<Error> fail(Error e) { return unexpected<Error>(std::move(e)); }

template <class... Args>
[[nodiscard]] unexpected<Error> fail(fmt::format_string<Args...> f, Args&&... args) {
  return unexpected<Error>(Error(fmt::format(f, std::forward<Args>(args)...)));
}

template <class... Args>
[[nodiscard]] unexpected<Error> fail_errno(int e, fmt::format_string<Args...> f, Args&&... args) {
  return unexpected<Error>(Error(fmt::format(f, std::forward<Args>(args)...), e));
}

}  // namespace nvgrace
