# linux/arm64, static on musl (the agent presets). Tests run under qemu-aarch64.
set(CMAKE_SYSTEM_PROCESSOR aarch64)
set(FERRY_TRIPLET aarch64-linux-gnu)
set(FERRY_MUSL_TRIPLET aarch64-linux-musl)
set(FERRY_DEPS_TARGET aarch64)
include(${CMAKE_CURRENT_LIST_DIR}/musl.cmake)
set(CMAKE_CROSSCOMPILING_EMULATOR qemu-aarch64)
