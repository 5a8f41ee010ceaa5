/* The STM32L4 HAL SAI driver, compiled into the firmware for kws.AudioIn.
 * MicroPython's stm32 port neither lists stm32l4xx_hal_sai.c in its HAL_SRC_C
 * nor defines HAL_SAI_MODULE_ENABLED in stm32l4xx_hal_conf_base.h; a user C
 * module cannot change either, so this file enables the module for itself and
 * includes the driver source (micropython.mk puts the HAL Src folder on the
 * include path). Built only for the L4 series, with KWS_WITH_AUDIO_STM32. */
#if KWS_WITH_AUDIO_STM32
#include "stm32l4xx_hal.h"
#include "stm32l4xx_hal_sai.h"
#define HAL_SAI_MODULE_ENABLED
#include "stm32l4xx_hal_sai.c"
#endif
