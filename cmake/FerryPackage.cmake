# .deb packages through CPack:
#   ferry  (amd64; the host preset): /usr/bin/ferry, and the agents install-agent copies, from
#          the sibling cross builds when they exist: /usr/lib/ferry/agents/<platform>/ferryd
#   ferryd (amd64, arm64, armhf; each preset): /usr/lib/ferry/ferryd (+ /usr/sbin/ferryd link),
#          /lib/systemd/system/ferryd.service, a commented /etc/ferry/ferryd.yaml (a conffile),
#          /var/lib/ferry (0700)
# Build: cmake --build --preset P && (cd build/P && cpack -G DEB)  (scripts/package.sh)
include(GNUInstallDirs)
# cpack and install use what the build left; they never rebuild (tests package while others run).
set(CMAKE_SKIP_INSTALL_ALL_DEPENDENCY TRUE)
set(FERRY_DEB_DIR ${PROJECT_SOURCE_DIR}/cmake/deb)
if(CMAKE_SYSTEM_PROCESSOR MATCHES "aarch64|arm64")
  set(FERRY_DEB_ARCH arm64)
elseif(CMAKE_SYSTEM_PROCESSOR MATCHES "^arm")
  set(FERRY_DEB_ARCH armhf)
else()
  set(FERRY_DEB_ARCH amd64)
endif()

# ferryd
set(FERRYD /usr/lib/ferry/ferryd)
set(CONFIG /etc/ferry/ferryd.yaml)
set(STATE_DIR /var/lib/ferry)
set(BIN_DIR /usr/lib/ferry)
configure_file(${PROJECT_SOURCE_DIR}/agent/ferryd.service ${CMAKE_BINARY_DIR}/deb/ferryd.service @ONLY)
install(TARGETS ferryd DESTINATION lib/ferry COMPONENT ferryd)
install(CODE "file(MAKE_DIRECTORY \"\$ENV{DESTDIR}\${CMAKE_INSTALL_PREFIX}/sbin\")
  file(CREATE_LINK ../lib/ferry/ferryd \"\$ENV{DESTDIR}\${CMAKE_INSTALL_PREFIX}/sbin/ferryd\" SYMBOLIC)" COMPONENT ferryd)
install(FILES ${CMAKE_BINARY_DIR}/deb/ferryd.service DESTINATION /lib/systemd/system COMPONENT ferryd)
install(FILES ${PROJECT_SOURCE_DIR}/agent/ferryd.yaml DESTINATION /etc/ferry COMPONENT ferryd)
install(DIRECTORY DESTINATION /var/lib/ferry DIRECTORY_PERMISSIONS OWNER_READ OWNER_WRITE OWNER_EXECUTE COMPONENT ferryd)
if(FERRY_STATIC)
  file(READ ${FERRY_DEB_DIR}/ferryd.lintian-overrides o1)
  file(READ ${FERRY_DEB_DIR}/ferryd-static.lintian-overrides o2)
  file(WRITE ${CMAKE_BINARY_DIR}/deb/ferryd.lintian-overrides "${o1}${o2}")
  install(FILES ${CMAKE_BINARY_DIR}/deb/ferryd.lintian-overrides DESTINATION share/lintian/overrides RENAME ferryd COMPONENT ferryd)
else()
  install(FILES ${FERRY_DEB_DIR}/ferryd.lintian-overrides DESTINATION share/lintian/overrides RENAME ferryd COMPONENT ferryd)
endif()

# Debian wants a copyright file and a compressed changelog in each package's doc directory.
set(FERRY_CHANGELOG_GZ ${CMAKE_BINARY_DIR}/deb/changelog.Debian.gz)
add_custom_command(OUTPUT ${FERRY_CHANGELOG_GZ}
  COMMAND gzip -9n -c ${FERRY_DEB_DIR}/changelog > ${FERRY_CHANGELOG_GZ}
  DEPENDS ${FERRY_DEB_DIR}/changelog)
add_custom_target(ferry_deb_docs ALL DEPENDS ${FERRY_CHANGELOG_GZ})
foreach(pkg ferry ferryd)
  install(FILES ${FERRY_DEB_DIR}/copyright ${FERRY_CHANGELOG_GZ} DESTINATION share/doc/${pkg} COMPONENT ${pkg})
endforeach()

set(CPACK_DEB_COMPONENT_INSTALL ON)
set(CPACK_COMPONENTS_ALL ferryd)
if(NOT CMAKE_CROSSCOMPILING AND NOT FERRY_SANITIZE)
  # ferry and the agents it installs on devices
  install(TARGETS ferry DESTINATION bin COMPONENT ferry)
  # Each agent stripped with its own binutils (CPACK_STRIP_FILES only knows this machine's).
  foreach(triple "host;linux-amd64;strip" "aarch64;linux-arm64;aarch64-linux-gnu-strip" "armhf;linux-arm-v7;arm-linux-gnueabihf-strip")
    list(GET triple 0 preset)
    list(GET triple 1 dir)
    list(GET triple 2 tool)
    set(src ${PROJECT_SOURCE_DIR}/build/${preset}/bin/ferryd)
    if(preset STREQUAL "host")  # the static amd64 build when there is one, else this one
      set(src ${CMAKE_BINARY_DIR}/bin/ferryd)
      if(EXISTS ${PROJECT_SOURCE_DIR}/build/amd64/bin/ferryd)
        set(src ${PROJECT_SOURCE_DIR}/build/amd64/bin/ferryd)
      endif()
    endif()
    install(CODE "if(EXISTS \"${src}\")
        set(dst \"\$ENV{DESTDIR}\${CMAKE_INSTALL_PREFIX}/lib/ferry/agents/${dir}\")
        file(MAKE_DIRECTORY \"\${dst}\")
        file(COPY_FILE \"${src}\" \"\${dst}/ferryd\")
        file(CHMOD \"\${dst}/ferryd\" PERMISSIONS OWNER_READ OWNER_WRITE OWNER_EXECUTE GROUP_READ GROUP_EXECUTE WORLD_READ WORLD_EXECUTE)
        execute_process(COMMAND ${tool} --strip-unneeded \"\${dst}/ferryd\" RESULT_VARIABLE rc)
      endif()" COMPONENT ferry)
  endforeach()
  install(FILES ${FERRY_DEB_DIR}/ferry.lintian-overrides DESTINATION share/lintian/overrides RENAME ferry COMPONENT ferry)
  set(CPACK_COMPONENTS_ALL ferry ferryd)
endif()

set(CPACK_GENERATOR DEB)
set(CPACK_PACKAGE_NAME ferry)
set(CPACK_PACKAGE_VERSION ${PROJECT_VERSION})
set(CPACK_PACKAGING_INSTALL_PREFIX /usr)
set(CPACK_PACKAGE_CONTACT "ferry authors <maintainers@ferry.dev>")
set(CPACK_DEBIAN_PACKAGE_RELEASE 1)
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY "") # each package's first description line is its own
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_DEBIAN_PACKAGE_ARCHITECTURE ${FERRY_DEB_ARCH})
set(CPACK_DEBIAN_PACKAGE_SECTION admin)
set(CPACK_DEBIAN_PACKAGE_PRIORITY optional)
set(CPACK_DEBIAN_COMPRESSION_TYPE xz)
# Dynamic binaries (the host preset) get their library dependencies from dpkg-shlibdeps; the
# static cross builds need none.
if(NOT FERRY_STATIC)
  set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
endif()
set(CPACK_DEBIAN_FERRY_PACKAGE_NAME ferry)
set(CPACK_DEBIAN_FERRYD_PACKAGE_NAME ferryd)
set(CPACK_DEBIAN_FERRY_PACKAGE_SECTION admin)
set(CPACK_DEBIAN_FERRYD_PACKAGE_SECTION admin)
set(CPACK_DEBIAN_FERRY_DESCRIPTION "deploys software to arm64 and x64 edge devices
ferry cross-builds an application for each platform, tests the arm64
variant under QEMU user-mode emulation, and deploys the matching variant
of an OCI image to each device running ferryd, over mutually
authenticated TLS, to one board or a fleet in canary and waves. It also
enrols devices over SSH (install-agent).")
set(CPACK_DEBIAN_FERRYD_DESCRIPTION "agent that runs and supervises releases pushed by ferry
ferryd runs on each device. It receives the image variant for its
platform over mutually authenticated TLS, verifies it, unpacks it into a
new release, switches atomically, runs and supervises it, and rolls back
by itself when it is unhealthy. The unit is installed but not enabled:
configure /etc/ferry first.")
set(CPACK_STRIP_FILES ON)
set(CPACK_DEBIAN_FERRYD_PACKAGE_CONTROL_EXTRA
    "${FERRY_DEB_DIR}/ferryd/postinst;${FERRY_DEB_DIR}/ferryd/prerm;${FERRY_DEB_DIR}/ferryd/postrm;${FERRY_DEB_DIR}/ferryd/conffiles")
set(CPACK_DEBIAN_FERRYD_PACKAGE_CONTROL_STRICT_PERMISSION ON)
include(CPack)
