/* Event-driven layer products for 0/1 inputs on the CPU (models/spike_products.py).
 *
 * A layer whose input is 0/1 spikes, x (rows, n), computes out = x W^T + b by adding, per row, the weight columns of
 * its active inputs (the rows of wt = W^T, (n, N), padded to whole vectors), and its weight gradient dW^T[j] = sum
 * over the rows r where input j fired of g[r] (g = dL/dout, (rows, N)). The events of a row are kept as the indices
 * of its active inputs, in ascending order, in a padded CSR layout: row r's at idx[start[r] ...], count[r] of them.
 *
 * rate_events draws them straight from the rate encoding's probabilities, with the numbers of models/_masks.c (mode
 * SPIKES): u(key, r n + j) < p[r % B, j], the same spikes bit for bit, but only for the inputs whose probability is
 * above 0 (a digit's background never fires), so it does a fifth of the dense generator's work on MNIST and writes
 * no dense matrix. dense_events reads them from a dense 0/1 matrix.
 *
 * Every result is independent of how the work is split over threads: a forward row is summed by one thread in event
 * order, a weight-gradient row by one thread in row order (each thread owns a slice of the inputs j and reads every
 * row's events). Built with -fopenmp where torch uses OpenMP (models/native.py); `parts` threads split each call. */
#include <stdint.h>
#include <string.h>
#ifdef __AVX512F__
#include <immintrin.h>
#endif

#include "_parallel.h"

static inline uint64_t mix64(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

#define GOLDEN 0x9e3779b97f4a7c15ULL
#define BLOCK 64 /* inputs whose numbers are drawn in one vectorized pass */

/* The inputs each image of p (B, n) can fire, for rate_events: first (B + 1) the offsets, nz[first[b] ..] image b's
 * inputs j with p[b, j] > 0, ascending (nz has room for B n). */
int rate_support(const float *p, int64_t n, int64_t B, int64_t *first, int32_t *nz, int parts) {
    if (n <= 0 || B < 0) return -1;
    PARALLEL_SLICES(0, B, 1, parts, lo, hi) {
        for (int64_t b = lo; b < hi; ++b) {
            int64_t c = 0;
            for (int64_t j = 0; j < n; ++j) c += p[b * n + j] > 0.0f;
            first[b + 1] = c;
        }
    }
    first[0] = 0;
    for (int64_t b = 0; b < B; ++b) first[b + 1] += first[b];
    PARALLEL_SLICES(0, B, 1, parts, lo, hi) {
        for (int64_t b = lo; b < hi; ++b) {
            int32_t *out = nz + first[b];
            int64_t c = 0;
            for (int64_t j = 0; j < n; ++j)
                if (p[b * n + j] > 0.0f) out[c++] = (int32_t)j; /* (branchless, it would write past the room) */
        }
    }
    return 0;
}

/* out[c ..] <- the js[i] with u[i] < q[i], i < m, in order; returns the new c. With AVX-512 sixteen at a time by a
 * compress into a register (vpcompressd), stored whole into a local buffer and copied: never a write past the row's
 * room in out, which another thread's row may follow. */
static inline int32_t keep_firing(const int32_t *js, const float *u, const float *q, int64_t m, int32_t *out, int32_t c) {
#ifdef __AVX512F__
    int32_t kept[BLOCK + 16];
    int32_t n = 0;
    int64_t i = 0;
    for (; i + 16 <= m; i += 16) {
        const __mmask16 fire = _mm512_cmp_ps_mask(_mm512_loadu_ps(u + i), _mm512_loadu_ps(q + i), _CMP_LT_OQ);
        _mm512_storeu_si512((void *)(kept + n), _mm512_maskz_compress_epi32(fire, _mm512_loadu_si512((const void *)(js + i))));
        n += __builtin_popcount((unsigned)fire);
    }
    for (; i < m; ++i) {
        kept[n] = js[i];
        n += u[i] < q[i];
    }
    memcpy(out + c, kept, (size_t)n * sizeof(int32_t));
    return c + n;
#else
    for (int64_t i = 0; i < m; ++i) {
        out[c] = js[i];
        c += u[i] < q[i];
    }
    return c;
#endif
}

/* Rows [lo, hi) of the (T B, n) spikes of the rate encoding, as events. p (B, n); nz (S) the indices j with p[b, j]
 * > 0 of each image b in turn, ascending, image b's at nz[first[b] .. first[b + 1]); row r = t B + b keeps its events
 * at idx[t S + first[b] ...] (at most first[b + 1] - first[b] of them) and their number in count[r]. */
int rate_events(const float *p, const int32_t *nz, const int64_t *first, int64_t n, int64_t B, int64_t rows,
                uint64_t key, int32_t *idx, int64_t *start, int32_t *count, int parts) {
    if (n <= 0 || B <= 0 || rows % B != 0) return -1;
    const int64_t S = first[B];
    const float scale = 1.0f / 16777216.0f; /* 2^-24, as _masks.c */
    PARALLEL_SLICES(0, rows, 1, parts, lo, hi) {
        for (int64_t r = lo; r < hi; ++r) {
            const int64_t b = r % B, t = r / B;
            const float *pr = p + b * n;
            const uint64_t base = key + (uint64_t)(r * n) * GOLDEN;
            int32_t *out = idx + t * S + first[b];
            int32_t c = 0;
            for (int64_t k0 = first[b]; k0 < first[b + 1]; k0 += BLOCK) { /* the numbers a block at a time: vectorized */
                const int64_t m = first[b + 1] - k0 < BLOCK ? first[b + 1] - k0 : BLOCK;
                const int32_t *js = nz + k0;
                float u[BLOCK], q[BLOCK];
                for (int64_t i = 0; i < m; ++i) {
                    u[i] = (float)(mix64(base + (uint64_t)js[i] * GOLDEN) >> 40) * scale;
                    q[i] = pr[js[i]];
                }
                c = keep_firing(js, u, q, m, out, c);
            }
            start[r] = t * S + first[b];
            count[r] = c;
        }
    }
    return 0;
}

/* Rows [0, rows) of a dense 0/1 matrix x (rows, n) as events: row r's at idx[r n ...]; an entry is an event where it
 * is not 0. */
int dense_events(const float *x, int64_t n, int64_t rows, int32_t *idx, int64_t *start, int32_t *count, int parts) {
    if (n <= 0 || rows < 0) return -1;
    PARALLEL_SLICES(0, rows, 1, parts, lo, hi) {
        for (int64_t r = lo; r < hi; ++r) {
            const float *xr = x + r * n;
            int32_t *out = idx + r * n;
            int32_t c = 0;
            for (int64_t j = 0; j < n; ++j) {
                out[c] = (int32_t)j;
                c += xr[j] != 0.0f;
            }
            start[r] = r * n;
            count[r] = c;
        }
    }
    return 0;
}

/* 16 float32 in one value (GCC's and Clang's vector extension: one AVX-512 register, or two AVX ones), loaded and
 * stored unaligned through memcpy. */
typedef float v16 __attribute__((vector_size(64)));
static inline v16 load16(const float *p) {
    v16 v;
    memcpy(&v, p, sizeof v);
    return v;
}
static inline void store16(float *p, v16 v) { memcpy(p, &v, sizeof v); }

/* One forward row's columns [c0, c0 + 16 V): the sums held in V registers from `o`'s (read and written whole: o has
 * room for 16 V columns there) over the events e[0 .. m), rows of a padded wt (n, P). */
#define FORWARD_BLOCK(V)                                                                                               \
    static inline void forward_##V(const int32_t *e, int32_t m, const float *wt, int64_t P, int64_t c0, float *o) {   \
        v16 acc[V];                                                                                                    \
        for (int i = 0; i < V; ++i) acc[i] = load16(o + 16 * i);                                                       \
        for (int32_t k = 0; k < m; ++k) {                                                                              \
            const float *w = wt + (int64_t)e[k] * P + c0;                                                              \
            for (int i = 0; i < V; ++i) acc[i] += load16(w + 16 * i);                                                  \
        }                                                                                                              \
        for (int i = 0; i < V; ++i) store16(o + 16 * i, acc[i]);                                                       \
    }
FORWARD_BLOCK(1)
FORWARD_BLOCK(2)
FORWARD_BLOCK(3)
FORWARD_BLOCK(4)
FORWARD_BLOCK(5)
FORWARD_BLOCK(6)
FORWARD_BLOCK(7)
FORWARD_BLOCK(8)

typedef void (*forward_fn)(const int32_t *, int32_t, const float *, int64_t, int64_t, float *);
static const forward_fn FORWARD[9] = {0, forward_1, forward_2, forward_3, forward_4,
                                      forward_5, forward_6, forward_7, forward_8};

/* out (rows, N) = bias + the sum over each row's events j of wt[j], wt (n, P) padded with zeros to P = 16 ceil(N / 16)
 * columns; bias (P) padded too, or NULL. Each output is summed in event order from the bias, by one thread, in one pass
 * over a row's events per 128 columns (N <= 128: one), its sums in registers. (Tiles of 64 inputs, to keep the
 * weights read in the L1 cache, measured slower here: 6.2 against 4.5 ms at 25,000 rows of 784 at density 0.13.) */
int events_forward(const int32_t *idx, const int64_t *start, const int32_t *count, const float *wt, const float *bias,
                   float *out, int64_t n, int64_t N, int64_t rows, int parts) {
    const int64_t P = (N + 15) / 16 * 16;
    if (n <= 0 || N <= 0 || rows < 0) return -1;
    PARALLEL_SLICES(0, rows, 1, parts, lo, hi) {
        float row[128];
        for (int64_t r = lo; r < hi; ++r) {
            for (int64_t c0 = 0; c0 < P; c0 += 128) {
                const int64_t width = P - c0 < 128 ? P - c0 : 128, kept = N - c0 < 128 ? N - c0 : 128;
                if (bias)
                    memcpy(row, bias + c0, (size_t)width * sizeof(float));
                else
                    memset(row, 0, (size_t)width * sizeof(float));
                FORWARD[width / 16](idx + start[r], count[r], wt, P, c0, row);
                memcpy(out + r * N + c0, row, (size_t)kept * sizeof(float));
            }
        }
    }
    return 0;
}

#ifndef TILE_ROWS
#define TILE_ROWS 512 /* a tile: 512 rows of g against the dwt rows of 128 inputs (57 KB at N <= 128): measured best here */
#endif
#ifndef TILE_INPUTS
#define TILE_INPUTS 128
#endif

/* One gradient row's columns [c0, c0 + 16 V), held in V registers (read from `gr`), added to the rows e[0 .. m) of
 * dwt (n, P) at those columns. */
#define GRAD_BLOCK(V)                                                                                                  \
    static inline void grad_##V(const int32_t *e, int32_t m, const float *gr, float *dwt, int64_t P, int64_t c0) {    \
        v16 v[V];                                                                                                      \
        for (int i = 0; i < V; ++i) v[i] = load16(gr + 16 * i);                                                        \
        for (int32_t k = 0; k < m; ++k) {                                                                              \
            float *d = dwt + (int64_t)e[k] * P + c0;                                                                   \
            for (int i = 0; i < V; ++i) store16(d + 16 * i, load16(d + 16 * i) + v[i]);                                \
        }                                                                                                              \
    }
GRAD_BLOCK(1)
GRAD_BLOCK(2)
GRAD_BLOCK(3)
GRAD_BLOCK(4)
GRAD_BLOCK(5)
GRAD_BLOCK(6)
GRAD_BLOCK(7)
GRAD_BLOCK(8)

typedef void (*grad_fn)(const int32_t *, int32_t, const float *, float *, int64_t, int64_t);
static const grad_fn GRAD[9] = {0, grad_1, grad_2, grad_3, grad_4, grad_5, grad_6, grad_7, grad_8};

/* The first of the c ascending events e[0 .. c) that is >= j (c when none). */
static inline int32_t first_at_least(const int32_t *e, int32_t c, int64_t j) {
    int32_t a = 0, b = c;
    while (a < b) {
        const int32_t m = a + (b - a) / 2;
        if (e[m] < j)
            a = m + 1;
        else
            b = m;
    }
    return a;
}


/* dwt (n, P), P = 16 ceil(N / 16), columns [0, N) = for each input j, the sum in row order of g[r] (g (rows, N)) over
 * the rows r with an event j; columns [N, P) are scratch. Each thread owns a slice of the inputs j (cut at multiples
 * of TILE_INPUTS) and walks tiles of TILE_ROWS rows x TILE_INPUTS inputs, so that the dwt rows it adds to stay in the
 * L1 cache; each sum is one thread's, in row order, whatever the split. */
int events_weight_grad(const int32_t *idx, const int64_t *start, const int32_t *count, const float *g, float *dwt,
                       int64_t n, int64_t N, int64_t rows, int parts) {
    const int64_t P = (N + 15) / 16 * 16;
    if (n <= 0 || N <= 0 || rows < 0) return -1;
    PARALLEL_SLICES(0, n, TILE_INPUTS, parts, lo, hi) {
        int32_t cursor[TILE_ROWS];
        float last[128]; /* the last row of g, padded: a row's read runs to P columns, past its end */
        memset(dwt + lo * P, 0, (size_t)((hi - lo) * P) * sizeof(float));
        for (int64_t r0 = 0; r0 < rows && lo < hi; r0 += TILE_ROWS) {
            const int64_t r1 = r0 + TILE_ROWS < rows ? r0 + TILE_ROWS : rows;
            for (int64_t r = r0; r < r1; ++r) cursor[r - r0] = first_at_least(idx + start[r], count[r], lo);
            for (int64_t j0 = lo; j0 < hi; j0 += TILE_INPUTS) {
                const int64_t j1 = j0 + TILE_INPUTS < hi ? j0 + TILE_INPUTS : hi;
                for (int64_t r = r0; r < r1; ++r) {
                    const int32_t *e = idx + start[r];
                    const int32_t c = count[r], k = cursor[r - r0];
                    int32_t end = k;
                    while (end < c && e[end] < j1) ++end;
                    if (end == k) continue;
                    cursor[r - r0] = end;
                    for (int64_t c0 = 0; c0 < N; c0 += 128) {
                        const int64_t width = N - c0 < 128 ? N - c0 : 128, V = (width + 15) / 16;
                        const float *gr = g + r * N + c0;
                        if (r == rows - 1 && width < 16 * V) {
                            memcpy(last, gr, (size_t)width * sizeof(float));
                            memset(last + width, 0, (size_t)(16 * V - width) * sizeof(float));
                            gr = last;
                        }
                        GRAD[V](e + k, end - k, gr, dwt, P, c0);
                    }
                }
            }
        }
    }
    return 0;
}
