// `serve --host BDF`: real devices bound to vfio-pci, opened through VFIO
// and given nvgrace's variant behaviour from the host's ACPI tables
// (R3-R6, R26-R31). Every refusal is one line that names what is wrong.
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "nvgrace/vfio/host/vfio_io.hpp"
#include "serve/server.hpp"

namespace nvgrace::cli {

struct HostServeQuery {
  std::vector<std::string> bdfs;
  std::string socket;  // PATH, or PATH.i with several devices
  vfio::host::VfioApi api = vfio::host::VfioApi::automatic;
  std::optional<std::uint16_t> assume_device_id;
  bool mmap_fake_bars = true;
  std::filesystem::path acpi = "/sys/firmware/acpi/tables";
  std::filesystem::path sysfs = "/sys";
  std::filesystem::path dev = "/dev";
};

struct HostServeRefusal {
  int exit_code = 2;  // 2: the command line asks for what cannot be had here; 1: the device is unusable
  std::string line;
};

struct HostServe {
  std::vector<serve::ServedDevice> devices;
  std::vector<std::string> lines;  // one per device: what is served and how
};

[[nodiscard]] expected<HostServe, HostServeRefusal> build_host_devices(const HostServeQuery& q);

}  // namespace nvgrace::cli
