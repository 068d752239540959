/* Fast random input masks for the SNN on the CPU: out[r, j] = u(key, r * n + j) * x[r % rows_x, j],
 * or, with mode 1, Bernoulli spikes for the LIF's rate encoding: out[r, j] = u(key, r * n + j) < x[r % rows_x, j].
 * out is float32, or with mode 2 the masked input rounded to bfloat16 (as torch rounds float32 to it: to
 * nearest, ties to even), for the bf16 GEMMs without a float32 copy and a cast.
 *
 * u is uniform in [0, 1) with 24 random bits, the top bits of the splitmix64 finalizer
 * applied to a counter: a counter-based generator, so any chunk of rows can be filled
 * on any thread and the numbers do not depend on how the work was split. The inner loop
 * has no branches and vectorizes (AVX-512DQ multiplies eight 64-bit lanes at once).
 * Built on first use by models/masks.py with the system C compiler; without one, the
 * harness falls back to torch's generator on several threads. Built with -fopenmp (models/native.py), a call
 * splits its rows over `parts` threads of torch's own OpenMP runtime; else it runs in the calling thread.
 */
#include <stdint.h>
#include <string.h>

#include "_parallel.h"

static inline uint64_t mix64(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

/* float32 -> bfloat16 as torch rounds it: to nearest, ties to even; a NaN stays a NaN (0x7fc0) */
static inline uint16_t to_bf16(float f) {
    uint32_t bits;
    memcpy(&bits, &f, sizeof bits);
    if ((bits & 0x7fffffffu) > 0x7f800000u) return 0x7fc0u;
    return (uint16_t)((bits + 0x7fffu + ((bits >> 16) & 1u)) >> 16);
}

enum { MASKS = 0, SPIKES = 1, MASKS_BF16 = 2 };

/* Row r of the output from u(key, r * n + j): the inner loops have no branches and vectorize. */
static void fill_rows(void *out, const float *x, int64_t n, int64_t rows_x, int64_t row_start, int64_t row_stop,
                      uint64_t key, int mode) {
    const float scale = 1.0f / 16777216.0f; /* 2^-24 */
    for (int64_t r = row_start; r < row_stop; ++r) {
        const float *xr = x + (r % rows_x) * n;
        const uint64_t base = key + (uint64_t)(r * n) * 0x9e3779b97f4a7c15ULL;
#define U(j) ((float)(mix64(base + (uint64_t)(j) * 0x9e3779b97f4a7c15ULL) >> 40) * scale)
        if (mode == MASKS_BF16) {
            uint16_t *o = (uint16_t *)out + r * n;
            for (int64_t j = 0; j < n; ++j) o[j] = to_bf16(U(j) * xr[j]);
        } else if (mode == SPIKES) {
            float *o = (float *)out + r * n;
            for (int64_t j = 0; j < n; ++j) o[j] = U(j) < xr[j] ? 1.0f : 0.0f;
        } else {
            float *o = (float *)out + r * n;
            for (int64_t j = 0; j < n; ++j) o[j] = U(j) * xr[j];
        }
#undef U
    }
}

/* Fills rows [row_start, row_stop) of out (rows, n); x is (rows_x, n) and rows_x divides rows, so row r is
 * masked by x's row r % rows_x (out is (..., B, n), x is (B, n)). mode: 0 masks, 1 spikes, 2 masks in bfloat16
 * (out then holds bfloat16 numbers, as uint16). The rows are split over `parts` threads (1: this one). Returns -1, writing nothing, when the counts do not describe such a pair: the caller raises, rather than
 * a write past out or a misread x. */
int masked_uniform(void *out, const float *x, int64_t n, int64_t rows, int64_t rows_x, int64_t row_start,
                   int64_t row_stop, uint64_t key, int mode, int parts) {
    if (n <= 0 || rows_x <= 0 || rows % rows_x != 0 || row_start < 0 || row_start > row_stop || row_stop > rows ||
        mode < MASKS || mode > MASKS_BF16)
        return -1;
    PARALLEL_SLICES(row_start, row_stop, 1, parts, lo, hi) { fill_rows(out, x, n, rows_x, lo, hi, key, mode); }
    return 0;
}
