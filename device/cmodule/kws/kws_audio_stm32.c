/* kws.AudioIn for the Nucleo-L476RG: an I2S MEMS microphone (SPH0645 / INMP441
 * class) on SAI1 block B, 16 kHz, DMA double buffering into a ring the
 * application drains with readinto(). Compiled only for the STM32 L4 port
 * (micropython.mk sets KWS_WITH_AUDIO_STM32).
 *
 * Wiring (Arduino header names on the Nucleo):
 *   mic BCLK/SCK  <- D3 = PB3 (SAI1_SCK_B, AF13)
 *   mic DOUT/SD   -> D4 = PB5 (SAI1_SD_B,  AF13)
 *   mic LRCL/WS   <- A2 = PA4 (SAI1_FS_B,  AF13)
 *   mic SEL/LR to GND (left slot), VDD 3V3, GND.
 *
 * The SAI runs as I2S master receiver with two 32-bit slots (64 BCLK per frame,
 * BCLK = 1.024 MHz) and 16-bit data (SAI_PROTOCOL_DATASIZE_16BITEXTENDED: the
 * first, most significant 16 bits of each slot, i.e. the top 16 bits of the
 * mic's 24/18-bit word); only the left slot is enabled, so the DMA moves one
 * int16 per sample (a 1 KB double buffer; with 32-bit words and both slots it
 * was 4 KB of .bss, which the Nucleo's GC heap loses). Its kernel clock is
 * PLLSAI1P: 4 MHz MSI x 43 / 7 = 24.571 MHz, divided by 256 x 6 gives
 * 15.997 kHz (-0.02 %).
 *
 * Status: written against the STM32L4 HAL used by MicroPython's stm32 port;
 * compiles in that port, not yet verified on hardware.
 */
#if KWS_WITH_AUDIO_STM32

#include <string.h>
#include "py/runtime.h"
#include "py/mphal.h"
#include "irq.h"
#include "dma.h"
/* MicroPython's stm32l4xx_hal_conf_base.h neither includes nor enables the
 * HAL SAI driver; kws_stm32_hal_sai.c compiles it into the firmware. */
#include "stm32l4xx_hal_sai.h"

/* SAI1 block B is DMA2 channel 2, request 1 (RM0351 table 45). The stm32 port
 * owns DMA2_Channel2_IRQHandler (dma.c) and calls HAL_DMA_IRQHandler on the
 * handle registered for that channel, so the channel is claimed through the
 * port's DMA API with a descriptor for the same channel (dma_SPI_3_TX: SPI3 TX
 * cannot run at the same time, PB3 is SPI3's SCK) and then reconfigured for
 * the SAI request. */
#define KWS_AUDIO_DMA_DESCR (&dma_SPI_3_TX)

#define DMA_FRAMES 256                       /* per half buffer: 16 ms */
#define RING_SAMPLES 4096                    /* 256 ms of audio */

typedef struct {
    mp_obj_base_t base;
} kws_audioin_obj_t;

static SAI_HandleTypeDef sai;
static DMA_HandleTypeDef dma;
static int16_t dma_buf[2 * DMA_FRAMES];      /* two halves x frames, left slot only */
static int16_t ring[RING_SAMPLES];
static volatile uint32_t ring_head, ring_tail, overruns;
static volatile int running;

static void store_half(const int16_t *samples) {
    uint32_t head = ring_head;
    for (int i = 0; i < DMA_FRAMES; ++i) {
        uint32_t next = (head + 1) % RING_SAMPLES;
        if (next == ring_tail) {            /* reader too slow: count and drop */
            overruns++;
            break;
        }
        ring[head] = samples[i];
        head = next;
    }
    ring_head = head;
}

void HAL_SAI_RxHalfCpltCallback(SAI_HandleTypeDef *h) { (void)h; store_half(dma_buf); }
void HAL_SAI_RxCpltCallback(SAI_HandleTypeDef *h) { (void)h; store_half(dma_buf + DMA_FRAMES); }

static void audio_start(void) {
    RCC_PeriphCLKInitTypeDef clk = {0};
    clk.PeriphClockSelection = RCC_PERIPHCLK_SAI1;
    clk.Sai1ClockSelection = RCC_SAI1CLKSOURCE_PLLSAI1;
    clk.PLLSAI1.PLLSAI1Source = RCC_PLLSOURCE_MSI;
    clk.PLLSAI1.PLLSAI1M = 1;
    clk.PLLSAI1.PLLSAI1N = 43;
    clk.PLLSAI1.PLLSAI1P = RCC_PLLP_DIV7;
    clk.PLLSAI1.PLLSAI1Q = RCC_PLLQ_DIV2;
    clk.PLLSAI1.PLLSAI1R = RCC_PLLR_DIV2;
    clk.PLLSAI1.PLLSAI1ClockOut = RCC_PLLSAI1_SAI1CLK;
    if (HAL_RCCEx_PeriphCLKConfig(&clk) != HAL_OK) {
        mp_raise_msg(&mp_type_OSError, MP_ERROR_TEXT("kws.AudioIn: SAI clock"));
    }
    __HAL_RCC_SAI1_CLK_ENABLE();
    __HAL_RCC_DMA2_CLK_ENABLE();
    __HAL_RCC_GPIOA_CLK_ENABLE();
    __HAL_RCC_GPIOB_CLK_ENABLE();
    GPIO_InitTypeDef pin = {0};
    pin.Mode = GPIO_MODE_AF_PP;
    pin.Pull = GPIO_NOPULL;
    pin.Speed = GPIO_SPEED_FREQ_HIGH;
    pin.Alternate = GPIO_AF13_SAI1;
    pin.Pin = GPIO_PIN_3 | GPIO_PIN_5;
    HAL_GPIO_Init(GPIOB, &pin);
    pin.Pin = GPIO_PIN_4;
    HAL_GPIO_Init(GPIOA, &pin);

    memset(&sai, 0, sizeof(sai));
    sai.Instance = SAI1_Block_B;
    sai.Init.AudioMode = SAI_MODEMASTER_RX;
    sai.Init.Synchro = SAI_ASYNCHRONOUS;
    sai.Init.OutputDrive = SAI_OUTPUTDRIVE_DISABLE;
    sai.Init.NoDivider = SAI_MASTERDIVIDER_ENABLE;
    sai.Init.FIFOThreshold = SAI_FIFOTHRESHOLD_1QF;
    sai.Init.AudioFrequency = SAI_AUDIO_FREQUENCY_16K;
    sai.Init.MonoStereoMode = SAI_STEREOMODE;
    sai.Init.CompandingMode = SAI_NOCOMPANDING;
    /* I2S framing (two 32-bit slots), 16-bit data; then only slot 0 (left) enabled:
     * an inactive slot's data never reaches the FIFO */
    if (HAL_SAI_InitProtocol(&sai, SAI_I2S_STANDARD, SAI_PROTOCOL_DATASIZE_16BITEXTENDED, 2) != HAL_OK) {
        mp_raise_msg(&mp_type_OSError, MP_ERROR_TEXT("kws.AudioIn: SAI init"));
    }
    sai.SlotInit.SlotActive = SAI_SLOTACTIVE_0;
    if (HAL_SAI_Init(&sai) != HAL_OK) {
        mp_raise_msg(&mp_type_OSError, MP_ERROR_TEXT("kws.AudioIn: SAI slots"));
    }
    dma_init(&dma, KWS_AUDIO_DMA_DESCR, DMA_PERIPH_TO_MEMORY, &sai);
    dma.Init.Request = DMA_REQUEST_1;
    dma.Init.Direction = DMA_PERIPH_TO_MEMORY;
    dma.Init.PeriphInc = DMA_PINC_DISABLE;
    dma.Init.MemInc = DMA_MINC_ENABLE;
    dma.Init.PeriphDataAlignment = DMA_PDATAALIGN_HALFWORD;
    dma.Init.MemDataAlignment = DMA_MDATAALIGN_HALFWORD;
    dma.Init.Mode = DMA_CIRCULAR;
    dma.Init.Priority = DMA_PRIORITY_HIGH;
    HAL_DMA_DeInit(&dma);
    HAL_DMA_Init(&dma);
    __HAL_LINKDMA(&sai, hdmarx, dma);
    HAL_NVIC_EnableIRQ(DMA2_Channel2_IRQn);
    ring_head = ring_tail = 0;
    if (HAL_SAI_Receive_DMA(&sai, (uint8_t *)dma_buf, 2 * DMA_FRAMES) != HAL_OK) {
        dma_deinit(KWS_AUDIO_DMA_DESCR);
        mp_raise_msg(&mp_type_OSError, MP_ERROR_TEXT("kws.AudioIn: DMA start"));
    }
    running = 1;
}

static mp_obj_t kws_audioin_make_new(const mp_obj_type_t *type, size_t n_args, size_t n_kw, const mp_obj_t *args) {
    (void)args;
    mp_arg_check_num(n_args, n_kw, 0, 1, false); /* optional sample rate: only 16000 */
    if (n_args == 1 && mp_obj_get_int(args[0]) != 16000) {
        mp_raise_ValueError(MP_ERROR_TEXT("kws.AudioIn: only 16000 Hz"));
    }
    kws_audioin_obj_t *self = mp_obj_malloc(kws_audioin_obj_t, type);
    if (!running) {
        audio_start();
    }
    return MP_OBJ_FROM_PTR(self);
}

/* readinto(buf): copies up to len(buf)//2 int16 samples, blocking until that many arrived. */
static mp_obj_t kws_audioin_readinto(mp_obj_t self_in, mp_obj_t buf_in) {
    (void)self_in;
    mp_buffer_info_t b;
    mp_get_buffer_raise(buf_in, &b, MP_BUFFER_WRITE);
    int16_t *out = (int16_t *)b.buf;
    size_t want = b.len / 2, got = 0;
    while (got < want) {
        while (ring_tail == ring_head) {
            #ifdef MICROPY_EVENT_POLL_HOOK
            MICROPY_EVENT_POLL_HOOK   /* MicroPython < 1.22 */
            #else
            mp_event_wait_indefinite(); /* runs pending events, sleeps until the next IRQ */
            #endif
        }
        uint32_t tail = ring_tail;
        while (got < want && tail != ring_head) {
            out[got++] = ring[tail];
            tail = (tail + 1) % RING_SAMPLES;
        }
        ring_tail = tail;
    }
    return MP_OBJ_NEW_SMALL_INT(got);
}
static MP_DEFINE_CONST_FUN_OBJ_2(kws_audioin_readinto_obj, kws_audioin_readinto);

static mp_obj_t kws_audioin_deinit(mp_obj_t self_in) {
    (void)self_in;
    if (running) {
        HAL_SAI_DMAStop(&sai);
        dma_deinit(KWS_AUDIO_DMA_DESCR);
        running = 0;
    }
    return mp_const_none;
}
static MP_DEFINE_CONST_FUN_OBJ_1(kws_audioin_deinit_obj, kws_audioin_deinit);

static void kws_audioin_attr(mp_obj_t self_in, qstr attr, mp_obj_t *dest) {
    (void)self_in;
    if (dest[0] == MP_OBJ_NULL && attr == MP_QSTR_overruns) {
        dest[0] = mp_obj_new_int_from_uint(overruns);
    } else if (dest[0] == MP_OBJ_NULL) {
        dest[1] = MP_OBJ_SENTINEL;
    }
}

static const mp_rom_map_elem_t kws_audioin_locals_table[] = {
    { MP_ROM_QSTR(MP_QSTR_readinto), MP_ROM_PTR(&kws_audioin_readinto_obj) },
    { MP_ROM_QSTR(MP_QSTR_deinit), MP_ROM_PTR(&kws_audioin_deinit_obj) },
};
static MP_DEFINE_CONST_DICT(kws_audioin_locals, kws_audioin_locals_table);

MP_DEFINE_CONST_OBJ_TYPE(
    kws_audioin_type, MP_QSTR_AudioIn, MP_TYPE_FLAG_NONE,
    make_new, kws_audioin_make_new,
    attr, kws_audioin_attr,
    locals_dict, &kws_audioin_locals
    );

#endif
