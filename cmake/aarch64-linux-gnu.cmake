# Cross build for arm64 (Grace hosts) with Debian's cross compiler:
#   cmake -S . -B build-arm64 -G Ninja --toolchain cmake/aarch64-linux-gnu.cmake
# Needs crossbuild-essential-arm64 and the :arm64 dev packages installed
# through multiarch (dpkg --add-architecture arm64); scripts/setup does both.
# There is no sysroot: Debian's multiarch layout puts the arm64 libraries in
# /usr/lib/aarch64-linux-gnu and their arch-specific headers in
# /usr/include/aarch64-linux-gnu, which the cross compiler searches by itself,
# and CMake finds the arm64 packages' config files under
# /usr/lib/aarch64-linux-gnu/cmake through CMAKE_LIBRARY_ARCHITECTURE.
# Arch-independent packages (header-only: CLI11, nlohmann-json, Catch2 v2's
# single header) serve both builds from /usr/include.
#
# Test executables run through binfmt_misc (qemu-user-static registers
# qemu-aarch64); where binfmt cannot be registered, scripts/setup configures
# the tree with -DCMAKE_CROSSCOMPILING_EMULATOR=qemu-aarch64-static instead
# and says so.
set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR aarch64)
set(CMAKE_LIBRARY_ARCHITECTURE aarch64-linux-gnu)

set(CMAKE_C_COMPILER aarch64-linux-gnu-gcc)
set(CMAKE_CXX_COMPILER aarch64-linux-gnu-g++)
set(CMAKE_ASM_COMPILER aarch64-linux-gnu-gcc)
# pkgconf:arm64 (Multi-Arch: same) provides the wrapper that reads
# /usr/lib/aarch64-linux-gnu/pkgconfig.
set(PKG_CONFIG_EXECUTABLE aarch64-linux-gnu-pkg-config CACHE FILEPATH "pkg-config for arm64")

# Programs (iasl, acpidump, the host's tools) are the build machine's.
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)

# The Linux UAPI headers: the same linux-libc-dev 6.12 from bookworm-backports
# as the x86-64 build (Architecture: all, Multi-Arch: foreign: it carries every
# architecture's asm/ under /usr/include/<triplet>/asm, so it also satisfies
# libc6-dev:arm64's linux-libc-dev:arm64). But Debian's cross compiler puts
# its own /usr/aarch64-linux-gnu/include ahead of /usr/include, and there
# bookworm's linux-libc-dev-arm64-cross leaves the 6.1 headers, which lack the
# iommufd VFIO cdev API. bookworm-backports builds no 6.12 -cross package (in
# trixie-backports the kernel's own linux-libc-dev-arm64-cross is nothing but
# links into linux-libc-dev), so do the same here: a directory of links to
# linux/, asm-generic/ and the arm64 asm/ of linux-libc-dev, searched first.
# Only those three: the rest of /usr/include (glibc's, the libraries') must
# not move ahead of the compiler's own directories.
set(_nvgrace_uapi "${CMAKE_BINARY_DIR}/linux-uapi-aarch64")
if(NOT EXISTS "/usr/include/aarch64-linux-gnu/asm/kvm.h")
  message(FATAL_ERROR "no /usr/include/aarch64-linux-gnu/asm: install linux-libc-dev from bookworm-backports "
                      "(scripts/setup does)")
endif()
file(MAKE_DIRECTORY "${_nvgrace_uapi}")
foreach(_link linux=/usr/include/linux asm-generic=/usr/include/asm-generic asm=/usr/include/aarch64-linux-gnu/asm)
  string(REPLACE "=" ";" _link "${_link}")
  list(GET _link 0 _name)
  list(GET _link 1 _target)
  file(CREATE_LINK "${_target}" "${_nvgrace_uapi}/${_name}" SYMBOLIC)
endforeach()
# Standard include directories go on every compile line as -isystem, after
# the project's own -I and whatever CMAKE_CXX_FLAGS a caller sets.
set(CMAKE_C_STANDARD_INCLUDE_DIRECTORIES "${_nvgrace_uapi}")
set(CMAKE_CXX_STANDARD_INCLUDE_DIRECTORIES "${_nvgrace_uapi}")
