// The client end of vfio-user (QEMU docs/interop/vfio-user.rst): a Function
// whose every call is a request to a server and its reply - the side QEMU's
// vfio-user-pci is on. The probe drives a served device through it exactly
// as it drives a kernel VFIO device, and the conformance suite sends raw
// messages through call(). Hand-written: Debian 12 packages no vfio-user
// library.
//
// It negotiates VERSION when created (taking the server's max_data_xfer_size
// and max_msg_fds, announcing its own) and reads DEVICE_GET_INFO and every
// IRQ index's info once. Region info is asked for when first wanted and kept
// with the fd that came with it. One request is in flight at a time; each
// waits at most `timeout` for its reply.
//
// Thread-safety: none; one thread drives a client. Ownership: the client
// owns the socket and every fd the server sent it.
#pragma once

#include <chrono>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <vector>

#include "nvgrace/sys/fd.hpp"
#include "nvgrace/vfio/function.hpp"
#include "nvgrace/vfio/user/protocol.hpp"

namespace nvgrace::vfio::user {

struct ClientOptions {
  std::chrono::milliseconds timeout{5000};  // per reply (QEMU's x-msg-timeout default)
  std::uint32_t max_msg_fds = 8;            // announced in VERSION
  std::uint32_t max_data_xfer_size = 1u << 20;
};

// One reply as it came: header, payload, fds.
struct RawReply {
  Header header{};
  std::vector<std::uint8_t> payload;
  std::vector<sys::UniqueFd> fds;
};

class Client final : public Function {
 public:
  // `connected`: a UNIX stream socket connected to the server.
  [[nodiscard]] static Result<std::unique_ptr<Client>> create(sys::UniqueFd connected, ClientOptions o = {});

  [[nodiscard]] DeviceInfo info() const override { return info_; }
  [[nodiscard]] Result<RegionInfoView> region_info(RegionIndex index) override;
  [[nodiscard]] Result<IrqInfo> irq(unsigned index) const override;
  [[nodiscard]] Result<std::size_t> read(RegionIndex index, std::uint64_t offset, std::span<std::uint8_t> out) override;
  [[nodiscard]] Result<std::size_t> write(RegionIndex index, std::uint64_t offset,
                                          std::span<const std::uint8_t> in) override;
  Result<void> reset() override;
  [[nodiscard]] const DmaLimits& dma_limits() const override { return limits_; }
  [[nodiscard]] Result<void> dma_map(const DmaMapping& m) override;
  Result<void> dma_unmap(Iova iova, std::uint64_t size) override;
  [[nodiscard]] Result<void> set_irqs(const IrqSet& s) override;

  // DEVICE_GET_REGION_INFO with exactly this argsz: the reply's payload as it
  // came (and the fd, if one came). Errors carry the server's errno.
  [[nodiscard]] Result<std::vector<std::uint8_t>> region_info_raw(unsigned index, std::uint32_t argsz);

  // Sends one message (its header's msg_id is replaced by the next id, and
  // msg_size by the message's length) with `fds`, and waits for its reply.
  // A reply with the error flag is a reply, not an error; errors are the
  // transport's (timeout, closed socket, a reply to another id).
  [[nodiscard]] Result<RawReply> call(std::span<const std::uint8_t> message, std::span<const int> fds = {});

  // What the server announced in its VERSION reply.
  [[nodiscard]] std::uint32_t server_max_data_xfer_size() const { return server_xfer_; }
  [[nodiscard]] std::uint32_t server_max_msg_fds() const { return server_fds_; }
  [[nodiscard]] int socket() const { return sock_.get(); }

 private:
  Client(sys::UniqueFd sock, ClientOptions o) : sock_(std::move(sock)), opts_(o) {}
  // call() for a typed command: the payload of a successful reply, or the
  // server's errno as an error naming the command.
  Result<RawReply> request(std::uint16_t command, std::span<const std::uint8_t> payload, std::span<const int> fds = {});
  Result<void> negotiate();

  sys::UniqueFd sock_;
  ClientOptions opts_;
  std::uint16_t next_id_ = 1;
  std::uint32_t server_xfer_ = kDefaultClientMaxDataXferSize;
  std::uint32_t server_fds_ = kDefaultClientMaxMsgFds;
  DeviceInfo info_;
  std::vector<IrqInfo> irqs_;
  DmaLimits limits_;
  struct Region {
    std::vector<std::uint8_t> bytes;
    sys::UniqueFd fd;
  };
  std::map<std::uint32_t, Region> regions_;
};

}  // namespace nvgrace::vfio::user
