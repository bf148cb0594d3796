/* The firmware's main on the host: the same program, with fw.h served by stdio, so the host
 * runtime's logits for the same model and images come out in the same lines (cross.sh
 * compares the two outputs). Ticks and stack read 0 here. */
#include <stdio.h>
#include <stdlib.h>

#include "fw.h"

int qd_fw_main(void);

void qd_fw_puts(const char *s)
{
    fputs(s, stdout);
}

void qd_fw_exit(int ok)
{
    exit(ok ? 0 : 1);
}

uint64_t qd_fw_ticks(void)
{
    return 0;
}

size_t qd_fw_stack_used(void)
{
    return 0;
}

uint64_t qd_fw_calibrate(uint32_t n)
{
    (void)n;
    return 0;
}

int main(void)
{
    return qd_fw_main();
}
