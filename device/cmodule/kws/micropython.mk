# MicroPython user C module `kws` (make-based ports: stm32, unix).
# Build: make -C ports/stm32 BOARD=NUCLEO_L476RG USER_C_MODULES=<dir holding kws/ (and ulab/)>
# `kws-kit firmware build` prepares that directory and runs the command.
KWS_MOD_DIR := $(USERMOD_DIR)

SRC_USERMOD += $(KWS_MOD_DIR)/kws_model.c $(KWS_MOD_DIR)/kws_ops.c $(KWS_MOD_DIR)/kws_frontend.c $(KWS_MOD_DIR)/kws_mp.c
CFLAGS_USERMOD += -I$(KWS_MOD_DIR) -ffp-contract=off

# kws.AudioIn (SAI1 + DMA) exists only on the STM32L4 (Nucleo-L476RG). The port
# does not build the HAL SAI driver: kws_stm32_hal_sai.c compiles it from the
# port's stm32lib (its Src folder goes on the include path). Build with
# KWS_AUDIO=0 to leave AudioIn out (measured on NUCLEO_L476RG: 3.3 KB of flash
# and 12.5 KB of static RAM, i.e. heap; docs/cmodule.md).
KWS_AUDIO ?= 1
ifeq ($(MCU_SERIES)$(KWS_AUDIO),l41)
SRC_USERMOD += $(KWS_MOD_DIR)/kws_audio_stm32.c $(KWS_MOD_DIR)/kws_stm32_hal_sai.c
CFLAGS_USERMOD += -DKWS_WITH_AUDIO_STM32=1 -I$(TOP)/lib/stm32lib/STM32L4xx_HAL_Driver/Src
endif
