/* Splitting a call's range over threads of torch's own OpenMP runtime (models/native.py builds with -fopenmp
 * where torch's parallel backend is OpenMP, so the kernels' threads and torch's are the same ones: no second pool
 * spinning against them on a small machine). Without OpenMP the range runs whole in the calling thread.
 *
 *     PARALLEL_SLICES(start, stop, align, parts, lo, hi) { work(lo, hi); }
 *
 * runs the block once per thread of a team of `parts` (1 or less: the calling thread alone), with [lo, hi) that
 * thread's contiguous slice of [start, stop), the cuts at start + multiples of `align`; slices are never empty
 * unless [start, stop) is. The results of a kernel must not depend on the cuts. */
#ifndef SNNBENCH_PARALLEL_H
#define SNNBENCH_PARALLEL_H
#include <stdint.h>
#ifdef _OPENMP
#include <omp.h>
static inline int team_size(void) { return omp_get_num_threads(); }
static inline int team_member(void) { return omp_get_thread_num(); }
#define SNNBENCH_PRAGMA(x) _Pragma(#x)
#define SNNBENCH_TEAM(parts) SNNBENCH_PRAGMA(omp parallel num_threads((parts) > 1 ? (parts) : 1) if ((parts) > 1))
#else
static inline int team_size(void) { return 1; }
static inline int team_member(void) { return 0; }
#define SNNBENCH_TEAM(parts)
#endif

/* [*lo, *hi): slice `id` of `count` slices of [start, stop), cut at multiples of align. */
static inline void slice_of(int64_t start, int64_t stop, int64_t align, int id, int count, int64_t *lo, int64_t *hi) {
    const int64_t units = (stop - start + align - 1) / align;
    const int64_t a = start + units * id / count * align, b = start + units * (id + 1) / count * align;
    *lo = a < stop ? a : stop;
    *hi = b < stop ? b : stop;
}

#define PARALLEL_SLICES(start, stop, align, parts, lo, hi)                                                              \
    SNNBENCH_TEAM(parts)                                                                                                \
    for (int64_t lo, hi, _once = (slice_of((start), (stop), (align), team_member(), team_size(), &lo, &hi), 1);         \
         _once; _once = 0)
#endif
