# Dependencies, all from Debian. The host presets link Debian's packages (scripts/setup.sh installs
# them). The static presets (toolchains/*-musl.cmake) link the libraries scripts/deps.sh builds
# from Debian's source packages against musl into build/deps/<target>; the configure step builds
# them when they are missing or out of date.
if(FERRY_STATIC)
  set(CMAKE_FIND_LIBRARY_SUFFIXES .a)
endif()
if(FERRY_LIBC STREQUAL "musl")
  execute_process(COMMAND bash ${PROJECT_SOURCE_DIR}/scripts/deps.sh build ${FERRY_DEPS_TARGET}
                  RESULT_VARIABLE _deps_rc)
  if(NOT _deps_rc EQUAL 0)
    message(FATAL_ERROR "building the musl libraries for ${FERRY_DEPS_TARGET} failed (scripts/deps.sh build ${FERRY_DEPS_TARGET})")
  endif()
  set_property(DIRECTORY APPEND PROPERTY CMAKE_CONFIGURE_DEPENDS
               ${PROJECT_SOURCE_DIR}/cmake/deps.lock ${PROJECT_SOURCE_DIR}/protocol/mbedtls_config.h
               ${PROJECT_SOURCE_DIR}/scripts/deps.sh)
endif()

function(ferry_find_lib var)
  find_library(${var} NAMES ${ARGN} REQUIRED)
endfunction()

ferry_find_lib(FERRY_LIB_UV      uv_a uv)
ferry_find_lib(FERRY_LIB_MBEDTLS mbedtls)
ferry_find_lib(FERRY_LIB_MBEDX509 mbedx509)
ferry_find_lib(FERRY_LIB_MBEDCRYPTO mbedcrypto)
ferry_find_lib(FERRY_LIB_ZSTD    zstd)
# The agent decompresses only: on musl it links a zstd built without the compressor.
if(FERRY_LIBC STREQUAL "musl")
  ferry_find_lib(FERRY_LIB_ZSTD_D zstd_decompress)
else()
  set(FERRY_LIB_ZSTD_D ${FERRY_LIB_ZSTD})
endif()
ferry_find_lib(FERRY_LIB_YAML    yaml)
ferry_find_lib(FERRY_LIB_JANSSON jansson)
# libseccomp: the agent's default system-call filter for contained apps (agent/seccomp.c).
ferry_find_lib(FERRY_LIB_SECCOMP seccomp)
find_path(FERRY_SECCOMP_INCLUDE seccomp.h REQUIRED)
# zlib: only the pusher needs it (gzip layers to zstd); Debian 12 cannot co-install
# zlib1g-dev for arm64/armhf beside amd64 here, so cross builds go without (recompress_none.c).
find_library(FERRY_LIB_Z NAMES z)
find_path(FERRY_UV_INCLUDE uv.h REQUIRED)
find_path(FERRY_MBEDTLS_INCLUDE mbedtls/ssl.h REQUIRED)

find_package(Threads REQUIRED)

add_library(ferry_tls_deps INTERFACE)
target_link_libraries(ferry_tls_deps INTERFACE ${FERRY_LIB_MBEDTLS} ${FERRY_LIB_MBEDX509} ${FERRY_LIB_MBEDCRYPTO})
target_include_directories(ferry_tls_deps SYSTEM INTERFACE ${FERRY_MBEDTLS_INCLUDE})

# A target that sets FERRY_ZSTD_DECOMPRESS_ONLY (ferryd) links the decompression-only zstd.
add_library(ferry_zstd INTERFACE)
target_link_libraries(ferry_zstd INTERFACE
  "$<IF:$<BOOL:$<TARGET_PROPERTY:FERRY_ZSTD_DECOMPRESS_ONLY>>,${FERRY_LIB_ZSTD_D},${FERRY_LIB_ZSTD}>")

add_library(ferry_uv INTERFACE)
target_link_libraries(ferry_uv INTERFACE ${FERRY_LIB_UV} Threads::Threads ${CMAKE_DL_LIBS})
target_include_directories(ferry_uv INTERFACE ${FERRY_UV_INCLUDE})

if(FERRY_STATIC)
  # One self-contained file per device; unused sections of the archives are dropped.
  add_compile_options(-ffunction-sections -fdata-sections)
  add_link_options(-static -Wl,--gc-sections)
endif()
