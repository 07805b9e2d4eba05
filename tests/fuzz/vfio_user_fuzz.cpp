// libFuzzer target for the vfio-user message handler: every input is one
// message to a negotiated session of an emulated GH200. The handler must
// reply, refuse or close; never crash, never read past the message.
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <vector>

#include "nvgrace/devices/emulated.hpp"
#include "nvgrace/vfio/user/session.hpp"

namespace {

// The variant over the emulated host function, as nvgrace serve assembles it.
nvgrace::vfio::Function& device() {
  using namespace nvgrace;
  static std::unique_ptr<vfio::Variant> dev = [] {
    devices::EmulatedOptions o;
    o.profile = "gh200";
    return std::move(devices::make_emulated_device(o)->device);
  }();
  return *dev;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  namespace user = nvgrace::vfio::user;
  static user::ReplyBuffer out;
  user::Session session(device());
  std::vector<std::uint8_t> version(20, 0);
  const user::Header h{1, user::kVersion, 20, 0, 0};
  std::memcpy(version.data(), &h, sizeof h);
  (void)session.handle(version, {}, out);
  std::vector<std::uint8_t> msg(data, data + size);
  // Half the inputs get an honest size field, so the payload checks are reached.
  if (size >= 8 && (data[0] & 1)) {
    const auto n = static_cast<std::uint32_t>(size);
    std::memcpy(msg.data() + 4, &n, 4);
  }
  // Whatever the outcome, a reply never claims more bytes than it holds.
  if (session.handle(msg, {}, out) == user::Outcome::reply && out.header().msg_size != out.bytes().size()) __builtin_trap();
  return 0;
}
