# MicroPython user C module `kws` (CMake-based ports: esp32, rp2).
# Build: make -C ports/esp32 BOARD=ESP32_GENERIC_S3 USER_C_MODULES=<a micropython.cmake including this file>
add_library(usermod_kws INTERFACE)

target_sources(usermod_kws INTERFACE
    ${CMAKE_CURRENT_LIST_DIR}/kws_model.c
    ${CMAKE_CURRENT_LIST_DIR}/kws_ops.c
    ${CMAKE_CURRENT_LIST_DIR}/kws_frontend.c
    ${CMAKE_CURRENT_LIST_DIR}/kws_mp.c
)

target_include_directories(usermod_kws INTERFACE ${CMAKE_CURRENT_LIST_DIR})
# The int8 feature quantisation must round every float32 step (no fused multiply-add).
target_compile_options(usermod_kws INTERFACE -ffp-contract=off)

target_link_libraries(usermod INTERFACE usermod_kws)
