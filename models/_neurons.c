/* The neuron recurrences of snn (models/snn.py, NeuronRecurrence) and lif (models/lif.py, LIFRecurrence) on the
 * CPU: one call per direction instead of 5-10 small torch kernels per time step.
 *
 * Every tensor is float32 (gates: bool, one byte 0 or 1), contiguous, (T, M) with M = B * N neurons; each neuron's
 * recurrence over t is independent of the others', so a call handles the neurons [start, stop), split over `parts`
 * threads of torch's OpenMP runtime (_parallel.h; cuts at multiples of ALIGN neurons, whole cache lines), or the
 * Python side (models/fused.py) runs several calls on threads where the build has no OpenMP. Within a call, blocks of BLOCK neurons keep their state in a
 * small array on the stack (L1) while t runs, and the loop over a block's neurons vectorizes.
 *
 * Rounding: the forward kernels do the operations of the torch loops (snn.simulate_torch, lif.simulate_torch) in
 * the same order, one float32 rounding each, so their outputs, states, gates and spikes are bit-identical to
 * torch's. That needs the build flags of models/fused.py: no -ffast-math, and -ffp-contract=off (GCC otherwise
 * fuses a * b + c into one FMA, rounded once); where torch itself rounds an FMA (add with alpha), fmaf says so.
 *
 * Each function returns -1, writing nothing, when its counts do not describe such tensors (negative counts,
 * T * M past int64, a neuron range outside [0, M], a gradient's t-stride other than 0 or M, a missing pointer):
 * the caller raises rather than reading or writing past a buffer.
 */
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "_parallel.h"

#define BLOCK 512
#define ALIGN 64 /* models/fused.py's ALIGN */

/* BODY(A, B) with A and B the constants 0 or 1 that a and b are: each of the four a copy of an always_inline block
 * function with its flags known at compile time, so that its loop has no branches on them. */
#define SPECIALIZE2(a, b, BODY)                                                                                         \
    do {                                                                                                                \
        if ((a) && (b)) {                                                                                               \
            BODY(1, 1);                                                                                                 \
        } else if (a) {                                                                                                 \
            BODY(1, 0);                                                                                                 \
        } else if (b) {                                                                                                 \
            BODY(0, 1);                                                                                                 \
        } else {                                                                                                        \
            BODY(0, 0);                                                                                                 \
        }                                                                                                               \
    } while (0)

static int bad_counts(int64_t T, int64_t M, int64_t start, int64_t stop) {
    return T < 0 || M < 0 || start < 0 || start > stop || stop > M || (T > 0 && M > INT64_MAX / T);
}

/* ---- snn: h_t = I_t + d v_{t-1}; o_t = relu(h_t - theta); g_t = 1[o_t > 0];
 *           subtract: v_t = h_t - (p + o_t) g_t;   proportional: v_t = h_t - (p / theta) h_t g_t ---- */

static inline __attribute__((always_inline)) void snn_forward_block(const float *restrict current, float *restrict states,
                                                                    float *restrict outputs, uint8_t *restrict gates,
                                                                    int64_t T, int64_t M, int64_t b, int64_t n,
                                                                    float decay, float threshold, float penalty,
                                                                    float ratio, const int proportional,
                                                                    const int keep_states, const int keep_outputs,
                                                                    const int keep_gates, float *restrict carry) {
    float v[BLOCK], o_block[BLOCK]; /* o_t, for the gates: GCC does not vectorize a loop that also stores a byte */
    for (int64_t j = 0; j < n; ++j) v[j] = carry ? carry[b + j] : 0.0f;
    for (int64_t t = 0; t < T; ++t) {
        const int64_t at = t * M + b;
        const float *restrict in = current + at;
        float *restrict o_out = keep_outputs ? outputs + at : o_block;
        for (int64_t j = 0; j < n; ++j) {
            float h = v[j] * decay; /* torch.mul(v, decay, out=h) */
            h = h + in[j];          /* .add_(I_t) */
            float o = h - threshold;
            o = o < 0.0f ? 0.0f : o; /* clamp_min_(0): NaN stays NaN */
            const float r = proportional ? h * ratio : o + penalty;
            const float nv = o > 0.0f ? h - r : h; /* where(g, h - r, h) */
            v[j] = nv;
            if (keep_states) states[at + j] = nv;
            o_out[j] = o;
        }
        if (keep_gates)
            for (int64_t j = 0; j < n; ++j) gates[at + j] = o_out[j] > 0.0f; /* g_t = 1[o_t > 0] */
    }
    if (carry)
        for (int64_t j = 0; j < n; ++j) carry[b + j] = v[j];
}

#define SNN_FORWARD(P, S, O, G)                                                                                         \
    snn_forward_block(current, states, outputs, gates, T, M, b, n, decay, threshold, penalty, ratio, P, S, O, G, carry)

/* current, states, outputs: (T, M) float32; gates: (T, M) bool. states, outputs and gates may each be NULL (not
 * written). ratio = p / theta, rounded to float as torch rounds the scalar. carry: NULL (start from v_0 = 0), or
 * (M,) float32 holding the state to start from, which receives the state after the last step (a sequence run a
 * chunk of steps at a time). */
int snn_forward(const float *current, float *states, float *outputs, uint8_t *gates, int64_t T, int64_t M,
                int64_t start, int64_t stop, float decay, float threshold, float penalty, float ratio, int proportional,
                int parts, float *carry) {
    if (bad_counts(T, M, start, stop) || (T > 0 && M > 0 && current == NULL)) return -1;
    const int code = (proportional ? 8 : 0) | (states ? 4 : 0) | (outputs ? 2 : 0) | (gates ? 1 : 0);
    PARALLEL_SLICES(start, stop, ALIGN, parts, lo, hi) for (int64_t b = lo; b < hi; b += BLOCK) {
        const int64_t n = hi - b < BLOCK ? hi - b : BLOCK;
        switch (code) { /* each case a loop of its own, without branches on what to write */
        case 0: SNN_FORWARD(0, 0, 0, 0); break;
        case 1: SNN_FORWARD(0, 0, 0, 1); break;
        case 2: SNN_FORWARD(0, 0, 1, 0); break;
        case 3: SNN_FORWARD(0, 0, 1, 1); break;
        case 4: SNN_FORWARD(0, 1, 0, 0); break;
        case 5: SNN_FORWARD(0, 1, 0, 1); break;
        case 6: SNN_FORWARD(0, 1, 1, 0); break;
        case 7: SNN_FORWARD(0, 1, 1, 1); break;
        case 8: SNN_FORWARD(1, 0, 0, 0); break;
        case 9: SNN_FORWARD(1, 0, 0, 1); break;
        case 10: SNN_FORWARD(1, 0, 1, 0); break;
        case 11: SNN_FORWARD(1, 0, 1, 1); break;
        case 12: SNN_FORWARD(1, 1, 0, 0); break;
        case 13: SNN_FORWARD(1, 1, 0, 1); break;
        case 14: SNN_FORWARD(1, 1, 1, 0); break;
        default: SNN_FORWARD(1, 1, 1, 1); break;
        }
    }
    return 0;
}

/* Backward, from a = dL/dh_{T+1} = 0 down to t = 1:  dv = d a (+ dL/dv_t when the states were kept);
 * a = g_t ? (what flows through o_t and, unless the reset cut it, v_t) : dv;  dL/dI_t = a. */
static inline __attribute__((always_inline)) void snn_backward_block(const float *restrict grad, int64_t grad_tstride,
                                                                     const uint8_t *restrict gates,
                                                                     float *restrict grad_current, int64_t T, int64_t M,
                                                                     int64_t b, int64_t n, float decay, float slope,
                                                                     const int states, const int has_slope,
                                                                     float *restrict carry) {
    float a[BLOCK];
    for (int64_t j = 0; j < n; ++j) a[j] = carry ? carry[b + j] : 0.0f;
    for (int64_t t = T - 1; t >= 0; --t) {
        const int64_t at = t * M + b;
        const float *restrict gk = grad + t * grad_tstride + b;
        for (int64_t j = 0; j < n; ++j) {
            float dv = a[j] * decay;
            float fired;
            if (states) {
                dv = dv + gk[j];
                fired = has_slope ? dv * slope : 0.0f;
            } else {
                fired = has_slope ? fmaf(dv, slope, gk[j]) : gk[j]; /* torch.add(dL/do, dv, alpha=slope): one FMA */
            }
            const float next = gates[at + j] ? fired : dv;
            a[j] = next;
            grad_current[at + j] = next;
        }
    }
    if (carry)
        for (int64_t j = 0; j < n; ++j) carry[b + j] = a[j];
}

/* grad: (T, M) float32, or one (M,) row for every t when grad_tstride is 0 (autograd's expanded gradient of a sum
 * over t); gates: (T, M) bool; grad_current: (T, M) float32. slope: dv_t/dh_t where g_t = 1 (0 for subtract).
 * carry: NULL (a = dL/dh_{T+1} = 0), or (M,) float32 holding the a to start from, which receives a = dL/dh_1 (the
 * steps before these come next). */
int snn_backward(const float *grad, int64_t grad_tstride, const uint8_t *gates, float *grad_current, int64_t T,
                 int64_t M, int64_t start, int64_t stop, float decay, float slope, int states, int parts, float *carry) {
    if (bad_counts(T, M, start, stop) || (grad_tstride != 0 && grad_tstride != M)) return -1;
    if (T > 0 && M > 0 && (grad == NULL || gates == NULL || grad_current == NULL)) return -1;
    const int has_slope = slope != 0.0f;
#define SNN_BACKWARD(S, H) snn_backward_block(grad, grad_tstride, gates, grad_current, T, M, b, n, decay, slope, S, H, carry)
    PARALLEL_SLICES(start, stop, ALIGN, parts, lo, hi) for (int64_t b = lo; b < hi; b += BLOCK) {
        const int64_t n = hi - b < BLOCK ? hi - b : BLOCK;
        SPECIALIZE2(states, has_slope, SNN_BACKWARD);
    }
    return 0;
}

/* ---- lif: subtract: U_t = beta U_{t-1} + I_t - threshold R_{t-1};  zero: U_t = beta (1 - R_{t-1}) U_{t-1} + I_t;
 *           R_t = S_t = 1[U_t > threshold] ---- */

static inline __attribute__((always_inline)) void lif_forward_block(const float *restrict current, int64_t current_tstride,
                                                                    float *restrict u, float *restrict spikes,
                                                                    int64_t T, int64_t M, int64_t b, int64_t n,
                                                                    float beta, float threshold, const int zero,
                                                                    const int keep_spikes) {
    float prev[BLOCK];
    for (int64_t j = 0; j < n; ++j) prev[j] = 0.0f;
    for (int64_t t = 0; t < T; ++t) {
        const int64_t at = t * M + b;
        const float *restrict in = current + t * current_tstride + b;
        for (int64_t j = 0; j < n; ++j) {
            const float p = prev[j];
            const int fired = p > threshold; /* R_{t-1} */
            float x = p * beta;              /* torch.mul(prev, beta) */
            if (zero) {
                x = fired ? 0.0f : x; /* masked_fill_(R, 0) */
                x = x + in[j];
            } else {
                x = x + in[j];
                x = fired ? x - threshold : x; /* sub_(R, alpha=threshold): R in {0, 1}, the product exact */
            }
            prev[j] = x;
            u[at + j] = x;
            if (keep_spikes) spikes[at + j] = x > threshold ? 1.0f : 0.0f;
        }
    }
}

/* current: (T, M) float32, or one (M,) row held for every t when current_tstride is 0 (direct encoding); u, spikes:
 * (T, M) float32, spikes may be NULL. */
int lif_forward(const float *current, int64_t current_tstride, float *u, float *spikes, int64_t T, int64_t M,
                int64_t start, int64_t stop, float beta, float threshold, int zero, int parts) {
    if (bad_counts(T, M, start, stop) || (current_tstride != 0 && current_tstride != M)) return -1;
    if (T > 0 && M > 0 && (current == NULL || u == NULL)) return -1;
#define LIF_FORWARD(Z, S) lif_forward_block(current, current_tstride, u, spikes, T, M, b, n, beta, threshold, Z, S)
    PARALLEL_SLICES(start, stop, ALIGN, parts, lo, hi) for (int64_t b = lo; b < hi; b += BLOCK) {
        const int64_t n = hi - b < BLOCK ? hi - b : BLOCK;
        SPECIALIZE2(zero, spikes != NULL, LIF_FORWARD);
    }
    return 0;
}

enum { MEMBRANE = 0, ATAN = 1, SIGMOID = 2, FAST_SIGMOID = 3 };

/* exp(x) within 2 ulp for |x| <= 80, straight-line code so that the loop calling it vectorizes (libm's expf is a
 * call, and GCC vectorizes none without -ffast-math): Cephes' expf, 2^k exp(r) with r = x - k ln 2 in two parts.
 * x is clamped to [-80, 80] first (NaN stays NaN): the sigmoid surrogate's alpha s (1 - s) is below 1e-34 there. */
static inline __attribute__((always_inline)) float exp_clamped(float x) {
    x = x < -80.0f ? -80.0f : x;
    x = x > 80.0f ? 80.0f : x;
    const float magic = 12582912.0f;                       /* 1.5 * 2^23 */
    const float shifted = x * 1.44269504088896341f + magic; /* k = round(x / ln 2) in the low bits of the mantissa */
    const float k = shifted - magic;
    float r = x - k * 0.693359375f;
    r = r - k * -2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    const float y = p * r * r + r + 1.0f;
    uint32_t bits;
    memcpy(&bits, &shifted, sizeof bits);
    bits = (bits - 0x4B400000u + 127u) << 23; /* 2^k, k in [-116, 116]: a normal float (no float-to-int conversion) */
    float scale;
    memcpy(&scale, &bits, sizeof scale);
    return y * scale;
}

/* g_t = dL/dS_t surrogate'(U_t - threshold), in models/lif_reference.surrogate_grad's order of operations. */
static inline __attribute__((always_inline)) float surrogate_times(float u, float grad, float threshold, float c1,
                                                                   float c2, const int surrogate) {
    const float x = u - threshold;
    if (surrogate == ATAN) { /* alpha / 2 / (1 + (pi / 2 alpha x)^2): c1 = pi / 2 alpha, c2 = alpha / 2 */
        float y = x * c1;
        y = y * y;
        y = y + 1.0f;
        y = 1.0f / y;
        return y * c2 * grad;
    }
    if (surrogate == SIGMOID) { /* alpha s (1 - s), s = sigmoid(alpha x): c1 = alpha */
        const float s = 1.0f / (1.0f + exp_clamped(-(x * c1)));
        return (1.0f - s) * s * c1 * grad;
    }
    if (surrogate == FAST_SIGMOID) { /* 1 / (slope |x| + 1)^2: c1 = slope */
        float y = fabsf(x) * c1;
        y = y + 1.0f;
        y = y * y;
        return 1.0f / y * grad;
    }
    return grad; /* MEMBRANE: the caller's dL/dU_t */
}

static inline __attribute__((always_inline)) void lif_backward_block(const float *restrict u,
                                                                     const float *restrict grad_out,
                                                                     int64_t grad_tstride, float *restrict grad,
                                                                     float *restrict grad_sum, int64_t T, int64_t M,
                                                                     int64_t b, int64_t n, float beta, float threshold,
                                                                     const int zero, const int surrogate, float c1,
                                                                     float c2, const int summed) {
    float acc[BLOCK];
    double total[BLOCK];
    for (int64_t j = 0; j < n; ++j) acc[j] = 0.0f, total[j] = 0.0;
    for (int64_t t = T - 1; t >= 0; --t) {
        const int64_t at = t * M + b;
        const float *restrict go = grad_out + t * grad_tstride + b;
        for (int64_t j = 0; j < n; ++j) {
            const float ut = u[at + j];
            const float g = surrogate_times(ut, go[j], threshold, c1, c2, surrogate);
            const float carry = zero ? (ut <= threshold ? beta : 0.0f) : beta; /* dU_{t+1}/dU_t */
            const float next = g + carry * acc[j];                             /* dL/dU_t */
            acc[j] = next;
            if (summed)
                total[j] += next;
            else
                grad[at + j] = next;
        }
    }
    if (summed)
        for (int64_t j = 0; j < n; ++j) grad_sum[b + j] = (float)total[j];
}

#define LIF_BACKWARD(Z, S, SUM)                                                                                         \
    lif_backward_block(u, grad_out, grad_tstride, grad, grad_sum, T, M, b, n, beta, threshold, Z, S, c1, c2, SUM)
#define LIF_BACKWARD_SURROGATES(Z, SUM)                                                                                 \
    switch (surrogate) {                                                                                                \
    case ATAN: LIF_BACKWARD(Z, ATAN, SUM); break;                                                                       \
    case SIGMOID: LIF_BACKWARD(Z, SIGMOID, SUM); break;                                                                 \
    case FAST_SIGMOID: LIF_BACKWARD(Z, FAST_SIGMOID, SUM); break;                                                        \
    default: LIF_BACKWARD(Z, MEMBRANE, SUM); break;                                                                     \
    }

/* u: (T, M) float32, the forward's membranes; grad_out: dL/dS_t (surrogate 1-3) or dL/dU_t (0), (T, M) float32 or
 * one (M,) row for every t (grad_tstride 0). Writes dL/dI_t = dL/dU_t into grad (T, M), or, when grad is NULL, its
 * sum over t (a held current's gradient) into grad_sum (M,), summed in double. */
int lif_backward(const float *u, const float *grad_out, int64_t grad_tstride, float *grad, float *grad_sum, int64_t T,
                 int64_t M, int64_t start, int64_t stop, float beta, float threshold, int zero, int surrogate, float c1,
                 float c2, int parts) {
    if (bad_counts(T, M, start, stop) || (grad_tstride != 0 && grad_tstride != M)) return -1;
    if (surrogate < MEMBRANE || surrogate > FAST_SIGMOID) return -1;
    if (T > 0 && M > 0 && (u == NULL || grad_out == NULL)) return -1;
    if (M > 0 && grad == NULL && grad_sum == NULL) return -1;
    const int summed = grad == NULL;
    PARALLEL_SLICES(start, stop, ALIGN, parts, lo, hi) for (int64_t b = lo; b < hi; b += BLOCK) {
        const int64_t n = hi - b < BLOCK ? hi - b : BLOCK;
        SPECIALIZE2(zero, summed, LIF_BACKWARD_SURROGATES);
    }
    return 0;
}
