/* A single-threaded stand-in for <omp.h>, used by the fuzz build where clang's OpenMP runtime
 * (Debian: libomp-dev) is not installed: the three calls nn/ makes, one thread. The pragmas
 * are then ignored, which changes no result (the fuzz targets run one thread anyway). */
#ifndef QD_FUZZ_OMP_H
#define QD_FUZZ_OMP_H

static inline void omp_set_num_threads(int n)
{
    (void)n;
}
static inline int omp_get_max_threads(void)
{
    return 1;
}
static inline int omp_get_thread_num(void)
{
    return 0;
}

#endif
