# linux/amd64, static on musl: the agent install-agent copies to x86-64 devices.
set(CMAKE_SYSTEM_PROCESSOR x86_64)
set(FERRY_TRIPLET x86_64-linux-gnu)
set(FERRY_MUSL_TRIPLET x86_64-linux-musl)
set(FERRY_DEPS_TARGET amd64)
include(${CMAKE_CURRENT_LIST_DIR}/musl.cmake)
