#include "nvgrace/vm/kvm.hpp"

#include <fcntl.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace nvgrace::vm {

Result<void> kvm_available() {
  sys::UniqueFd fd(::open("/dev/kvm", O_RDWR | O_CLOEXEC));
  if (!fd) return fail_errno(errno, "/dev/kvm: {}", std::strerror(errno));
  const int api = ::ioctl(fd.get(), KVM_GET_API_VERSION, 0);
  if (api != KVM_API_VERSION) return fail_errno(ENOTSUP, "/dev/kvm speaks API {}, not {}", api, KVM_API_VERSION);
  return {};
}

Result<Kvm> Kvm::open(std::uint64_t phys_needed) {
  if (auto ok = kvm_available(); !ok) return fail(ok.error());
  Kvm k;
  k.kvm_ = sys::UniqueFd(::open("/dev/kvm", O_RDWR | O_CLOEXEC));
  auto shape = vm_shape(k.kvm_.get(), phys_needed);
  if (!shape) return fail(shape.error());
  k.shape_ = *shape;
  const int vm = ::ioctl(k.kvm_.get(), KVM_CREATE_VM, k.shape_.type);
  if (vm < 0) return fail_errno(errno, "KVM_CREATE_VM (type {:#x}): {}", k.shape_.type, std::strerror(errno));
  k.vm_ = sys::UniqueFd(vm);
  const int slots = k.check_extension(KVM_CAP_NR_MEMSLOTS);
  if (slots > 0) k.max_slots_ = static_cast<std::uint32_t>(slots);
  return k;
}

int Kvm::check_extension(long cap) const {
  const int r = ::ioctl(kvm_.get(), KVM_CHECK_EXTENSION, cap);
  return r < 0 ? -errno : r;
}

int Kvm::check_vm_extension(long cap) const {
  const int r = ::ioctl(vm_.get(), KVM_CHECK_EXTENSION, cap);
  return r < 0 ? -errno : r;
}

Result<void> Kvm::set_user_memory_region(std::uint32_t slot, GuestPhysAddr gpa, std::uint64_t size, HostVirtAddr hva,
                                         std::uint32_t flags) {
  kvm_userspace_memory_region r{slot, flags, gpa.value(), size, hva.value()};
  ++ioctls_;
  if (::ioctl(vm_.get(), KVM_SET_USER_MEMORY_REGION, &r) != 0)
    return fail_errno(errno, "KVM_SET_USER_MEMORY_REGION slot {} at {:#x}+{:#x}: {}", slot, gpa, size,
                      std::strerror(errno));
  return {};
}

Result<Vcpu> Vcpu::create(const Kvm& kvm, unsigned id) {
  Vcpu v;
  const int fd = ::ioctl(kvm.vm_fd(), KVM_CREATE_VCPU, static_cast<unsigned long>(id));
  if (fd < 0) return fail_errno(errno, "KVM_CREATE_VCPU: {}", std::strerror(errno));
  v.fd_ = sys::UniqueFd(fd);
  const int size = ::ioctl(kvm.kvm_fd(), KVM_GET_VCPU_MMAP_SIZE, 0);
  if (size <= 0) return fail_errno(errno, "KVM_GET_VCPU_MMAP_SIZE: {}", std::strerror(errno));
  const auto page = static_cast<std::uint64_t>(::sysconf(_SC_PAGESIZE));
  auto map = sys::Mapping::map(fd, 0, static_cast<std::uint64_t>(size), page, PROT_READ | PROT_WRITE, MAP_SHARED);
  if (!map) return fail(map.error().context("mapping kvm_run"));
  v.run_map_ = std::move(*map);
  v.run_ = reinterpret_cast<kvm_run*>(v.run_map_.data());
  return v;
}

Result<void> Vcpu::run() {
  if (::ioctl(fd_.get(), KVM_RUN, 0) != 0) return fail_errno(errno, "KVM_RUN: {}", std::strerror(errno));
  return {};
}

}  // namespace nvgrace::vm
