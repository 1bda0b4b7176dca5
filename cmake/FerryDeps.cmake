# Dependencies, all from Debian's packages (scripts/setup.sh installs them for amd64, arm64, armhf).
# With FERRY_STATIC the static archives are preferred: the arm64 and armhf ferryd ship as one file.
if(FERRY_STATIC)
  set(CMAKE_FIND_LIBRARY_SUFFIXES .a)
endif()

function(ferry_find_lib var)
  find_library(${var} NAMES ${ARGN} REQUIRED)
endfunction()

ferry_find_lib(FERRY_LIB_UV      uv_a uv)
ferry_find_lib(FERRY_LIB_MBEDTLS mbedtls)
ferry_find_lib(FERRY_LIB_MBEDX509 mbedx509)
ferry_find_lib(FERRY_LIB_MBEDCRYPTO mbedcrypto)
ferry_find_lib(FERRY_LIB_ZSTD    zstd)
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
target_include_directories(ferry_tls_deps INTERFACE ${FERRY_MBEDTLS_INCLUDE})

add_library(ferry_uv INTERFACE)
target_link_libraries(ferry_uv INTERFACE ${FERRY_LIB_UV} Threads::Threads ${CMAKE_DL_LIBS})
target_include_directories(ferry_uv INTERFACE ${FERRY_UV_INCLUDE})

if(FERRY_STATIC)
  # One self-contained file per device; unused sections of the archives are dropped.
  add_compile_options(-ffunction-sections -fdata-sections)
  add_link_options(-static -Wl,--gc-sections)
endif()
