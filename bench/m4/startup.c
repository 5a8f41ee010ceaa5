/* Minimal Cortex-M4F reset path for the emulated benchmark: vector table,
 * .data copy, .bss clear, FPU access (CPACR), main, then park in bench_done. */
#include <stdint.h>

extern uint32_t _sidata, _sdata, _edata, _sbss, _ebss, _estack;
extern int main(void);
void Reset_Handler(void);

volatile int32_t bench_exit_code;

__attribute__((noinline, noreturn)) void bench_done(void) {
    for (;;) __asm volatile("" ::: "memory");
}

__attribute__((noreturn)) void Reset_Handler(void) {
    for (uint32_t *src = &_sidata, *dst = &_sdata; dst < &_edata;) *dst++ = *src++;
    for (uint32_t *dst = &_sbss; dst < &_ebss;) *dst++ = 0;
    /* CP10/CP11 full access, as a real startup does before any VFP instruction */
    *(volatile uint32_t *)0xE000ED88u |= 0xFu << 20;
    __asm volatile("dsb\n\tisb" ::: "memory");
    bench_exit_code = main();
    bench_done();
}

__attribute__((section(".isr_vector"), used)) const void *const bench_vectors[2] = {
    &_estack, (const void *)Reset_Handler,
};
