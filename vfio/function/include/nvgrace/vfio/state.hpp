// Reading a hand-over's JSON (R41) without exceptions: every field a
// restore_state() needs, checked for presence and type, each error naming
// the field. What save_state() writes is plain nlohmann::json; byte strings
// are JSON binary values (the document travels as CBOR, which keeps them).
// Thread-safety: plain functions.
#pragma once

#include <cstdint>
#include <span>
#include <string_view>

#include <nlohmann/json.hpp>

#include "nvgrace/common/result.hpp"

namespace nvgrace::vfio::state {

[[nodiscard]] Result<std::uint64_t> u64(const nlohmann::json& j, std::string_view key);
[[nodiscard]] Result<std::int64_t> i64(const nlohmann::json& j, std::string_view key);
[[nodiscard]] Result<bool> boolean(const nlohmann::json& j, std::string_view key);
[[nodiscard]] Result<std::string_view> text(const nlohmann::json& j, std::string_view key);
[[nodiscard]] Result<std::span<const std::uint8_t>> bytes(const nlohmann::json& j, std::string_view key);
[[nodiscard]] Result<const nlohmann::json*> object(const nlohmann::json& j, std::string_view key);
[[nodiscard]] Result<const nlohmann::json*> array(const nlohmann::json& j, std::string_view key);
// A binary JSON value holding `data`.
[[nodiscard]] nlohmann::json binary(std::span<const std::uint8_t> data);
// The "kind" a save_state() wrote, checked against the restorer's own.
[[nodiscard]] Result<void> expect_kind(const nlohmann::json& j, std::string_view kind);

}  // namespace nvgrace::vfio::state
