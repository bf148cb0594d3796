/* What the firmware's start code gives its main (startup.c). */
#ifndef QD_FIRMWARE_FW_H
#define QD_FIRMWARE_FW_H

#include <stddef.h>
#include <stdint.h>

void qd_fw_puts(const char *s);      /* to the host, by semihosting */
void qd_fw_exit(int ok);             /* ends the emulation */
uint64_t qd_fw_ticks(void);          /* SysTick at the core clock, 64-bit */
size_t qd_fw_stack_used(void);       /* high-water mark of the stack, bytes */
uint64_t qd_fw_calibrate(uint32_t n); /* SysTick ticks of n iterations of a 2-instruction loop */
int qd_fw_main(void);                 /* the program (main.c) */

#endif
