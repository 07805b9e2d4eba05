// libFuzzer target for the vfio-user message handler: every input is one
// message to a negotiated session of an emulated GH200. The handler must
// reply, refuse or close; never crash, never read past the message.
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <vector>

#include "nvgrace/pciemu/profiles.hpp"
#include "nvgrace/vfio/device.hpp"
#include "nvgrace/vfio/vfio_user.hpp"

namespace {

nvgrace::vfio::VariantDevice& device() {
  using namespace nvgrace;
  static std::unique_ptr<vfio::VariantDevice> dev = [] {
    const auto profile = *pciemu::find_profile("gh200");
    auto layout = *pciemu::compute_layout({pciemu::emulated_mem_base(0), profile.mem_size, true});
    auto bars = pciemu::visible_bars(*pciemu::find_identity(profile.device_id), layout);
    auto cfg = *pciemu::DeviceConfig::build({profile.device_id, 0x10de, 0x16eb, true, bars, 0});
    return std::move(*vfio::VariantDevice::create(std::move(cfg), layout, std::move(*vfio::make_memfd_backend(layout, "fuzz"))));
  }();
  return *dev;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  namespace user = nvgrace::vfio::user;
  user::Session session(device());
  std::vector<std::uint8_t> version(20, 0);
  const user::Header h{1, user::kVersion, 20, 0, 0};
  std::memcpy(version.data(), &h, sizeof h);
  (void)session.handle(version, {});
  std::vector<std::uint8_t> msg(data, data + size);
  // Half the inputs get an honest size field, so the payload checks are reached.
  if (size >= 8 && (data[0] & 1)) {
    const auto n = static_cast<std::uint32_t>(size);
    std::memcpy(msg.data() + 4, &n, 4);
  }
  (void)session.handle(msg, {});
  return 0;
}
