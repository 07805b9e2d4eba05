/* The built-in guest image, built from src/guest by the project. */
  .section .rodata
  .balign 16
  .global nvgrace_guest_image
nvgrace_guest_image:
  .incbin NVGRACE_GUEST_BIN
  .global nvgrace_guest_image_end
nvgrace_guest_image_end:
  .section .note.GNU-stack,"",%progbits
