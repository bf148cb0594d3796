/* The SIMD back end of a target that has none (every target but x86 and aarch64): no layer
 * is accelerated, every kernel is the portable one. */
#if !defined(__x86_64__) && !defined(__i386__) && !defined(__aarch64__)
#include "rt_impl.h"

int rt_cpu_has(int isa)
{
    return isa == QD_RT_ISA_PORTABLE;
}

int rt_accel_eligible(const struct qd_rt *rt, int i)
{
    (void)rt, (void)i;
    return 0;
}

size_t rt_accel_node_bytes(const struct qd_rt *rt, int i, int isa)
{
    (void)rt, (void)i, (void)isa;
    return 0;
}

size_t rt_accel_scratch_bytes(const struct qd_rt *rt, int i, int isa)
{
    (void)rt, (void)i, (void)isa;
    return 0;
}

void rt_accel_pack(const struct qd_rt *rt, int i, int isa, struct rt_accel *a, uint8_t **mem)
{
    (void)rt, (void)i, (void)isa, (void)a, (void)mem;
}

void rt_accel_conv(const struct qd_rt *rt, int i)
{
    (void)rt, (void)i;
}

int rt_accel_add(const struct qd_rt *rt, int i)
{
    (void)rt, (void)i;
    return 0;
}
#else
typedef int rt_generic_unused; /* x86: rt_x86.c is the back end; aarch64: rt_arm64.c */
#endif
