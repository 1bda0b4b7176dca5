# Strict warnings for ferry's own code; -Werror where CI asks for it.
add_library(ferry_warnings INTERFACE)
target_compile_options(ferry_warnings INTERFACE
  -Wall -Wextra -Wshadow -Wundef -Wstrict-prototypes -Wmissing-prototypes
  -Wformat=2 -Wvla -Wimplicit-fallthrough -Wno-unused-parameter
  # -Wformat-truncation stays on: paths go through fy_path_fmt (FY_ETOOBIG, never a cut path),
  # messages through fy_text_fmt (cut on purpose), see protocol/include/ferry/text.h.
  )
target_compile_definitions(ferry_warnings INTERFACE _GNU_SOURCE _FILE_OFFSET_BITS=64)
if(FERRY_WERROR)
  target_compile_options(ferry_warnings INTERFACE -Werror)
endif()
if(FERRY_SANITIZE)
  add_compile_options(-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined)
  add_link_options(-fsanitize=address,undefined)
endif()
