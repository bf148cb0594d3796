/* Bare-metal start for the MPS2 boards under QEMU: the vector table, the reset handler (copy
 * .data, zero .bss, paint the stack for its high-water mark, enable the FPU, call main, leave
 * by semihosting), SysTick as a 2^24-wrapping tick counter, and the semihosting calls the
 * firmware reports through. No newlib: the runtime needs memcpy/memset/memmove, defined here. */
#include <stddef.h>
#include <stdint.h>

#include "fw.h"

extern uint32_t __data_load[], __data_start[], __data_end[], __bss_start[], __bss_end[];
extern uint32_t __stack_limit[], __stack_top[];

#define STACK_PAINT 0xa5a5a5a5u

static int semihost(int op, const void *arg)
{
    register int r0 __asm__("r0") = op;
    register const void *r1 __asm__("r1") = arg;
    __asm__ volatile("bkpt 0xab" : "+r"(r0) : "r"(r1) : "memory");
    return r0;
}

void qd_fw_puts(const char *s)
{
    semihost(0x04, s); /* SYS_WRITE0 */
}

void qd_fw_exit(int ok)
{
    /* SYS_EXIT: ADP_Stopped_ApplicationExit (status 0), or RunTimeErrorUnknown (status 1) */
    semihost(0x18, (const void *)(uintptr_t)(ok ? 0x20026 : 0x20023));
    for (;;)
        ;
}

static volatile uint32_t systick_wraps;

static void systick_handler(void)
{
    systick_wraps++;
}

#define SYST_CSR (*(volatile uint32_t *)0xe000e010)
#define SYST_RVR (*(volatile uint32_t *)0xe000e014)
#define SYST_CVR (*(volatile uint32_t *)0xe000e018)

uint64_t qd_fw_ticks(void)
{
    uint32_t w, v;
    do { /* a wrap between the two reads shows as a changed count */
        w = systick_wraps;
        v = SYST_CVR;
    } while (w != systick_wraps);
    return ((uint64_t)w << 24) + (0xffffffu - v);
}

uint64_t qd_fw_calibrate(uint32_t n)
{
    uint64_t t0 = qd_fw_ticks();
    __asm__ volatile("1: subs %0, %0, #1\n\tbne 1b" : "+r"(n) : : "cc");
    return qd_fw_ticks() - t0;
}

size_t qd_fw_stack_used(void)
{
    const uint32_t *p = __stack_limit;
    while (p < __stack_top && *p == STACK_PAINT)
        p++;
    return (size_t)((const uint8_t *)__stack_top - (const uint8_t *)p);
}

static void fault_handler(void)
{
    qd_fw_puts("{\"error\":\"fault\"}\n");
    qd_fw_exit(0);
}

void qd_fw_reset(void)
{
    for (uint32_t *s = __data_load, *d = __data_start; d < __data_end;)
        *d++ = *s++;
    for (uint32_t *d = __bss_start; d < __bss_end;)
        *d++ = 0;
    uint32_t *sp;
    __asm__ volatile("mov %0, sp" : "=r"(sp));
    for (uint32_t *p = __stack_limit; p < sp - 16; p++)
        *p = STACK_PAINT;
#if defined(__ARM_FP)
    *(volatile uint32_t *)0xe000ed88 |= 0xfu << 20; /* CPACR: CP10, CP11 full access */
    __asm__ volatile("dsb\n\tisb");
#endif
    SYST_RVR = 0xffffff;
    SYST_CVR = 0;
    SYST_CSR = 7; /* processor clock, interrupt on wrap, enabled */
    qd_fw_exit(qd_fw_main() == 0);
}

__attribute__((section(".vectors"), used)) static void (*const vectors[16])(void) = {
    (void (*)(void))__stack_top, qd_fw_reset, fault_handler, fault_handler, fault_handler,
    fault_handler, fault_handler, 0, 0, 0, 0, fault_handler, fault_handler, 0, fault_handler,
    systick_handler,
};

/* The C library functions the runtime may call (and the compiler may emit): word at a time
 * where both pointers share their alignment (ARMv7-M loads and stores words unaligned, but
 * LDM/STM and a word copy of aligned data are what keep a copy near one instruction a word),
 * bytes for the rest. CMSIS-NN's im2col copies through memcpy too (bench/mcu_speed.sh). */
void *memcpy(void *d, const void *s, size_t n)
{
    uint8_t *dp = d;
    const uint8_t *sp = s;
    if ((((uintptr_t)dp ^ (uintptr_t)sp) & 3) == 0) {
        while (n && ((uintptr_t)dp & 3))
            *dp++ = *sp++, n--;
        uint32_t *dw = (uint32_t *)dp;
        const uint32_t *sw = (const uint32_t *)sp;
        for (; n >= 16; n -= 16, dw += 4, sw += 4) {
            uint32_t a = sw[0], b = sw[1], c = sw[2], e = sw[3];
            dw[0] = a, dw[1] = b, dw[2] = c, dw[3] = e;
        }
        for (; n >= 4; n -= 4)
            *dw++ = *sw++;
        dp = (uint8_t *)dw, sp = (const uint8_t *)sw;
    }
    while (n--)
        *dp++ = *sp++;
    return d;
}

void *memmove(void *d, const void *s, size_t n)
{
    uint8_t *dp = d;
    const uint8_t *sp = s;
    if (dp <= sp || dp >= sp + n)
        return memcpy(d, s, n); /* a forward copy is safe */
    while (n--)
        dp[n] = sp[n];
    return d;
}

void *memset(void *d, int c, size_t n)
{
    uint8_t *dp = d;
    while (n && ((uintptr_t)dp & 3))
        *dp++ = (uint8_t)c, n--;
    uint32_t v = (uint8_t)c * 0x01010101u, *dw = (uint32_t *)dp;
    for (; n >= 16; n -= 16, dw += 4)
        dw[0] = v, dw[1] = v, dw[2] = v, dw[3] = v;
    for (; n >= 4; n -= 4)
        *dw++ = v;
    dp = (uint8_t *)dw;
    while (n--)
        *dp++ = (uint8_t)c;
    return d;
}
