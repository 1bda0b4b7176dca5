# Cross build for linux/arm64 with Debian's gcc-aarch64-linux-gnu and multiarch :arm64 libraries.
set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR aarch64)
set(FERRY_TRIPLET aarch64-linux-gnu)
set(CMAKE_C_COMPILER ${FERRY_TRIPLET}-gcc)
set(CMAKE_STRIP ${FERRY_TRIPLET}-strip CACHE FILEPATH "")
# Debian's multiarch layout: headers in /usr/include/<triplet>, libraries in /usr/lib/<triplet>.
set(CMAKE_LIBRARY_ARCHITECTURE ${FERRY_TRIPLET})
set(CMAKE_FIND_ROOT_PATH /usr/${FERRY_TRIPLET} /usr/lib/${FERRY_TRIPLET})
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY BOTH)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE BOTH)
# Cross-built tests run under user-mode emulation; -L finds the loader of dynamic test helpers.
set(CMAKE_CROSSCOMPILING_EMULATOR qemu-aarch64;-L;/usr/${FERRY_TRIPLET})
