/*
 * Fused local sums for mpigd: one sweep over this rank's rows computes z = x W + b, the
 * pointwise loss and its derivative r, and accumulates X^T r, so each row of X is read
 * from memory once while it is in cache. Dense rows (float32 or float64, row-major) and
 * CSR rows (float32 or float64 values; int32 or int64 indices and indptr); linear,
 * logistic and softmax losses; optional row weights. Sums are float64.
 *
 * The NumPy kernels in dense.py and sparse.py are the reference these are tested against
 * (and the fallback when this module is missing or MPIGD_KERNELS=numpy). Built without
 * fast-math: NaN and inf propagate as in NumPy, which divergence detection relies on;
 * only the reductions over features are reassociated (omp simd).
 *
 * The Python wrapper (compiled.py) checks dtypes, shapes and contiguity; this file trusts
 * it. No Python objects are touched while the GIL is released.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#define KERNEL_ABI 1 /* bumped with the calling convention: a stale build is never used */

enum { LOSS_LINEAR = 0, LOSS_LOGISTIC = 1, LOSS_SOFTMAX = 2 };

/* Rows whose predictors are computed before their losses (their exp/log1p latencies
 * overlap), at most BLOCK_BYTES of dense rows: in cache (L2) for the gradient sweep. */
#define BLOCK 64
#define BLOCK_BYTES (128 * 1024)

static Py_ssize_t block_rows(Py_ssize_t row_bytes)
{
    Py_ssize_t rows = BLOCK_BYTES / (row_bytes > 0 ? row_bytes : 1);
    return rows < 1 ? 1 : rows > BLOCK ? BLOCK : rows;
}
/* Columns of X_b^T r accumulated in registers over a block (four AVX2 vectors). */
#define CHUNK 16

/* Functions with a loop that vectorises get an AVX2+FMA clone as well as the baseline,
 * chosen at load time by the CPU (GCC's function multiversioning on x86-64), so one
 * build runs on any node of a cluster whatever the login node's CPU. */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && __GNUC__ >= 12
#if __has_attribute(target_clones)
#define CLONES __attribute__((target_clones("default", "arch=x86-64-v3")))
#endif
#endif
#ifndef CLONES
#define CLONES
#endif
/* Helpers are inlined into each clone, so they are compiled for its instruction set. */
#if defined(__GNUC__)
#define INLINE inline __attribute__((always_inline))
#else
#define INLINE inline
#endif

/* exp(x) for x <= 0 (NaN stays NaN): Cody-Waite reduction by ln 2 and a degree-13
 * Taylor polynomial, within 2 ulp of libm's exp. Branch-free, so a loop over rows
 * vectorises, which libm's exp does not without fast-math. */
static INLINE double exp_nonpos(double x)
{
    const double log2e = 1.4426950408889634, ln2_hi = 6.93147180369123816490e-01,
                 ln2_lo = 1.90821492927058770002e-10, shifter = 0x1.8p52;
    double xc = x < -708.0 ? -708.0 : x;  /* below, exp(x) < 4e-308: returned as 0 */
    union { double d; int64_t i; } k = {xc * log2e + shifter}; /* round(x / ln 2) */
    double kd = k.d - shifter;
    double r = xc - kd * ln2_hi - kd * ln2_lo;  /* |r| <= ln(2) / 2 */
    double p = 1.0 / 6227020800.0;
    p = p * r + 1.0 / 479001600.0; p = p * r + 1.0 / 39916800.0;
    p = p * r + 1.0 / 3628800.0;   p = p * r + 1.0 / 362880.0;
    p = p * r + 1.0 / 40320.0;     p = p * r + 1.0 / 5040.0;
    p = p * r + 1.0 / 720.0;       p = p * r + 1.0 / 120.0;
    p = p * r + 1.0 / 24.0;        p = p * r + 1.0 / 6.0;
    p = p * r + 0.5;               p = p * r + 1.0;
    p = p * r + 1.0;
    union { int64_t i; double d; } scale = {(int64_t)((uint64_t)(k.i + 1023) << 52)}; /* 2^k */
    return x < -708.0 ? 0.0 : p * scale.d;
}

/* log(1 + e) for e in [0, 1] (NaN stays NaN), within 3 ulp of libm's log1p:
 * 2 atanh(s) with s = e / (2 + e), or ln 2 + 2 atanh((e - 1) / (e + 3)) above sqrt(2) - 1,
 * so |s| <= 0.172 and 12 odd terms suffice. No 1 + e is formed: small e keep full
 * precision. */
static INLINE double log1p_unit(double e)
{
    const double ln2 = 0.69314718055994530942;
    int big = e > 0.41421356237309515;
    double s = (big ? e - 1.0 : e) / (big ? e + 3.0 : e + 2.0);
    double s2 = s * s;
    double p = 1.0 / 23;
    p = p * s2 + 1.0 / 21; p = p * s2 + 1.0 / 19; p = p * s2 + 1.0 / 17;
    p = p * s2 + 1.0 / 15; p = p * s2 + 1.0 / 13; p = p * s2 + 1.0 / 11;
    p = p * s2 + 1.0 / 9;  p = p * s2 + 1.0 / 7;  p = p * s2 + 1.0 / 5;
    p = p * s2 + 1.0 / 3;  p = p * s2 + 1.0;
    return 2.0 * s * p + (big ? ln2 : 0.0);
}

/* Losses of `rows` (<= BLOCK) single-output rows: z (predictors) in, r = s dl/dz out;
 * returns the weighted loss sum and adds sum(r) to *r_sum. y and s (NULL: unweighted)
 * point at the block's first row. Each loop is branch-free, so it vectorises. */
static INLINE double block_losses(int loss, Py_ssize_t rows, const double *z, const double *y,
                                  const double *s, double *r, double *r_sum, int need_loss)
{
    double v[BLOCK], total = 0.0, rs = 0.0;
    if (loss == LOSS_LINEAR) {
#pragma omp simd
        for (Py_ssize_t i = 0; i < rows; i++) {
            r[i] = z[i] - y[i];
            v[i] = 0.5 * r[i] * r[i];
        }
    } else {
        /* logistic: log(1 + exp(z)) - y z and sigmoid(z) - y, from one e = exp(-|z|) */
#pragma omp simd
        for (Py_ssize_t i = 0; i < rows; i++) {
            double zi = z[i], e = exp_nonpos(-fabs(zi)), inv = 1.0 / (1.0 + e);
            r[i] = (zi >= 0.0 ? inv : e * inv) - y[i];
            v[i] = e;
        }
        if (need_loss) {
#pragma omp simd
            for (Py_ssize_t i = 0; i < rows; i++)
                v[i] = (z[i] > 0.0 ? z[i] : 0.0) + log1p_unit(v[i]) - y[i] * z[i];
        }
    }
    if (s) {
#pragma omp simd
        for (Py_ssize_t i = 0; i < rows; i++) {
            v[i] *= s[i];
            r[i] *= s[i];
        }
    }
#pragma omp simd reduction(+:total, rs)
    for (Py_ssize_t i = 0; i < rows; i++) {
        total += v[i];
        rs += r[i];
    }
    *r_sum += rs;
    return need_loss ? total : 0.0;
}

/* log(x) for x >= 1 (NaN and inf stay as they are): x = 2^e m with m in [1, 2), so
 * log x = e ln 2 + log1p(m - 1). Branch-free, for the softmax normaliser of each row. */
static INLINE double log_ge1(double x)
{
    const double ln2 = 0.69314718055994530942;
    union { double d; uint64_t i; } bits = {x};
    double e = (double)((int64_t)(bits.i >> 52) - 1023);
    bits.i = (bits.i & 0x000FFFFFFFFFFFFFull) | 0x3FF0000000000000ull;
    double result = e * ln2 + log1p_unit(bits.d - 1.0);
    return x <= 1.7976931348623157e308 ? result : x;
}

/* Losses of a block of rows with K predictors each (z and r row-major, rows x K); z is
 * overwritten. One output: block_losses. Softmax: each row's exponentials (shifted by
 * the row's largest predictor, so none overflows) are vectorised over the outputs, and
 * the normalisers' logarithms over the rows. */
static INLINE double losses(int loss, Py_ssize_t rows, Py_ssize_t K, double *z,
                            const double *y, const double *s, double *r, double *r_sum,
                            int need_loss)
{
    if (K == 1)
        return block_losses(loss, rows, z, y, s, r, r_sum, need_loss);
    double sums[BLOCK], label_z[BLOCK], total = 0.0;
    for (Py_ssize_t i = 0; i < rows; i++) {
        double *zi = z + i * K, top = zi[0], sum = 0.0;
        for (Py_ssize_t k = 1; k < K; k++)
            top = zi[k] > top ? zi[k] : top;
        label_z[i] = zi[(Py_ssize_t)y[i]] - top;
#pragma omp simd reduction(+:sum)
        for (Py_ssize_t k = 0; k < K; k++) {
            zi[k] = exp_nonpos(zi[k] - top);
            sum += zi[k];
        }
        sums[i] = sum;
    }
    if (need_loss) {
#pragma omp simd reduction(+:total)
        for (Py_ssize_t i = 0; i < rows; i++)
            total += (s ? s[i] : 1.0) * (log_ge1(sums[i]) - label_z[i]);
    }
    for (Py_ssize_t i = 0; i < rows; i++) {
        double weight = s ? s[i] : 1.0, scale = weight / sums[i];
        double *zi = z + i * K, *ri = r + i * K;
#pragma omp simd
        for (Py_ssize_t k = 0; k < K; k++) {
            ri[k] = scale * zi[k];
            r_sum[k] += ri[k];
        }
        Py_ssize_t label = (Py_ssize_t)y[i];
        ri[label] -= weight;
        r_sum[label] -= weight;
    }
    return total;
}

/* ---- dense rows -------------------------------------------------------------------- */

/* Per block of rows: the predictors (one dot product a row and output, which runs at
 * memory speed), the losses (vectorised over the block for one output), then X_b^T r a
 * chunk of columns at a time, summed over the block in registers while it is in cache.
 * Wt and Gt are the weights and their gradient sums transposed, (K, n): each output's
 * weights are contiguous. z and r hold BLOCK x K numbers; r_sum K. */
#define DENSE_SUMS(NAME, T)                                                                \
CLONES static double NAME(const T *X, Py_ssize_t m, Py_ssize_t n, Py_ssize_t K,          \
                          const double *y, const double *Wt, const double *b,            \
                          const double *s, int loss, double *Gt, double *r_sum,          \
                          double *z, double *r, int need_loss)                           \
{                                                                                         \
    double total = 0.0;                                                                   \
    Py_ssize_t block = block_rows(n * (Py_ssize_t)sizeof(T));                             \
    for (Py_ssize_t start = 0; start < m; start += block) {                               \
        Py_ssize_t rows = m - start < block ? m - start : block, i;                       \
        const T *Xb = X + start * n;                                                      \
        for (i = 0; i < rows; i++) {                                                      \
            const T *x = Xb + i * n;                                                      \
            Py_ssize_t k = 0;                                                             \
            for (; k + 4 <= K; k += 4) { /* four outputs share each load of x */          \
                const double *w0 = Wt + k * n, *w1 = w0 + n, *w2 = w1 + n, *w3 = w2 + n;  \
                double a0 = b[k], a1 = b[k + 1], a2 = b[k + 2], a3 = b[k + 3];            \
                _Pragma("omp simd reduction(+:a0, a1, a2, a3)")                           \
                for (Py_ssize_t j = 0; j < n; j++) {                                      \
                    double xj = (double)x[j];                                             \
                    a0 += xj * w0[j];                                                     \
                    a1 += xj * w1[j];                                                     \
                    a2 += xj * w2[j];                                                     \
                    a3 += xj * w3[j];                                                     \
                }                                                                         \
                double *zi = z + i * K + k;                                               \
                zi[0] = a0; zi[1] = a1; zi[2] = a2; zi[3] = a3;                           \
            }                                                                             \
            for (; k < K; k++) {                                                          \
                const double *w = Wt + k * n;                                             \
                double a = b[k];                                                          \
                _Pragma("omp simd reduction(+:a)")                                        \
                for (Py_ssize_t j = 0; j < n; j++)                                        \
                    a += (double)x[j] * w[j];                                             \
                z[i * K + k] = a;                                                         \
            }                                                                             \
        }                                                                                 \
        total += losses(loss, rows, K, z, y + start, s ? s + start : NULL, r, r_sum,      \
                        need_loss);                                                       \
        for (Py_ssize_t k = 0; k < K; k++) {                                              \
            double *g = Gt + k * n;                                                       \
            Py_ssize_t j0 = 0;                                                            \
            for (; j0 + CHUNK <= n; j0 += CHUNK) {                                        \
                double acc[CHUNK] = {0.0};                                                \
                for (i = 0; i < rows; i++) {                                              \
                    const T *x = Xb + i * n + j0;                                         \
                    double ri = r[i * K + k];                                             \
                    _Pragma("omp simd")                                                   \
                    for (Py_ssize_t j = 0; j < CHUNK; j++)                                \
                        acc[j] += ri * (double)x[j];                                      \
                }                                                                         \
                for (Py_ssize_t j = 0; j < CHUNK; j++)                                    \
                    g[j0 + j] += acc[j];                                                  \
            }                                                                             \
            for (i = 0; i < rows && j0 < n; i++) {                                        \
                const T *x = Xb + i * n;                                                  \
                double ri = r[i * K + k];                                                 \
                for (Py_ssize_t j = j0; j < n; j++)                                       \
                    g[j] += ri * (double)x[j];                                            \
            }                                                                             \
        }                                                                                 \
    }                                                                                     \
    return total;                                                                         \
}

DENSE_SUMS(dense_sums_f64, double)
DENSE_SUMS(dense_sums_f32, float)

/* ---- CSR rows ---------------------------------------------------------------------- */

/* Per block of rows: gather the predictors, the block's losses, scatter x_i r_i into the
 * gradient; the block's data and indices are read from memory once, the second time from
 * cache. W and G are (n, K) row-major as in theta: a column's K weights are contiguous.
 * z and r hold BLOCK x K numbers; r_sum K. */
#define CSR_SUMS(NAME, T, I, P)                                                            \
CLONES static double NAME(const T *data, const I *indices, const P *indptr, Py_ssize_t m,\
                          Py_ssize_t K, const double *y, const double *W, const double *b,\
                          const double *s, int loss, double *G, double *r_sum, double *z,\
                          double *r, int need_loss)                                      \
{                                                                                         \
    double total = 0.0;                                                                   \
    const P base = indptr[0];                                                             \
    for (Py_ssize_t start = 0; start < m; start += BLOCK) {                               \
        Py_ssize_t rows = m - start < BLOCK ? m - start : BLOCK, i;                       \
        const P *ptr = indptr + start;                                                    \
        for (i = 0; i < rows; i++) {                                                      \
            double *zi = z + i * K;                                                       \
            P lo = ptr[i] - base, hi = ptr[i + 1] - base;                                 \
            if (K == 1) { /* four partial sums: the adds do not wait on each other */     \
                double a0 = b[0], a1 = 0.0, a2 = 0.0, a3 = 0.0;                           \
                P p = lo;                                                                 \
                for (; p + 4 <= hi; p += 4) {                                             \
                    a0 += (double)data[p] * W[indices[p]];                                \
                    a1 += (double)data[p + 1] * W[indices[p + 1]];                        \
                    a2 += (double)data[p + 2] * W[indices[p + 2]];                        \
                    a3 += (double)data[p + 3] * W[indices[p + 3]];                        \
                }                                                                         \
                for (; p < hi; p++)                                                       \
                    a0 += (double)data[p] * W[indices[p]];                                \
                zi[0] = (a0 + a1) + (a2 + a3);                                            \
                continue;                                                                 \
            }                                                                             \
            memcpy(zi, b, (size_t)K * sizeof(double));                                    \
            for (P p = lo; p < hi; p++) {                                                 \
                double d = (double)data[p];                                               \
                const double *Wj = W + (Py_ssize_t)indices[p] * K;                        \
                for (Py_ssize_t k = 0; k < K; k++)                                        \
                    zi[k] += d * Wj[k];                                                   \
            }                                                                             \
        }                                                                                 \
        total += losses(loss, rows, K, z, y + start, s ? s + start : NULL, r, r_sum,      \
                        need_loss);                                                       \
        for (i = 0; i < rows; i++) {                                                      \
            const double *ri = r + i * K;                                                 \
            P lo = ptr[i] - base, hi = ptr[i + 1] - base;                                 \
            if (K == 1) {                                                                 \
                for (P p = lo; p < hi; p++)                                               \
                    G[indices[p]] += ri[0] * (double)data[p];                             \
                continue;                                                                 \
            }                                                                             \
            for (P p = lo; p < hi; p++) {                                                 \
                double d = (double)data[p];                                               \
                double *Gj = G + (Py_ssize_t)indices[p] * K;                              \
                for (Py_ssize_t k = 0; k < K; k++)                                        \
                    Gj[k] += d * ri[k];                                                   \
            }                                                                             \
        }                                                                                 \
    }                                                                                     \
    return total;                                                                         \
}

CSR_SUMS(csr_f64_i32_i32, double, int32_t, int32_t)
CSR_SUMS(csr_f64_i32_i64, double, int32_t, int64_t)
CSR_SUMS(csr_f64_i64_i64, double, int64_t, int64_t)
CSR_SUMS(csr_f32_i32_i32, float, int32_t, int32_t)
CSR_SUMS(csr_f32_i32_i64, float, int32_t, int64_t)
CSR_SUMS(csr_f32_i64_i64, float, int64_t, int64_t)

/* ---- Python entry points ------------------------------------------------------------ */

/* dense_sums(X, X_is_f32, m, n, y, theta, weights, loss, K, grad, need_loss) -> float
 * weights: a zero-length buffer for none. grad is overwritten. */
static PyObject *py_dense_sums(PyObject *self, PyObject *args)
{
    Py_buffer X, y, theta, s, grad;
    int f32, loss, need_loss;
    Py_ssize_t m, n, K;
    if (!PyArg_ParseTuple(args, "y*pnny*y*y*inw*p", &X, &f32, &m, &n, &y, &theta, &s,
                          &loss, &K, &grad, &need_loss))
        return NULL;
    double total = 0.0;
    const double *w = s.len ? (const double *)s.buf : NULL;
    /* one output uses theta and grad as they are; K outputs need (K, n) copies */
    size_t work = 2 * BLOCK * (size_t)K + (K > 1 ? 2 * (size_t)(n * K) : 0);
    double *z = malloc(work * sizeof(double));
    if (z) {
        Py_BEGIN_ALLOW_THREADS
        double *r = z + BLOCK * K, *theta_ = theta.buf, *grad_ = grad.buf;
        double *Wt = theta_, *Gt = grad_;
        memset(grad_, 0, (size_t)grad.len);
        if (K > 1) {
            Wt = r + BLOCK * K;
            Gt = Wt + n * K;
            memset(Gt, 0, (size_t)(n * K) * sizeof(double));
            for (Py_ssize_t j = 0; j < n; j++)
                for (Py_ssize_t k = 0; k < K; k++)
                    Wt[k * n + j] = theta_[j * K + k];
        }
        const double *b = theta_ + n * K;
        double *r_sum = grad_ + n * K;
        total = f32 ? dense_sums_f32(X.buf, m, n, K, y.buf, Wt, b, w, loss, Gt, r_sum, z, r,
                                     need_loss)
                    : dense_sums_f64(X.buf, m, n, K, y.buf, Wt, b, w, loss, Gt, r_sum, z, r,
                                     need_loss);
        if (K > 1)
            for (Py_ssize_t j = 0; j < n; j++)
                for (Py_ssize_t k = 0; k < K; k++)
                    grad_[j * K + k] = Gt[k * n + j];
        Py_END_ALLOW_THREADS
    }
    free(z);
    PyBuffer_Release(&X); PyBuffer_Release(&y); PyBuffer_Release(&theta);
    PyBuffer_Release(&s); PyBuffer_Release(&grad);
    if (!z)
        return PyErr_NoMemory();
    return PyFloat_FromDouble(total);
}

/* csr_sums(data, data_is_f32, indices, indices_are_i64, indptr, indptr_is_i64, m, n, y,
 *          theta, weights, loss, K, grad, need_loss) -> float */
static PyObject *py_csr_sums(PyObject *self, PyObject *args)
{
    Py_buffer data, indices, indptr, y, theta, s, grad;
    int f32, i64, p64, loss, need_loss;
    Py_ssize_t m, n, K;
    if (!PyArg_ParseTuple(args, "y*py*py*pnny*y*y*inw*p", &data, &f32, &indices, &i64,
                          &indptr, &p64, &m, &n, &y, &theta, &s, &loss, &K, &grad,
                          &need_loss))
        return NULL;
    double total = 0.0;
    const double *w = s.len ? (const double *)s.buf : NULL;
    double *z = malloc(2 * BLOCK * (size_t)K * sizeof(double));
    int supported = !i64 || p64; /* int64 indices come with int64 indptr */
    if (z && supported) {
        Py_BEGIN_ALLOW_THREADS
        double *r = z + BLOCK * K, *W = theta.buf, *G = grad.buf;
        memset(G, 0, (size_t)grad.len);
#define CALL(FN) FN(data.buf, indices.buf, indptr.buf, m, K, y.buf, W, W + n * K, w, loss, \
                    G, G + n * K, z, r, need_loss)
        if (f32)
            total = i64 ? CALL(csr_f32_i64_i64) : p64 ? CALL(csr_f32_i32_i64)
                                                      : CALL(csr_f32_i32_i32);
        else
            total = i64 ? CALL(csr_f64_i64_i64) : p64 ? CALL(csr_f64_i32_i64)
                                                      : CALL(csr_f64_i32_i32);
#undef CALL
        Py_END_ALLOW_THREADS
    }
    free(z);
    PyBuffer_Release(&data); PyBuffer_Release(&indices); PyBuffer_Release(&indptr);
    PyBuffer_Release(&y); PyBuffer_Release(&theta); PyBuffer_Release(&s);
    PyBuffer_Release(&grad);
    if (!supported)
        return PyErr_Format(PyExc_ValueError, "int64 indices need int64 indptr");
    if (!z)
        return PyErr_NoMemory();
    return PyFloat_FromDouble(total);
}

static PyMethodDef methods[] = {
    {"dense_sums", py_dense_sums, METH_VARARGS, "Fused loss and gradient sums, dense rows."},
    {"csr_sums", py_csr_sums, METH_VARARGS, "Fused loss and gradient sums, CSR rows."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_fused", "Fused local sums of mpigd's linear models.", -1, methods,
    NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__fused(void)
{
    PyObject *mod = PyModule_Create(&module);
    if (mod && PyModule_AddIntConstant(mod, "ABI", KERNEL_ABI) < 0) {
        Py_DECREF(mod);
        return NULL;
    }
    return mod;
}
