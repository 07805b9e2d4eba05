// Reading and writing structs of the VFIO and vfio-user wire formats in byte
// buffers (host endianness, as both protocols specify). Private to vfio/.
#pragma once

#include <cstdint>
#include <cstring>
#include <span>
#include <vector>

namespace nvgrace::vfio::wire {

// The caller checks that [at, at + sizeof(T)) lies inside `b`.
template <class T>
T load(std::span<const std::uint8_t> b, std::size_t at) {
  T v{};
  std::memcpy(&v, b.data() + at, sizeof v);
  return v;
}

template <class T>
void store(std::span<std::uint8_t> b, std::size_t at, const T& v) {
  std::memcpy(b.data() + at, &v, sizeof v);
}

template <class T>
void append(std::vector<std::uint8_t>& out, const T& v) {
  const auto* p = reinterpret_cast<const std::uint8_t*>(&v);
  out.insert(out.end(), p, p + sizeof v);
}

}  // namespace nvgrace::vfio::wire
