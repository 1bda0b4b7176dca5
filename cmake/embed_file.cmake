# Generates a C file holding one text file as a NUL-terminated array (run with cmake -P).
# In: IN, OUT, NAME.
file(READ "${IN}" hex HEX)
string(REGEX REPLACE "([0-9a-f][0-9a-f])" "0x\\1," hex "${hex}")
get_filename_component(src "${IN}" NAME)
file(WRITE "${OUT}.tmp" "/* Generated from ${src} by cmake/embed_file.cmake; do not edit. */\nconst char ${NAME}[] = {${hex} 0};\n")
file(COPY_FILE "${OUT}.tmp" "${OUT}" ONLY_IF_DIFFERENT)
