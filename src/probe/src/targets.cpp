#include "nvgrace/probe/targets.hpp"

#include <fmt/format.h>

#include "nvgrace/sys/scm.hpp"
#include "nvgrace/vfio/host/function.hpp"
#include "nvgrace/vfio/user/client.hpp"

namespace nvgrace::probe {
namespace {

class VfioTarget final : public Target {
 public:
  VfioTarget(std::unique_ptr<vfio::host::HostFunction> f, std::string what) : f_(std::move(f)), what_(std::move(what)) {}
  vfio::Function& function() override { return *f_; }
  std::string describe() const override { return what_; }
  Result<std::vector<std::uint8_t>> region_info_raw(unsigned index, std::uint32_t argsz) override {
    return f_->io().region_info_raw(index, argsz);
  }
  std::optional<Result<void>> ioeventfd(std::uint64_t offset, std::uint32_t flags, std::uint64_t data,
                                        int fd) override {
    return f_->io().ioeventfd(offset, flags, data, fd);
  }

 private:
  std::unique_ptr<vfio::host::HostFunction> f_;
  std::string what_;
};

class SocketTarget final : public Target {
 public:
  SocketTarget(std::unique_ptr<vfio::user::Client> c, std::string what) : c_(std::move(c)), what_(std::move(what)) {}
  vfio::Function& function() override { return *c_; }
  std::string describe() const override { return what_; }
  Result<std::vector<std::uint8_t>> region_info_raw(unsigned index, std::uint32_t argsz) override {
    return c_->region_info_raw(index, argsz);
  }
  // vfio-user has no ioeventfd request.
  std::optional<Result<void>> ioeventfd(std::uint64_t, std::uint32_t, std::uint64_t, int) override {
    return std::nullopt;
  }

 private:
  std::unique_ptr<vfio::user::Client> c_;
  std::string what_;
};

}  // namespace

Result<std::unique_ptr<Target>> open_vfio_target(const VfioTargetOptions& o) {
  auto opened = vfio::host::open_vfio({o.bdf, o.api, o.sysfs, o.dev, o.allow_noiommu});
  if (!opened) return fail(opened.error());
  const auto api = std::string(opened->iommu->api());
  auto f = vfio::host::HostFunction::create(std::move(*opened), o.bdf.to_string());
  if (!f) return fail(f.error());
  return std::unique_ptr<Target>(
      std::make_unique<VfioTarget>(std::move(*f), fmt::format("VFIO ioctls on {} ({})", o.bdf, api)));
}

Result<std::unique_ptr<Target>> open_socket_target(const std::string& socket_path) {
  auto fd = sys::connect_unix(socket_path);
  if (!fd) return fail(fd.error());
  auto c = vfio::user::Client::create(std::move(*fd));
  if (!c) return fail(c.error().context(socket_path));
  return std::unique_ptr<Target>(
      std::make_unique<SocketTarget>(std::move(*c), fmt::format("vfio-user on {}", socket_path)));
}

}  // namespace nvgrace::probe
