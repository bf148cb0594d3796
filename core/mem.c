/* mmap-backed blocks with MADV_HUGEPAGE; small blocks fall back to aligned_alloc. */
#define _GNU_SOURCE
#include "core/mem.h"

#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#define BIG (1u << 21)

void *qd_mem_alloc(size_t bytes)
{
    if (bytes == 0)
        bytes = 64;
    if (bytes < BIG) {
        size_t n = (bytes + 63) & ~(size_t)63;
        void *p = aligned_alloc(64, n);
        if (p)
            memset(p, 0, n);
        return p;
    }
    void *p = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED)
        return NULL;
    madvise(p, bytes, MADV_HUGEPAGE);
    return p;
}

void qd_mem_free(void *p, size_t bytes)
{
    if (!p)
        return;
    if (bytes == 0)
        bytes = 64;
    if (bytes < BIG)
        free(p);
    else
        munmap(p, bytes);
}
