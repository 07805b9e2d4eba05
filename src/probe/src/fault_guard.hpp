// Accesses through a mapping that may fault, with the fault caught and
// reported instead of ending the process: a mapping past a file's end, a
// fake BAR whose memory the 7.x kernel driver disables after a reset (R20),
// or Device memory taking an unaligned access (R40). Internal to the probe.
#pragma once

#include <setjmp.h>
#include <signal.h>

#include <atomic>

namespace nvgrace::probe::detail {

// Where the handler jumps while an access is guarded; null otherwise.
extern thread_local sigjmp_buf* volatile fault_jump;

// SIGBUS and SIGSEGV to the guard's handler, and back.
class FaultHandlers {
 public:
  FaultHandlers();
  ~FaultHandlers();
  FaultHandlers(const FaultHandlers&) = delete;
  FaultHandlers& operator=(const FaultHandlers&) = delete;

 private:
  struct sigaction old_bus_{}, old_segv_{};
};

// Runs `f`: true when it ran to its end, false when it faulted (SIGBUS or
// SIGSEGV). `f` must own nothing a destructor would release: a fault leaves
// it by siglongjmp.
template <class F>
bool without_fault(F&& f) {
  FaultHandlers handlers;
  sigjmp_buf jb;
  volatile bool finished = false;  // volatile: read after a siglongjmp
  if (sigsetjmp(jb, 1) == 0) {
    fault_jump = &jb;
    std::atomic_signal_fence(std::memory_order_seq_cst);
    f();
    std::atomic_signal_fence(std::memory_order_seq_cst);
    finished = true;
  }
  fault_jump = nullptr;
  return finished;
}

}  // namespace nvgrace::probe::detail
