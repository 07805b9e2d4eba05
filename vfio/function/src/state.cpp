#include "nvgrace/vfio/state.hpp"

#include <cerrno>

namespace nvgrace::vfio::state {

namespace {
Result<const nlohmann::json*> field(const nlohmann::json& j, std::string_view key) {
  if (!j.is_object()) return fail_errno(EINVAL, "hand-over state: not an object where '{}' was expected", key);
  const auto it = j.find(key);
  if (it == j.end()) return fail_errno(EINVAL, "hand-over state: no '{}'", key);
  return &*it;
}
}  // namespace

Result<std::uint64_t> u64(const nlohmann::json& j, std::string_view key) {
  auto f = field(j, key);
  if (!f) return fail(f.error());
  if (!(*f)->is_number_unsigned()) return fail_errno(EINVAL, "hand-over state: '{}' is not an unsigned number", key);
  return (*f)->get<std::uint64_t>();
}

Result<std::int64_t> i64(const nlohmann::json& j, std::string_view key) {
  auto f = field(j, key);
  if (!f) return fail(f.error());
  if (!(*f)->is_number_integer()) return fail_errno(EINVAL, "hand-over state: '{}' is not an integer", key);
  return (*f)->get<std::int64_t>();
}

Result<bool> boolean(const nlohmann::json& j, std::string_view key) {
  auto f = field(j, key);
  if (!f) return fail(f.error());
  if (!(*f)->is_boolean()) return fail_errno(EINVAL, "hand-over state: '{}' is not a boolean", key);
  return (*f)->get<bool>();
}

Result<std::string_view> text(const nlohmann::json& j, std::string_view key) {
  auto f = field(j, key);
  if (!f) return fail(f.error());
  if (!(*f)->is_string()) return fail_errno(EINVAL, "hand-over state: '{}' is not a string", key);
  return std::string_view((*f)->get_ref<const std::string&>());
}

Result<std::span<const std::uint8_t>> bytes(const nlohmann::json& j, std::string_view key) {
  auto f = field(j, key);
  if (!f) return fail(f.error());
  if (!(*f)->is_binary()) return fail_errno(EINVAL, "hand-over state: '{}' is not a byte string", key);
  const auto& b = (*f)->get_binary();
  return std::span<const std::uint8_t>(b.data(), b.size());
}

Result<const nlohmann::json*> object(const nlohmann::json& j, std::string_view key) {
  auto f = field(j, key);
  if (!f) return fail(f.error());
  if (!(*f)->is_object()) return fail_errno(EINVAL, "hand-over state: '{}' is not an object", key);
  return *f;
}

Result<const nlohmann::json*> array(const nlohmann::json& j, std::string_view key) {
  auto f = field(j, key);
  if (!f) return fail(f.error());
  if (!(*f)->is_array()) return fail_errno(EINVAL, "hand-over state: '{}' is not an array", key);
  return *f;
}

nlohmann::json binary(std::span<const std::uint8_t> data) {
  return nlohmann::json::binary(std::vector<std::uint8_t>(data.begin(), data.end()));
}

Result<void> expect_kind(const nlohmann::json& j, std::string_view kind) {
  auto k = text(j, "kind");
  if (!k) return fail(k.error());
  if (*k != kind)
    return fail_errno(EINVAL, "hand-over state: a {} was saved where this server has a {}", *k, kind);
  return {};
}

}  // namespace nvgrace::vfio::state
