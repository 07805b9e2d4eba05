// `nvgrace serve`: emulated Grace GPUs over vfio-user, for VMMs that attach
// user-space devices (QEMU 10.1+ vfio-user-pci, cloud-hypervisor).
#include <iostream>

#include "command.hpp"
#include "emulated.hpp"
#include "log.hpp"
#include "nvgrace/pciemu/profiles.hpp"
#include "serve/server.hpp"

namespace nvgrace::cli {
namespace {

class ServeCommand final : public Command {
 public:
  CLI::App* attach(CLI::App& app) override {
    cmd_ = app.add_subcommand("serve", "Serve emulated GPUs over vfio-user on UNIX sockets (one per GPU)");
    std::vector<std::string> names;
    for (const auto& p : pciemu::all_profiles()) names.emplace_back(p.name);
    cmd_->add_option("--socket", socket_, "Socket path; with --count N > 1 the sockets are PATH.0 .. PATH.N-1")
        ->required();
    cmd_->add_option("--profile", profile_, "Built-in emulated device")->check(CLI::IsMember(names))->capture_default_str();
    cmd_->add_option("--count", count_, "Number of GPUs")->check(CLI::Range(1, 16))->capture_default_str();
    return cmd_;
  }

  int run() override {
    std::vector<serve::ServedDevice> devices;
    for (unsigned i = 0; i < count_; ++i) {
      auto gpu = make_emulated_gpu(profile_, i);
      if (!gpu) return usage_error("--profile: {}", gpu.error().message);
      auto backend = vfio::make_memfd_backend(gpu->layout, fmt::format("nvgrace-{}-{}", profile_, i));
      if (!backend) return usage_error("{}", backend.error().message);
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
};

}  // namespace

std::unique_ptr<Command> make_serve_command() { return std::make_unique<ServeCommand>(); }

}  // namespace nvgrace::cli
