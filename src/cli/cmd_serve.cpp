// `nvgrace serve`: emulated Grace GPUs over vfio-user, for VMMs that attach
// user-space devices (QEMU 10.1+ vfio-user-pci, cloud-hypervisor).
#include <iostream>

#include "command.hpp"
#include "nvgrace/pciemu/emulated.hpp"
#include "log.hpp"
#include "nvgrace/common/size.hpp"
#include "nvgrace/pciemu/profiles.hpp"
#include "serve/server.hpp"

namespace nvgrace::cli {
namespace {

class ServeCommand final : public Command {
 public:
  CLI::App* attach(CLI::App& app) override {
    cmd_ = app.add_subcommand("serve", "Serve emulated GPUs over vfio-user on UNIX sockets (one per GPU)");
    cmd_->add_option("--socket", socket_, "Socket path; with --count N > 1 the sockets are PATH.0 .. PATH.N-1")
        ->required();
    add_profile_option(cmd_, profile_, "Built-in emulated device")->capture_default_str();
    cmd_->add_option("--count", count_, "Number of GPUs")->check(CLI::Range(1, 16))->capture_default_str();
    cmd_->add_option("--mem-size", mem_size_text_, "Device memory size instead of the profile's, e.g. 0x17E4F00000");
    cmd_->add_option("--memory-file", memory_file_,
                     "Back device memory with this file (PATH.i with --count > 1) instead of a memfd; usemem at "
                     "offset 0, resmem right after it");
    return cmd_;
  }

  int run() override {
    std::optional<std::uint64_t> mem_size;
    if (!mem_size_text_.empty()) {
      auto v = parse_size(mem_size_text_);
      if (!v) return usage_error("--mem-size: {}", v.error().message);
      mem_size = *v;
    }
    std::vector<serve::ServedDevice> devices;
    for (unsigned i = 0; i < count_; ++i) {
      auto gpu = pciemu::make_emulated_gpu(profile_, i, mem_size);
      if (!gpu) return usage_error("--profile: {}", gpu.error().message);
      auto backend = memory_file_.empty()
                         ? vfio::make_memfd_backend(gpu->layout, fmt::format("nvgrace-{}-{}", profile_, i))
                         : vfio::make_file_backend(gpu->layout, serve::socket_path(memory_file_, i, count_));
      if (!backend) return usage_error("{}: {}", memory_file_.empty() ? "memfd" : "--memory-file", backend.error().message);
      auto dev = vfio::VariantDevice::create(std::move(gpu->config), gpu->layout, std::move(*backend));
      if (!dev) return usage_error("{}", dev.error().message);
      devices.push_back({serve::socket_path(socket_, i, count_), std::move(*dev)});
    }
    auto server = serve::Server::create(std::move(devices));
    if (!server) return usage_error("{}", server.error().message);
    for (unsigned i = 0; i < count_; ++i)
      std::cout << fmt::format("serving {} gpu{} on {}\n", profile_, i, serve::socket_path(socket_, i, count_))
                << std::flush;
    if (auto ok = (*server)->run(true); !ok) {
      fmt::print(stderr, "nvgrace: serve: {}\n", ok.error().message);
      return kExitFailure;
    }
    return kExitOk;
  }

 private:
  CLI::App* cmd_ = nullptr;
  std::string socket_;
  std::string profile_ = "gh200";
  unsigned count_ = 1;
  std::string memory_file_;
  std::string mem_size_text_;
};

}  // namespace

std::unique_ptr<Command> make_serve_command() { return std::make_unique<ServeCommand>(); }

}  // namespace nvgrace::cli
