#include "fault_guard.hpp"

#include <cstdlib>

namespace nvgrace::probe::detail {

thread_local sigjmp_buf* volatile fault_jump = nullptr;

namespace {
void on_fault(int) {
  if (fault_jump) siglongjmp(*fault_jump, 1);
  std::abort();  // a fault outside a guarded access is a bug
}
}  // namespace

FaultHandlers::FaultHandlers() {
  struct sigaction sa{};
  sa.sa_handler = on_fault;
  sigemptyset(&sa.sa_mask);
  ::sigaction(SIGBUS, &sa, &old_bus_);
  ::sigaction(SIGSEGV, &sa, &old_segv_);
}

FaultHandlers::~FaultHandlers() {
  ::sigaction(SIGBUS, &old_bus_, nullptr);
  ::sigaction(SIGSEGV, &old_segv_, nullptr);
}

}  // namespace nvgrace::probe::detail
