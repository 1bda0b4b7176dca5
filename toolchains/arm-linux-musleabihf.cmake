# linux/arm/v7 (hard float), static on musl (the agent presets). Tests run under qemu-arm.
set(CMAKE_SYSTEM_PROCESSOR armv7l)
set(FERRY_TRIPLET arm-linux-gnueabihf)
set(FERRY_MUSL_TRIPLET arm-linux-musleabihf)
set(FERRY_DEPS_TARGET armhf)
include(${CMAKE_CURRENT_LIST_DIR}/musl.cmake)
set(CMAKE_CROSSCOMPILING_EMULATOR qemu-arm)
