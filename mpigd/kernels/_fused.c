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

/* Bumped whenever the calling convention changes, so a stale build is never used. */
#define KERNEL_ABI 1

enum { LOSS_LINEAR = 0, LOSS_LOGISTIC = 1, LOSS_SOFTMAX = 2 };

/* Rows whose predictors are computed before their losses: the exp/log1p latencies of a
 * block overlap, and the block's rows are still in cache for the gradient sweep. */
#define BLOCK 64
/* Columns of X_b^T r accumulated in registers over a block (four AVX2 vectors). */
#define CHUNK 16

/* Functions with a loop that vectorises get an AVX2+FMA clone as well as the baseline,
 * chosen at load time by the CPU (GCC/clang function multiversioning on x86-64), so one
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

/* Softmax loss of one row of K predictors z (overwritten by dl/dz). */
static INLINE double softmax_loss(double *z, Py_ssize_t K, double y, int need_loss)
{
    Py_ssize_t label = (Py_ssize_t)y;
    double top = z[0];
    for (Py_ssize_t k = 1; k < K; k++)
        top = z[k] > top ? z[k] : top;
    double total = 0.0, z_label = z[label] - top;
#pragma omp simd reduction(+:total)
    for (Py_ssize_t k = 0; k < K; k++) {
        z[k] = exp_nonpos(z[k] - top);
        total += z[k];
    }
    double inv = 1.0 / total;
    for (Py_ssize_t k = 0; k < K; k++)
        z[k] *= inv;
    z[label] -= 1.0;
    return need_loss ? log(total) - z_label : 0.0;
}

/* ---- dense rows -------------------------------------------------------------------- */

/* Single output: per block of rows, the predictors (one dot product a row, which runs at
 * memory speed), the losses (vectorised over the block), then X_b^T r two rows at a time
 * while the block is still in cache. */
#define DENSE_SUMS(NAME, T)                                                                \
CLONES static double NAME(const T *X, Py_ssize_t m, Py_ssize_t n, const double *y,       \
                          const double *theta, const double *s, int loss, double *grad,  \
                          int need_loss)                                                 \
{                                                                                         \
    double total = 0.0, r_sum = 0.0, z[BLOCK], r[BLOCK];                                  \
    const double *w = theta;                                                              \
    for (Py_ssize_t start = 0; start < m; start += BLOCK) {                               \
        Py_ssize_t rows = m - start < BLOCK ? m - start : BLOCK, i;                       \
        const T *Xb = X + start * n;                                                      \
        for (i = 0; i < rows; i++) {                                                      \
            const T *x = Xb + i * n;                                                      \
            double a = theta[n];                                                          \
            _Pragma("omp simd reduction(+:a)")                                            \
            for (Py_ssize_t j = 0; j < n; j++)                                            \
                a += (double)x[j] * w[j];                                                 \
            z[i] = a;                                                                     \
        }                                                                                 \
        total += block_losses(loss, rows, z, y + start, s ? s + start : NULL, r, &r_sum,  \
                              need_loss);                                                 \
        /* X_b^T r a chunk of columns at a time, summed over the block in registers */  \
        Py_ssize_t j0 = 0;                                                                \
        for (; j0 + CHUNK <= n; j0 += CHUNK) {                                            \
            double acc[CHUNK] = {0.0};                                                    \
            for (i = 0; i < rows; i++) {                                                  \
                const T *x = Xb + i * n + j0;                                             \
                double ri = r[i];                                                         \
                _Pragma("omp simd")                                                       \
                for (Py_ssize_t j = 0; j < CHUNK; j++)                                    \
                    acc[j] += ri * (double)x[j];                                          \
            }                                                                             \
            for (Py_ssize_t j = 0; j < CHUNK; j++)                                        \
                grad[j0 + j] += acc[j];                                                   \
        }                                                                                 \
        for (i = 0; i < rows && j0 < n; i++) {                                            \
            const T *x = Xb + i * n;                                                      \
            double ri = r[i];                                                             \
            for (Py_ssize_t j = j0; j < n; j++)                                           \
                grad[j] += ri * (double)x[j];                                             \
        }                                                                                 \
    }                                                                                     \
    grad[n] += r_sum;                                                                     \
    return total;                                                                         \
}

DENSE_SUMS(dense_sums_f64, double)
DENSE_SUMS(dense_sums_f32, float)

/* Softmax over dense rows: z (K,) per row, W (n, K) row-major, then G += x^T r. */
#define DENSE_SOFTMAX(NAME, T)                                                             \
CLONES static double NAME(const T *X, Py_ssize_t m, Py_ssize_t n, const double *y,       \
                          const double *theta, const double *s, Py_ssize_t K,            \
                          double *grad, double *z, int need_loss)                        \
{                                                                                         \
    double total = 0.0;                                                                   \
    const double *W = theta, *b = theta + n * K;                                          \
    double *G = grad, *gb = grad + n * K;                                                 \
    for (Py_ssize_t i = 0; i < m; i++) {                                                  \
        const T *x = X + i * n;                                                           \
        memcpy(z, b, K * sizeof(double));                                                 \
        for (Py_ssize_t j = 0; j < n; j++) {                                              \
            double xj = (double)x[j];                                                     \
            const double *Wj = W + j * K;                                                 \
            _Pragma("omp simd")                                                           \
            for (Py_ssize_t k = 0; k < K; k++)                                            \
                z[k] += xj * Wj[k];                                                       \
        }                                                                                 \
        double v = softmax_loss(z, K, y[i], need_loss);                                   \
        if (s) {                                                                          \
            v *= s[i];                                                                    \
            for (Py_ssize_t k = 0; k < K; k++) z[k] *= s[i];                              \
        }                                                                                 \
        total += v;                                                                       \
        for (Py_ssize_t k = 0; k < K; k++) gb[k] += z[k];                                 \
        for (Py_ssize_t j = 0; j < n; j++) {                                              \
            double xj = (double)x[j];                                                     \
            double *Gj = G + j * K;                                                       \
            _Pragma("omp simd")                                                           \
            for (Py_ssize_t k = 0; k < K; k++)                                            \
                Gj[k] += xj * z[k];                                                       \
        }                                                                                 \
    }                                                                                     \
    return total;                                                                         \
}

DENSE_SOFTMAX(dense_softmax_f64, double)
DENSE_SOFTMAX(dense_softmax_f32, float)

/* ---- CSR rows ---------------------------------------------------------------------- */

#define CSR_SUMS(NAME, T, I, P)                                                            \
CLONES static double NAME(const T *data, const I *indices, const P *indptr, Py_ssize_t m,       \
                   const double *y, const double *theta, Py_ssize_t n, const double *s,  \
                   int loss, Py_ssize_t K, double *grad, double *z, int need_loss)       \
{                                                                                         \
    double total = 0.0, rb = 0.0;                                                         \
    const P base = indptr[0];                                                             \
    if (K == 1) {                                                                         \
        const double *w = theta;                                                          \
        for (Py_ssize_t i = 0; i < m; i++) {                                              \
            P lo = indptr[i] - base, hi = indptr[i + 1] - base;                           \
            double a = theta[n], r;                                                       \
            for (P p = lo; p < hi; p++)                                                   \
                a += (double)data[p] * w[indices[p]];                                     \
            total += block_losses(loss, 1, &a, y + i, s ? s + i : NULL, &r, &rb,          \
                                  need_loss);                                             \
            for (P p = lo; p < hi; p++)                                                   \
                grad[indices[p]] += r * (double)data[p];                                  \
        }                                                                                 \
        grad[n] += rb;                                                                    \
        return total;                                                                     \
    }                                                                                     \
    const double *b = theta + n * K;                                                      \
    double *gb = grad + n * K;                                                            \
    for (Py_ssize_t i = 0; i < m; i++) {                                                  \
        P lo = indptr[i] - base, hi = indptr[i + 1] - base;                               \
        memcpy(z, b, K * sizeof(double));                                                 \
        for (P p = lo; p < hi; p++) {                                                     \
            double d = (double)data[p];                                                   \
            const double *Wj = theta + (Py_ssize_t)indices[p] * K;                        \
            for (Py_ssize_t k = 0; k < K; k++)                                            \
                z[k] += d * Wj[k];                                                        \
        }                                                                                 \
        double v = softmax_loss(z, K, y[i], need_loss);                                   \
        if (s) {                                                                          \
            v *= s[i];                                                                    \
            for (Py_ssize_t k = 0; k < K; k++) z[k] *= s[i];                              \
        }                                                                                 \
        total += v;                                                                       \
        for (Py_ssize_t k = 0; k < K; k++) gb[k] += z[k];                                 \
        for (P p = lo; p < hi; p++) {                                                     \
            double d = (double)data[p];                                                   \
            double *Gj = grad + (Py_ssize_t)indices[p] * K;                               \
            for (Py_ssize_t k = 0; k < K; k++)                                            \
                Gj[k] += d * z[k];                                                        \
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
 * weights: a zero-length buffer for none. grad is zeroed here. */
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
    double *z = NULL;
    int failed = 0;
    if (loss == LOSS_SOFTMAX && !(z = malloc((size_t)K * sizeof(double))))
        failed = 1;
    if (!failed) {
        Py_BEGIN_ALLOW_THREADS
        memset(grad.buf, 0, (size_t)grad.len);
        if (loss == LOSS_SOFTMAX)
            total = f32 ? dense_softmax_f32(X.buf, m, n, y.buf, theta.buf, w, K, grad.buf, z,
                                            need_loss)
                        : dense_softmax_f64(X.buf, m, n, y.buf, theta.buf, w, K, grad.buf, z,
                                            need_loss);
        else
            total = f32 ? dense_sums_f32(X.buf, m, n, y.buf, theta.buf, w, loss, grad.buf,
                                         need_loss)
                        : dense_sums_f64(X.buf, m, n, y.buf, theta.buf, w, loss, grad.buf,
                                         need_loss);
        Py_END_ALLOW_THREADS
    }
    free(z);
    PyBuffer_Release(&X); PyBuffer_Release(&y); PyBuffer_Release(&theta);
    PyBuffer_Release(&s); PyBuffer_Release(&grad);
    if (failed)
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
    double *z = malloc((size_t)K * sizeof(double));
    int supported = !i64 || p64; /* int64 indices come with int64 indptr */
    if (z && supported) {
        Py_BEGIN_ALLOW_THREADS
        memset(grad.buf, 0, (size_t)grad.len);
#define CALL(FN) FN(data.buf, indices.buf, indptr.buf, m, y.buf, theta.buf, n, w, loss, K, \
                    grad.buf, z, need_loss)
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
