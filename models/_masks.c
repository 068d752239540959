/* Fast random input masks for the SNN on the CPU: out[r, j] = u(key, r * n + j) * x[r % rows_x, j],
 * or, with spikes = 1, Bernoulli spikes for the LIF's rate encoding: out[r, j] = u(key, r * n + j) < x[r % rows_x, j].
 *
 * u is uniform in [0, 1) with 24 random bits, the top bits of the splitmix64 finalizer
 * applied to a counter: a counter-based generator, so any chunk of rows can be filled
 * on any thread and the numbers do not depend on how the work was split. The inner loop
 * has no branches and vectorizes (AVX-512DQ multiplies eight 64-bit lanes at once).
 * Built on first use by models/masks.py with the system C compiler; without one, the
 * harness falls back to torch's generator on several threads.
 */
#include <stdint.h>

static inline uint64_t mix64(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

/* Fills rows [row_start, row_stop) of out (rows, n); x is (rows_x, n) and rows_x divides rows, so row r is
 * masked by x's row r % rows_x (out is (..., B, n), x is (B, n)). Returns -1, writing nothing, when the counts
 * do not describe such a pair: the caller raises, rather than a write past out or a misread x. */
int masked_uniform(float *out, const float *x, int64_t n, int64_t rows, int64_t rows_x, int64_t row_start,
                   int64_t row_stop, uint64_t key, int spikes) {
    if (n <= 0 || rows_x <= 0 || rows % rows_x != 0 || row_start < 0 || row_start > row_stop || row_stop > rows)
        return -1;
    const float scale = 1.0f / 16777216.0f; /* 2^-24 */
    for (int64_t r = row_start; r < row_stop; ++r) {
        float *o = out + r * n;
        const float *xr = x + (r % rows_x) * n;
        const uint64_t base = key + (uint64_t)(r * n) * 0x9e3779b97f4a7c15ULL;
        if (spikes) {
            for (int64_t j = 0; j < n; ++j) {
                uint64_t h = mix64(base + (uint64_t)j * 0x9e3779b97f4a7c15ULL);
                o[j] = (float)(h >> 40) * scale < xr[j] ? 1.0f : 0.0f;
            }
        } else {
            for (int64_t j = 0; j < n; ++j) {
                uint64_t h = mix64(base + (uint64_t)j * 0x9e3779b97f4a7c15ULL);
                o[j] = (float)(h >> 40) * scale * xr[j];
            }
        }
    }
    return 0;
}
