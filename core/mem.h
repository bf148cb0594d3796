/* Big aligned blocks for parameters, activations and scratch.
 *     float *p = qd_mem_alloc(n * sizeof(float)); ... qd_mem_free(p, n * sizeof(float));
 * Blocks are 64-byte aligned, zeroed, backed by transparent huge pages where the kernel allows
 * (first-touching 4 KiB pages costs ~10 us each on these machines), and meant to be allocated
 * once and carved into views, never per batch or per request. */
#ifndef QD_CORE_MEM_H
#define QD_CORE_MEM_H

#include <stddef.h>

void *qd_mem_alloc(size_t bytes);
void qd_mem_free(void *p, size_t bytes);

#endif
