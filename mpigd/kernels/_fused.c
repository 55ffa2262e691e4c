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
 * The Python wrapper (compiled.py) checks dtypes, shapes and contiguity, and the package
 * validates every CSR matrix where it enters; this file trusts neither. The entry points
 * check every buffer's length against the sizes they index with, softmax labels before
 * they are used as class indices, indptr (non-decreasing, within the stored values) before
 * the sweep, and each block's column indices before the block is swept (its gather and
 * scatter then follow only checked indices), so no argument can make a loop read or
 * write outside its buffers: a bad one is a ValueError. No Python objects are touched
 * while the GIL is released.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#define KERNEL_ABI 4 /* bumped with the calling convention: a stale build is never used */

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

#include "_losses.h"

/* Cross-validation: the K outputs are K single-output models, each leaving out the rows
 * of one fold (fold_losses); NULL for one model (or softmax). */
typedef struct {
    const int64_t *fold, *labels; /* each row's fold; the fold each model leaves out */
    const double *cw;             /* NULL, or K x 2 class weights */
    double *loss_sums;            /* 2K: training losses, then validation losses */
} Folds;

/* The block's losses: one model, softmax, or K fold models. */
static INLINE double block_of(int loss, Py_ssize_t start, Py_ssize_t rows, Py_ssize_t K,
                              double *z, const double *y, const double *s, const Folds *cv,
                              double *r, double *r_sum, int need_loss)
{
    if (!cv)
        return losses(loss, rows, K, z, y + start, s ? s + start : NULL, r, r_sum, need_loss);
    fold_losses(loss, rows, K, z, y + start, s ? s + start : NULL, cv->fold + start,
                cv->labels, cv->cw, r, r_sum, cv->loss_sums);
    return 0.0;
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
                          double *z, double *r, int need_loss, const Folds *cv)          \
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
        total += block_of(loss, start, rows, K, z, y, s, cv, r, r_sum, need_loss);        \
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

/* Per block of rows: check the block's column indices (one vectorised min/max pass over
 * them, which leaves them in cache for the gather), gather the predictors, the block's
 * losses, scatter x_i r_i into the gradient; the block's data and indices are read from
 * memory once, the second time from cache. W and G are (n, K) row-major as in theta: a
 * column's K weights are contiguous. z and r hold BLOCK x K numbers; r_sum K. indptr
 * must have been checked (non-decreasing, within data); positions in data are Py_ssize_t,
 * so p + 4 cannot overflow near the end of an int32 indptr. On a block with an index outside
 * 0 .. n - 1 the sweep stops before following any of its indices, sets *bad_row to the
 * first row that holds one and returns (G is then not a gradient). */
#define CSR_SUMS(NAME, T, I, P)                                                            \
CLONES static double NAME(const T *data, const I *indices, const P *indptr, Py_ssize_t m,\
                          Py_ssize_t n, Py_ssize_t K, const double *y, const double *W,   \
                          const double *b, const double *s, int loss, double *G,          \
                          double *r_sum, double *z, double *r, int need_loss,             \
                          const Folds *cv, Py_ssize_t *bad_row)                           \
{                                                                                         \
    double total = 0.0;                                                                   \
    const P base = indptr[0];                                                             \
    for (Py_ssize_t start = 0; start < m; start += BLOCK) {                               \
        Py_ssize_t rows = m - start < BLOCK ? m - start : BLOCK, i;                       \
        const P *ptr = indptr + start;                                                    \
        I low = 0, high = 0; /* the block's smallest and largest index */                 \
        _Pragma("omp simd reduction(min:low) reduction(max:high)")                        \
        for (Py_ssize_t p = ptr[0] - base; p < ptr[rows] - base; p++) {                   \
            low = indices[p] < low ? indices[p] : low;                                    \
            high = indices[p] > high ? indices[p] : high;                                 \
        }                                                                                 \
        if (low < 0 || (int64_t)high >= (int64_t)n) {                                     \
            for (i = 0; i < rows; i++)                                                    \
                for (Py_ssize_t p = ptr[i] - base; p < ptr[i + 1] - base; p++)            \
                    if (indices[p] < 0 || (int64_t)indices[p] >= (int64_t)n) {            \
                        *bad_row = start + i;                                             \
                        return 0.0;                                                       \
                    }                                                                     \
        }                                                                                 \
        for (i = 0; i < rows; i++) {                                                      \
            double *zi = z + i * K;                                                       \
            Py_ssize_t lo = ptr[i] - base, hi = ptr[i + 1] - base;                        \
            if (K == 1) { /* four partial sums: the adds do not wait on each other */     \
                double a0 = b[0], a1 = 0.0, a2 = 0.0, a3 = 0.0;                           \
                Py_ssize_t p = lo;                                                        \
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
            for (Py_ssize_t p = lo; p < hi; p++) {                                        \
                double d = (double)data[p];                                               \
                const double *Wj = W + (Py_ssize_t)indices[p] * K;                        \
                for (Py_ssize_t k = 0; k < K; k++)                                        \
                    zi[k] += d * Wj[k];                                                   \
            }                                                                             \
        }                                                                                 \
        total += block_of(loss, start, rows, K, z, y, s, cv, r, r_sum, need_loss);        \
        for (i = 0; i < rows; i++) {                                                      \
            const double *ri = r + i * K;                                                 \
            Py_ssize_t lo = ptr[i] - base, hi = ptr[i + 1] - base;                        \
            if (K == 1) {                                                                 \
                for (Py_ssize_t p = lo; p < hi; p++)                                      \
                    G[indices[p]] += ri[0] * (double)data[p];                             \
                continue;                                                                 \
            }                                                                             \
            for (Py_ssize_t p = lo; p < hi; p++) {                                        \
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

/* count * size, or -1 when either is negative or the product overflows. */
static Py_ssize_t times(Py_ssize_t count, Py_ssize_t size)
{
    if (count < 0 || size < 0 || (size && count > PY_SSIZE_T_MAX / size))
        return -1;
    return count * size;
}

/* Whether buffer b holds exactly `count` items of `size` bytes; else a ValueError. */
static int holds(const Py_buffer *b, Py_ssize_t count, Py_ssize_t size, const char *name)
{
    Py_ssize_t bytes = times(count, size);
    if (bytes >= 0 && b->len == bytes)
        return 1;
    PyErr_Format(PyExc_ValueError, "%s holds %zd bytes, but the sizes given need %zd items "
                 "of %zd bytes", name, b->len, count, size);
    return 0;
}

/* Whether buffer b is empty or holds exactly `count` items of `size` bytes. */
static int empty_or_holds(const Py_buffer *b, Py_ssize_t count, Py_ssize_t size,
                          const char *name)
{
    return !b->len || holds(b, count, size, name);
}

/* Whether the bytes of buffers a and b overlap. */
static int overlap(const Py_buffer *a, const Py_buffer *b)
{
    uintptr_t a0 = (uintptr_t)a->buf, b0 = (uintptr_t)b->buf;
    return a->len > 0 && b->len > 0 && a0 < b0 + (uintptr_t)b->len &&
           b0 < a0 + (uintptr_t)a->len;
}

/* Whether `out`, which the sweep writes, is apart from each of the `count` buffers it
 * reads (labels and indices checked before the sweep must not change under it); else a
 * ValueError naming it. */
static int apart(const Py_buffer *out, const char *name, const Py_buffer *const *reads,
                 int count)
{
    for (int i = 0; i < count; i++)
        if (reads[i] != out && overlap(out, reads[i])) {
            PyErr_Format(PyExc_ValueError, "%s shares memory with an input; pass a buffer "
                         "of its own", name);
            return 0;
        }
    return 1;
}

/* The model arguments both entry points end with, checked against m, n and K before any
 * of them is indexed: y (float64, m), theta and grad (float64, (n + 1) K), weights
 * (float64, zero length or m), and the fold buffers (see folds_of). Without folds, K > 1
 * is softmax and its labels index the K outputs, so each must lie in [0, K); with folds,
 * the K outputs are single-output models. Returns 0 with a ValueError set on a mismatch. */
static int check_model(Py_ssize_t m, Py_ssize_t n, Py_ssize_t K, int loss, const Py_buffer *y,
                       const Py_buffer *theta, const Py_buffer *s, const Py_buffer *grad,
                       const Py_buffer *fold, const Py_buffer *labels, const Py_buffer *cw,
                       const Py_buffer *loss_sums)
{
    const Py_ssize_t d = sizeof(double);
    if (m < 0 || n < 0 || K < 1 || n == PY_SSIZE_T_MAX) {
        PyErr_Format(PyExc_ValueError, "sizes m = %zd, n = %zd, K = %zd: need m, n >= 0, "
                     "K >= 1", m, n, K);
        return 0;
    }
    if (loss < LOSS_LINEAR || loss > LOSS_SOFTMAX ||
        (fold->len ? loss == LOSS_SOFTMAX : (loss == LOSS_SOFTMAX) != (K > 1))) {
        PyErr_Format(PyExc_ValueError, "loss code %d does not go with K = %zd outputs%s", loss,
                     K, fold->len ? " of fold models" : "");
        return 0;
    }
    Py_ssize_t params = times(n + 1, K);
    if (!holds(y, m, d, "y") || !holds(theta, params, d, "theta") ||
        !holds(grad, params, d, "grad") || !empty_or_holds(s, m, d, "weights") ||
        !empty_or_holds(fold, m, sizeof(int64_t), "fold"))
        return 0;
    if (fold->len && (!holds(labels, K, sizeof(int64_t), "labels") ||
                      !empty_or_holds(cw, times(K, 2), d, "class weights") ||
                      !holds(loss_sums, times(K, 2), d, "loss_sums")))
        return 0;
    if (loss == LOSS_SOFTMAX) {
        const double *label = y->buf;
        for (Py_ssize_t i = 0; i < m; i++)
            if (!(label[i] >= 0.0 && label[i] < (double)K)) { /* NaN fails too */
                PyErr_Format(PyExc_ValueError, "softmax label of row %zd is not a class "
                             "index 0 .. %zd", i, K - 1);
                return 0;
            }
    }
    return 1;
}

/* The fold arguments that end both entry points' argument lists: four buffers, fold
 * (int64, zero length for none), labels (int64, K), cw (float64, zero length or K x 2)
 * and loss_sums (float64, 2K, added to: training, then validation losses). */
static const Folds *folds_of(Py_buffer *fold, Py_buffer *labels, Py_buffer *cw,
                             Py_buffer *loss_sums, Folds *cv)
{
    if (!fold->len)
        return NULL;
    cv->fold = fold->buf;
    cv->labels = labels->buf;
    cv->cw = cw->len ? cw->buf : NULL;
    cv->loss_sums = loss_sums->buf;
    return cv;
}
#define RELEASE_FOLDS() PyBuffer_Release(&fold); PyBuffer_Release(&labels); \
                        PyBuffer_Release(&cw); PyBuffer_Release(&loss_sums)

/* dense_sums(X, X_is_f32, m, n, y, theta, weights, loss, K, grad, need_loss, fold,
 *            labels, cw, loss_sums) -> float
 * X: m x n, row-major. weights: a zero-length buffer for none. grad is overwritten. */
static PyObject *py_dense_sums(PyObject *self, PyObject *args)
{
    Py_buffer X, y, theta, s, grad, fold, labels, cw, loss_sums;
    int f32, loss, need_loss;
    Py_ssize_t m, n, K;
    Folds folds;
    if (!PyArg_ParseTuple(args, "y*pnny*y*y*inw*py*y*y*w*", &X, &f32, &m, &n, &y, &theta, &s,
                          &loss, &K, &grad, &need_loss, &fold, &labels, &cw, &loss_sums))
        return NULL;
    double total = 0.0, *z = NULL;
    const Py_buffer *reads[] = {&X, &y, &theta, &s, &fold, &labels, &cw, &loss_sums};
    int ok = check_model(m, n, K, loss, &y, &theta, &s, &grad, &fold, &labels, &cw,
                         &loss_sums) &&
             holds(&X, times(m, n), f32 ? sizeof(float) : sizeof(double), "X") &&
             apart(&grad, "grad", reads, 8) && apart(&loss_sums, "loss_sums", reads, 7);
    if (ok) {
        const Folds *cv = folds_of(&fold, &labels, &cw, &loss_sums, &folds);
        const double *w = s.len ? (const double *)s.buf : NULL;
        /* one output uses theta and grad as they are; K outputs need (K, n) copies */
        size_t work = 2 * BLOCK * (size_t)K + (K > 1 ? 2 * (size_t)(n * K) : 0);
        z = malloc(work * sizeof(double));
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
            total = f32 ? dense_sums_f32(X.buf, m, n, K, y.buf, Wt, b, w, loss, Gt, r_sum, z,
                                         r, need_loss, cv)
                        : dense_sums_f64(X.buf, m, n, K, y.buf, Wt, b, w, loss, Gt, r_sum, z,
                                         r, need_loss, cv);
            if (K > 1)
                for (Py_ssize_t j = 0; j < n; j++)
                    for (Py_ssize_t k = 0; k < K; k++)
                        grad_[j * K + k] = Gt[k * n + j];
            Py_END_ALLOW_THREADS
        }
    }
    free(z);
    PyBuffer_Release(&X); PyBuffer_Release(&y); PyBuffer_Release(&theta);
    PyBuffer_Release(&s); PyBuffer_Release(&grad); RELEASE_FOLDS();
    if (!ok)
        return NULL;
    if (!z)
        return PyErr_NoMemory();
    return PyFloat_FromDouble(total);
}

/* Why an indptr cannot be followed, or NULL: it must start at 0 or above, never decrease,
 * and end within the nnz stored values; *row names the row. O(m), no allocation. */
#define INDPTR_PROBLEM(NAME, P)                                                            \
static const char *NAME(const P *ptr, Py_ssize_t m, Py_ssize_t nnz, Py_ssize_t *row)     \
{                                                                                         \
    *row = 0;                                                                             \
    if (ptr[0] < 0)                                                                       \
        return "indptr starts below 0";                                                   \
    for (Py_ssize_t i = 0; i < m; i++)                                                    \
        if (ptr[i + 1] < ptr[i]) {                                                        \
            *row = i;                                                                     \
            return "indptr decreases";                                                    \
        }                                                                                 \
    *row = m;                                                                             \
    return (int64_t)ptr[m] - (int64_t)ptr[0] > (int64_t)nnz                               \
               ? "indptr runs past the stored values" : NULL;                             \
}
INDPTR_PROBLEM(indptr_problem_i32, int32_t)
INDPTR_PROBLEM(indptr_problem_i64, int64_t)

/* csr_sums(data, data_is_f32, indices, indices_are_i64, indptr, indptr_is_i64, m, n, y,
 *          theta, weights, loss, K, grad, need_loss, fold, labels, cw, loss_sums) -> float
 * indptr: m + 1 entries; data and indices: as many values each (indptr[0] at the first). */
static PyObject *py_csr_sums(PyObject *self, PyObject *args)
{
    Py_buffer data, indices, indptr, y, theta, s, grad, fold, labels, cw, loss_sums;
    int f32, i64, p64, loss, need_loss;
    Py_ssize_t m, n, K;
    Folds folds;
    if (!PyArg_ParseTuple(args, "y*py*py*pnny*y*y*inw*py*y*y*w*", &data, &f32, &indices, &i64,
                          &indptr, &p64, &m, &n, &y, &theta, &s, &loss, &K, &grad,
                          &need_loss, &fold, &labels, &cw, &loss_sums))
        return NULL;
    double total = 0.0, *z = NULL;
    Py_ssize_t value_size = f32 ? sizeof(float) : sizeof(double);
    Py_ssize_t nnz = data.len / value_size, bad_row = -1;
    const char *problem = NULL;
    int ok = check_model(m, n, K, loss, &y, &theta, &s, &grad, &fold, &labels, &cw,
                         &loss_sums) &&
             holds(&data, nnz, value_size, "data") &&
             holds(&indices, nnz, i64 ? sizeof(int64_t) : sizeof(int32_t), "indices") &&
             holds(&indptr, times(m, 1) + 1, p64 ? sizeof(int64_t) : sizeof(int32_t),
                   "indptr");
    const Py_buffer *reads[] = {&data, &indices, &indptr, &y, &theta, &s, &fold, &labels, &cw,
                                &loss_sums};
    ok = ok && apart(&grad, "grad", reads, 10) && apart(&loss_sums, "loss_sums", reads, 9);
    if (ok && i64 && !p64) { /* int64 indices come with int64 indptr */
        PyErr_SetString(PyExc_ValueError, "int64 indices need int64 indptr");
        ok = 0;
    }
    if (ok) {
        const Folds *cv = folds_of(&fold, &labels, &cw, &loss_sums, &folds);
        const double *w = s.len ? (const double *)s.buf : NULL;
        z = malloc(2 * BLOCK * (size_t)K * sizeof(double));
        if (z) {
            Py_BEGIN_ALLOW_THREADS
            problem = p64 ? indptr_problem_i64(indptr.buf, m, nnz, &bad_row)
                          : indptr_problem_i32(indptr.buf, m, nnz, &bad_row);
            if (!problem) {
                double *r = z + BLOCK * K, *W = theta.buf, *G = grad.buf;
                memset(G, 0, (size_t)grad.len);
                bad_row = -1;
#define CALL(FN) FN(data.buf, indices.buf, indptr.buf, m, n, K, y.buf, W, W + n * K, w,   \
                    loss, G, G + n * K, z, r, need_loss, cv, &bad_row)
                if (f32)
                    total = i64 ? CALL(csr_f32_i64_i64) : p64 ? CALL(csr_f32_i32_i64)
                                                              : CALL(csr_f32_i32_i32);
                else
                    total = i64 ? CALL(csr_f64_i64_i64) : p64 ? CALL(csr_f64_i32_i64)
                                                              : CALL(csr_f64_i32_i32);
#undef CALL
                if (bad_row >= 0)
                    problem = "a column index outside 0 .. n - 1";
            }
            Py_END_ALLOW_THREADS
        }
    }
    free(z);
    PyBuffer_Release(&data); PyBuffer_Release(&indices); PyBuffer_Release(&indptr);
    PyBuffer_Release(&y); PyBuffer_Release(&theta); PyBuffer_Release(&s);
    PyBuffer_Release(&grad); RELEASE_FOLDS();
    if (!ok)
        return NULL;
    if (!z)
        return PyErr_NoMemory();
    if (problem)
        return PyErr_Format(PyExc_ValueError, "CSR matrix with %zd columns: %s (row %zd)", n,
                            problem, bad_row);
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
