# linux/amd64. On an x86-64 host this is the native compiler; the file exists so that every
# platform is built the same way (ferry build passes one toolchain file per platform).
set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR x86_64)
set(FERRY_TRIPLET x86_64-linux-gnu)
find_program(_ferry_cc NAMES ${FERRY_TRIPLET}-gcc gcc)
set(CMAKE_C_COMPILER ${_ferry_cc})
set(CMAKE_LIBRARY_ARCHITECTURE ${FERRY_TRIPLET})
