# The static agents' toolchains: Debian's gcc for the target with Debian's musl-dev for that
# architecture (its specs file), and every library built from Debian's sources against musl by
# scripts/deps.sh into build/deps/<target>. Included by the three <triplet>-musl files, which set
#   FERRY_TRIPLET       the GNU cross compiler's triplet (aarch64-linux-gnu ...)
#   FERRY_MUSL_TRIPLET  where musl-dev puts libc (/usr/lib/<it>)
#   FERRY_DEPS_TARGET   build/deps/<it>
# musl-dev ships no kernel headers; scripts/deps.sh links the target's linux/, asm/ and
# asm-generic/ (and only those) into build/deps/<target>/kernel-include.
set(CMAKE_SYSTEM_NAME Linux)
set(FERRY_LIBC musl)
find_program(_ferry_musl_cc NAMES ${FERRY_TRIPLET}-gcc REQUIRED)
set(CMAKE_C_COMPILER ${_ferry_musl_cc})
find_program(CMAKE_STRIP NAMES ${FERRY_TRIPLET}-strip strip)
get_filename_component(_ferry_root "${CMAKE_CURRENT_LIST_DIR}/.." ABSOLUTE)
set(FERRY_DEPS_PREFIX ${_ferry_root}/build/deps/${FERRY_DEPS_TARGET})
set(_ferry_specs /usr/lib/${FERRY_MUSL_TRIPLET}/musl-gcc.specs)
if(NOT EXISTS ${_ferry_specs})
  message(FATAL_ERROR "${_ferry_specs} is missing: install musl-dev for this architecture (scripts/setup.sh does)")
endif()
set(CMAKE_C_FLAGS_INIT "-specs ${_ferry_specs} -idirafter ${FERRY_DEPS_PREFIX}/kernel-include -ffunction-sections -fdata-sections")
set(CMAKE_EXE_LINKER_FLAGS_INIT "-static")
# Libraries and headers come from build/deps/<target> alone: nothing built against glibc can
# slip into a musl link.
set(CMAKE_FIND_ROOT_PATH ${FERRY_DEPS_PREFIX})
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_PACKAGE ONLY)
