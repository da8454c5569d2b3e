/* Matrix-vector products for the decode step: y = W x + b, W (m, n) row-major.
 *
 * One new token per step multiplies every weight matrix by a single vector, so the step is
 * bound by reading the weights from memory. Each weight is read once, ROWS rows at a time
 * against the same slice of x (kept in L1), with sixteen-lane partial sums per row held in
 * registers: ROWS independent chains of fused multiply-adds keep enough loads in flight to
 * stream memory near the speed of a plain sum (benchmarks/kernels.py on the 2-core AMD EPYC:
 * 88% of a sum's speed on one thread and on two; MKL's product 45%, oneDNN's 58%).
 *
 * Plain C with GCC/Clang vector extensions: the compiler maps `vec` to the machine's widest
 * SIMD registers (one AVX-512 register, two AVX2 ones, four NEON ones). Accumulation is in
 * float32 for both storage types; bfloat16 values are widened by a 16-bit shift, or multiplied
 * in pairs by vdpbf16ps where the processor has AVX512-BF16.
 */
#include <stdint.h>
#include <string.h>

#define LANES 16
/* As many rows as the accumulators fit in registers: 32 AVX-512 registers hold 16 rows of 16
 * lanes; 16 AVX2 (or 32 NEON) registers hold 4 rows of two (four) registers each. */
#ifdef __AVX512F__
#define ROWS 16
#else
#define ROWS 4
#endif

typedef float vec __attribute__((vector_size(LANES * 4)));
typedef uint32_t uvec __attribute__((vector_size(LANES * 4)));
typedef uint16_t hvec __attribute__((vector_size(LANES * 2)));

static inline vec load_f32(const float *p) {
    vec v;
    memcpy(&v, p, sizeof v); /* unaligned load */
    return v;
}

static inline vec load_bf16(const uint16_t *p) {
    hvec h;
    memcpy(&h, p, sizeof h);
    uvec wide = __builtin_convertvector(h, uvec) << 16;
    vec v;
    memcpy(&v, &wide, sizeof v);
    return v;
}

static inline float bf16_to_f32(uint16_t h) {
    uint32_t bits = (uint32_t)h << 16;
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
}

static inline float lane_sum(vec v) {
    float s = 0.0f;
    for (int l = 0; l < LANES; l++) s += v[l];
    return s;
}

/* Rows [o, o + count) of y, count <= ROWS. X is float (float32 weights) or uint16_t
 * (bfloat16 weights, whose activations are bfloat16 too). */
#define ROW_BLOCK(NAME, T, LOAD, SCALAR)                                                     \
    static void NAME(const T *restrict W, const T *restrict x, const float *restrict b,     \
                     float *restrict y, long o, long count, long n) {                        \
        long nv = n - n % LANES;                                                             \
        const T *w = W + o * n;                                                              \
        if (count == ROWS) {                                                                 \
            vec acc[ROWS];                                                                   \
            for (int r = 0; r < ROWS; r++) acc[r] = (vec){0};                                \
            for (long i = 0; i < nv; i += LANES) {                                           \
                vec xv = LOAD(x + i);                                                        \
                const T *p = w + i; /* one pointer walked down the rows: few registers */    \
                for (int r = 0; r < ROWS; r++, p += n) acc[r] += LOAD(p) * xv;               \
            }                                                                                \
            for (int r = 0; r < ROWS; r++) {                                                 \
                float s = lane_sum(acc[r]);                                                  \
                for (long i = nv; i < n; i++) s += SCALAR(w[r * n + i]) * SCALAR(x[i]);      \
                y[o + r] = s + (b ? b[o + r] : 0.0f);                                        \
            }                                                                                \
            return;                                                                          \
        }                                                                                    \
        for (long r = 0; r < count; r++) { /* the last, partial block */                    \
            vec acc = (vec){0};                                                              \
            for (long i = 0; i < nv; i += LANES) acc += LOAD(w + r * n + i) * LOAD(x + i);   \
            float s = lane_sum(acc);                                                         \
            for (long i = nv; i < n; i++) s += SCALAR(w[r * n + i]) * SCALAR(x[i]);          \
            y[o + r] = s + (b ? b[o + r] : 0.0f);                                            \
        }                                                                                    \
    }

#define AS_IS(v) (v)
ROW_BLOCK(rows_f32, float, load_f32, AS_IS)

#ifdef __AVX512BF16__
/* Processors with AVX512-BF16 multiply pairs of bfloat16 values and add them to float32 lanes
 * in one instruction (vdpbf16ps): 32 weights per load and no widening. The products of two
 * bfloat16 values are exact in float32, so this is the same arithmetic as widening first. */
#include <immintrin.h>
static void rows_bf16(const uint16_t *restrict W, const uint16_t *restrict x,
                      const float *restrict b, float *restrict y, long o, long count, long n) {
    long nv = n - n % 32;
    for (long first = 0; first < count; first += ROWS) {
        long rows = count - first < ROWS ? count - first : ROWS;
        const uint16_t *w = W + (o + first) * n;
        __m512 acc[ROWS];
        for (int r = 0; r < ROWS; r++) acc[r] = _mm512_setzero_ps();
        for (long i = 0; i < nv; i += 32) {
            __m512bh xv = (__m512bh)_mm512_loadu_si512(x + i);
            const uint16_t *p = w + i;
            for (int r = 0; r < rows; r++, p += n)
                acc[r] = _mm512_dpbf16_ps(acc[r], (__m512bh)_mm512_loadu_si512(p), xv);
        }
        for (int r = 0; r < rows; r++) {
            float s = _mm512_reduce_add_ps(acc[r]);
            for (long i = nv; i < n; i++) s += bf16_to_f32(w[r * n + i]) * bf16_to_f32(x[i]);
            y[o + first + r] = s + (b ? b[o + first + r] : 0.0f);
        }
    }
}
#else
ROW_BLOCK(rows_bf16, uint16_t, load_bf16, bf16_to_f32)
#endif

/* y (m,) = W (m, n) x (n,) + b (m,) (b may be NULL). With `threads` > 1 (and OpenMP), the
 * row blocks are shared out in contiguous ranges, one per thread. Built with -fopenmp after
 * PyTorch is loaded, this is PyTorch's own OpenMP runtime and thread pool. */
#define MATVEC(NAME, BLOCK, T)                                                               \
    void NAME(const T *restrict W, const T *restrict x, const float *restrict b,             \
              float *restrict y, long m, long n, int threads) {                              \
        long blocks = (m + ROWS - 1) / ROWS;                                                 \
        (void)threads;                                                                       \
        _Pragma("omp parallel for num_threads(threads) schedule(static) if(threads > 1)")    \
        for (long k = 0; k < blocks; k++) {                                                  \
            long o = k * ROWS;                                                               \
            BLOCK(W, x, b, y, o, m - o < ROWS ? m - o : ROWS, n);                            \
        }                                                                                    \
    }

MATVEC(atenea_matvec_f32, rows_f32, float)
MATVEC(atenea_matvec_bf16, rows_bf16, uint16_t)

/* Y (B, m) = X (B, n) W^T + b for a few rows of X at once (beams, a small batch). Each block
 * of MR weight rows is read from memory once for all the rows of X, which go through it in
 * groups of G (the block stays in L2 between groups): MR x G accumulators in registers.
 * benchmarks/kernels.py against oneDNN, one thread: 1.6x at 2 rows, 1.4x at 4, 1.2x at 8
 * (in development, 8 x 2 beat 4 x 4, 6 x 4 and 8 x 3: more weight rows in flight matter more
 * than reuse). */
#ifdef __AVX512F__
#define MR 8
#define G 2
#else
#define MR 2
#define G 2
#endif

static void block_f32(const float *restrict W, const float *restrict X, const float *restrict b,
                      float *restrict Y, long batch, long m, long n, long o, long count) {
    long nv = n - n % LANES;
    const float *w = W + o * n;
    for (long g = 0; g < batch; g += G) {
        long inputs = batch - g < G ? batch - g : G;
        const float *x = X + g * n;
        if (count == MR && inputs == G) {
            vec acc[MR][G];
            for (int r = 0; r < MR; r++)
                for (int j = 0; j < G; j++) acc[r][j] = (vec){0};
            for (long i = 0; i < nv; i += LANES) {
                vec xv[G];
                for (int j = 0; j < G; j++) xv[j] = load_f32(x + j * n + i);
                const float *p = w + i;
                for (int r = 0; r < MR; r++, p += n) {
                    vec wv = load_f32(p);
                    for (int j = 0; j < G; j++) acc[r][j] += wv * xv[j];
                }
            }
            for (int r = 0; r < MR; r++)
                for (int j = 0; j < G; j++) {
                    float s = lane_sum(acc[r][j]);
                    for (long i = nv; i < n; i++) s += w[r * n + i] * x[j * n + i];
                    Y[(g + j) * m + o + r] = s + (b ? b[o + r] : 0.0f);
                }
            continue;
        }
        for (long r = 0; r < count; r++) /* a partial block or group */
            for (long j = 0; j < inputs; j++) {
                vec acc = (vec){0};
                for (long i = 0; i < nv; i += LANES)
                    acc += load_f32(w + r * n + i) * load_f32(x + j * n + i);
                float s = lane_sum(acc);
                for (long i = nv; i < n; i++) s += w[r * n + i] * x[j * n + i];
                Y[(g + j) * m + o + r] = s + (b ? b[o + r] : 0.0f);
            }
    }
}

void atenea_matmul_rows_f32(const float *restrict W, const float *restrict X,
                            const float *restrict b, float *restrict Y, long batch, long m,
                            long n, int threads) {
    long blocks = (m + MR - 1) / MR;
    (void)threads;
#pragma omp parallel for num_threads(threads) schedule(static) if (threads > 1)
    for (long k = 0; k < blocks; k++) {
        long o = k * MR;
        block_f32(W, X, b, Y, batch, m, n, o, m - o < MR ? m - o : MR);
    }
}
