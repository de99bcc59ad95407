# CMake toolchain file: cross-build for aarch64 Linux on Debian 12 x86-64 (see
# scripts/cross-aarch64.sh). The arm64 libraries come from Debian multiarch (/usr/lib/aarch64-linux-gnu,
# headers shared in /usr/include); oneDNN, whose -dev package does not co-install with the amd64
# one, comes from an unpacked sysroot (SDPAL_AARCH64_SYSROOT).
set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR aarch64)
set(CMAKE_C_COMPILER aarch64-linux-gnu-gcc)
set(CMAKE_CXX_COMPILER aarch64-linux-gnu-g++)
set(CMAKE_LIBRARY_ARCHITECTURE aarch64-linux-gnu)

# Test discovery (gtest_discover_tests) and ctest run the binaries through user-mode qemu. No -L:
# with libc6:arm64 installed the arm64 loader and libraries sit at their usual paths, and
# `qemu-aarch64 -L /usr/aarch64-linux-gnu` hangs at the first thread (OpenMP, std::thread).
set(CMAKE_CROSSCOMPILING_EMULATOR qemu-aarch64)

if(NOT SDPAL_AARCH64_SYSROOT)
  set(SDPAL_AARCH64_SYSROOT "${CMAKE_CURRENT_LIST_DIR}/../build-aarch64/sysroot")
endif()
get_filename_component(SDPAL_AARCH64_SYSROOT "${SDPAL_AARCH64_SYSROOT}" ABSOLUTE)
set(SDPAL_AARCH64_SYSROOT "${SDPAL_AARCH64_SYSROOT}" CACHE PATH "Unpacked arm64 oneDNN")
# try_compile projects re-read this file: hand them the same sysroot.
list(APPEND CMAKE_TRY_COMPILE_PLATFORM_VARIABLES SDPAL_AARCH64_SYSROOT)

# The sysroot's oneDNN headers must win over the amd64 ones in /usr/include (dnnl_config.h
# differs), so they come first as a system include directory.
set(CMAKE_CXX_FLAGS_INIT "-isystem ${SDPAL_AARCH64_SYSROOT}/usr/include")
set(DNNL_LIB "${SDPAL_AARCH64_SYSROOT}/usr/lib/aarch64-linux-gnu/libdnnl.so"
    CACHE FILEPATH "arm64 oneDNN")
# The loader finds libdnnl.so.2 through the build tree's RPATH; libdnnl's own dependencies
# (libgomp1, libstdc++6) come from multiarch, and the linker must find them for the DSO too.
set(CMAKE_EXE_LINKER_FLAGS_INIT
    "-Wl,-rpath-link,${SDPAL_AARCH64_SYSROOT}/usr/lib/aarch64-linux-gnu")

# pkg-config: only the arm64 and architecture-independent .pc files.
set(ENV{PKG_CONFIG_LIBDIR} "/usr/lib/aarch64-linux-gnu/pkgconfig:/usr/share/pkgconfig")
set(ENV{PKG_CONFIG_PATH} "")

# Programs run on the host; libraries, headers and packages are the target's (multiarch paths
# are already selected by CMAKE_LIBRARY_ARCHITECTURE).
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
