#include "nvgrace/devices/emulated.hpp"

#include <fmt/format.h>

namespace nvgrace::devices {

Result<EmulatedFunction> make_emulated_function(const EmulatedOptions& o) {
  auto gpu = pciemu::make_emulated_gpu(o.profile, o.index, o.mem_size);
  if (!gpu) return fail(gpu.error());
  auto fn = vfio::emulated::EmulatedFunction::create(gpu->host, o.timing);
  if (!fn) return fail(fn.error().context(o.name.empty() ? fmt::format("gpu{}", o.index) : o.name));
  return EmulatedFunction{std::move(*gpu), std::move(*fn)};
}

expected<EmulatedDevice, EmulatedError> make_emulated_device(const EmulatedOptions& o) {
  const std::string name = o.name.empty() ? fmt::format("gpu{}", o.index) : o.name;
  auto gpu = pciemu::make_emulated_gpu(o.profile, o.index, o.mem_size);
  // The profile is a checked name: a device that cannot be built from it is
  // the memory size's doing.
  if (!gpu) return unexpected(EmulatedError{gpu.error(), true});
  auto memory = o.memory_file ? vfio::make_file_backend(gpu->layout, *o.memory_file)
                              : vfio::make_memfd_backend(gpu->layout, fmt::format("nvgrace-{}-{}", o.profile, o.index));
  if (!memory) return unexpected(EmulatedError{memory.error(), false});
  std::string described = (*memory)->describe();
  auto fn = vfio::emulated::EmulatedFunction::create(gpu->host, o.timing);
  if (!fn) return unexpected(EmulatedError{fn.error().context(name), false});
  vfio::VariantOptions vo;
  vo.layout = gpu->layout;
  vo.memory = std::move(*memory);
  vo.device_id = gpu->profile.device_id;
  vo.ready = o.ready;
  auto device = vfio::Variant::create(std::move(*fn), std::move(vo));
  if (!device) return unexpected(EmulatedError{device.error().context(name), false});
  return EmulatedDevice{std::move(*gpu), std::move(*device), std::move(described)};
}

}  // namespace nvgrace::devices
