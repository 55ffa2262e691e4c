/*
 * Fused local sums for mpigd: one sweep over this rank's rows computes z = x W + b, the
 * pointwise loss and its derivative r, and accumulates X^T r, so each dense row of X is
 * read from memory once while it is in cache (CSR rows: once per span, from memory again
 * for the scatter where the span outgrows the cache; _fused_csr.inc). Dense rows
 * (float32 or float64, row-major) and CSR rows (float32 or float64 values; int32 or
 * int64 indices and indptr); the losses of _losses.h (least squares, logistic, softmax,
 * Poisson, Gamma, Tweedie, Huber and the squared hinge); optional row weights. Sums are
 * float64.
 *
 * The sweeps are written once, in _fused_dense.inc and _fused_csr.inc, and included here
 * once per element type. They take their arguments in four structs: the rows (Rows), the
 * model (Model), the cross-validation folds (Folds) and what they write (Out).
 *
 * The NumPy kernels in dense.py and sparse.py are the reference these are tested against
 * (and the fallback when this module is missing or MPIGD_KERNELS=numpy). Built without
 * fast-math: NaN and inf propagate as in NumPy, which divergence detection relies on;
 * only the reductions over features are reassociated (omp simd).
 *
 * The Python wrapper (compiled.py) chooses these kernels where they apply, and the
 * package validates every CSR matrix where it enters; this file trusts neither. The entry
 * points take each array's element type from its buffer (not from a flag), check every
 * buffer's length against the sizes they index with, softmax labels before they are used
 * as class indices, indptr (non-decreasing, within the stored values) before the sweep,
 * and each block's column indices before the block is swept, so no argument can make a
 * loop read or write outside its buffers: a bad one is a ValueError. The CSR sweep also
 * checks every row range and column index again where it reads it (READ_ONCE: the value
 * checked is the one followed), and softmax clamps each label where it becomes an index
 * (class_of), so arrays that another thread changes during a sweep are never followed
 * outside the buffers either (the sums are then refused or meaningless).
 * No Python objects are touched while the GIL is released.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define KERNEL_ABI 7 /* bumped with the calling convention: a stale build is never used */

enum {
    LOSS_LINEAR = 0,
    LOSS_LOGISTIC = 1,
    LOSS_SOFTMAX = 2,
    LOSS_POISSON = 3,
    LOSS_GAMMA = 4,
    LOSS_TWEEDIE = 5,
    LOSS_HUBER = 6,
    LOSS_SVM = 7,
};

/* Rows whose predictors are computed before their losses (their exp/log1p latencies
 * overlap), at most BLOCK_BYTES of dense rows: in cache (L2) for the gradient sweep. */
#define BLOCK 64
#define BLOCK_BYTES (128 * 1024)

/* The CSR sweep gathers the predictors of a span of rows before it scatters their
 * gradient terms: at most this many derivatives (rows x outputs, 8 MiB) a span. Gather
 * and scatter each touch one (n, K) array at the rows' columns; alternating between the
 * two every block of rows took 1.9 times as long on Zipf-popular columns of a 262,144-wide
 * matrix, as long on flat ones (benchmarks/csr_spans.py). */
#define SPAN_VALUES ((Py_ssize_t)1 << 20)

/* A power of two (1 .. BLOCK), so that BLOCK rows are always whole blocks: a sweep that
 * continues another's sums from a row that is a multiple of BLOCK (a streamed pass's next
 * block) adds the same blocks in the same order as one sweep over all the rows. */
static Py_ssize_t block_rows(Py_ssize_t row_bytes)
{
    Py_ssize_t fit = BLOCK_BYTES / (row_bytes > 0 ? row_bytes : 1), rows = BLOCK;
    while (rows > 1 && rows > fit)
        rows /= 2;
    return rows;
}
/* The dense sweep asks for the next block's rows ahead of their reads (rows of 32 bytes
 * or more): at float32 always, at float64 where a block is at most this many bytes.
 * Measured from memory against the sweep without it (benchmarks/dense_ab.py, this
 * project's 2-core machine): less time at float32 n = 28 to 1000 and float64 n = 7 and
 * 64, as long at float64 n = 28 and 128; more time at float64 n = 1000 (125 KiB blocks)
 * and at n = 7 float32 (28-byte rows) when asked ahead. */
#define PREFETCH_BYTES (64 * 1024)

/* Columns of X_b^T r accumulated in registers over a block (four AVX2 vectors). */
#define CHUNK 16

/* A dense dot product x.w is summed in LANES partial sums (lane l: the j = l mod LANES,
 * in order), added by lanes_total, then the bias, then the tail j >= n - n % LANES in
 * order: the same operations whether an output is swept alone or with three others, so
 * its bits never depend on which outputs share a sweep (a resumed cross-validation sweeps
 * fewer folds). LANES independent chains of adds, not one: the adds do not wait on each
 * other. */
#define LANES 16

static inline double lanes_total(const double acc[LANES])
{
    _Static_assert(LANES == 16, "lanes_total adds 16 partial sums");
    double t0 = (acc[0] + acc[8]) + (acc[4] + acc[12]);
    double t1 = (acc[1] + acc[9]) + (acc[5] + acc[13]);
    double t2 = (acc[2] + acc[10]) + (acc[6] + acc[14]);
    double t3 = (acc[3] + acc[11]) + (acc[7] + acc[15]);
    return (t0 + t2) + (t1 + t3);
}

#include "_losses.h"

/* ---- what a sweep reads and writes ---------------------------------------------------- */

/* This rank's rows: m rows of n features, dense (X: m x n, row-major) or CSR (X the nnz
 * stored values, indices, indptr: m + 1 entries, indptr[0] at X's first value), their
 * labels y and weights s (NULL: unweighted). Each element type is given by its size in
 * bytes: values 4 (float) or 8 (double), indices and indptr 4 (int32) or 8 (int64). */
typedef struct {
    const void *X, *indices, *indptr;
    int value_bytes, index_bytes, indptr_bytes;
    Py_ssize_t m, n, nnz;
    const double *y, *s;
} Rows;

/* The model the sums are taken at: K outputs, each of n weights W and an intercept b;
 * the loss (its LOSS_* code and parameter); need_loss 0 skips the loss sum (it is then 0), not the gradient.
 * W is laid out as the sweep reads it: (K, n) for dense rows, (n, K) as in theta for CSR. */
typedef struct {
    const double *W, *b;
    Py_ssize_t K;
    Loss loss;
    int need_loss;
} Model;

/* Cross-validation: the K outputs are K single-output models, each leaving out the rows
 * of one fold (fold_losses); a sweep without folds gets NULL. */
typedef struct {
    const int64_t *fold, *labels; /* each row's fold; the fold each model leaves out */
    const double *cw;             /* NULL, or K x 2 class weights */
    double *loss_sums;            /* 2K: training losses, then validation losses */
} Folds;

/* What a sweep writes: the gradient sums of W (laid out as W) and of b (K), its scratch
 * z (BLOCK x K) and r (span x K: the dense sweep's span is BLOCK rows, the CSR sweep's
 * up to SPAN_VALUES / K), and, for CSR, why it stopped (NULL: it did not) and at which
 * row. A sweep adds its rows to G and r_sum as they are, and returns their loss sum added
 * to `total`, one block at a time: zeros and 0 start a new sum; another sweep's sums
 * continue it. */
typedef struct {
    double *G, *r_sum, *z, *r;
    Py_ssize_t span;
    double total;
    const char *problem;
    Py_ssize_t bad_row;
} Out;

/* The losses of the block of `count` rows from `start` (predictors in out->z, their
 * derivatives into r): one model, softmax, or K fold models. */
static INLINE double block_losses_of(const Rows *rows, const Model *model, const Folds *cv,
                                     Py_ssize_t start, Py_ssize_t count, Out *out, double *r)
{
    const double *y = rows->y + start, *s = rows->s ? rows->s + start : NULL;
    if (!cv)
        return losses(model->loss, count, model->K, out->z, y, s, r, out->r_sum,
                      model->need_loss);
    fold_losses(model->loss, count, model->K, out->z, y, s, cv->fold + start, cv->labels,
                cv->cw, r, out->r_sum, cv->loss_sums);
    return 0.0;
}

/* ---- the sweeps, one template included per element type ------------------------------- */

#define SUFFIXED_(name, suffix) name##_##suffix
#define SUFFIXED(name, suffix) SUFFIXED_(name, suffix)
/* For the checks a sweep makes before it starts: inlined into the sweep, the indptr check
 * cost the CSR softmax gather and scatter loops registers (4% more instructions). */
#if defined(__GNUC__)
#define NOINLINE __attribute__((noinline))
#define UNLIKELY(x) __builtin_expect(!!(x), 0)
/* One read of *p, never repeated by the compiler: a value checked and then followed is
 * the value read (arrays another thread changes during a sweep). */
#define READ_ONCE(p) __atomic_load_n((p), __ATOMIC_RELAXED)
/* Ask for the cache line at p ahead of its reads (into L1; a hint, never a read). */
#define PREFETCH(p) __builtin_prefetch((p), 0, 3)
#else
#define NOINLINE
#define UNLIKELY(x) (x)
#define READ_ONCE(p) (*(const volatile __typeof__(*(p)) *)(p))
#define PREFETCH(p) ((void)(p))
#endif

/* The dense sweep twice per element type: with each product added to its sum by a fused
 * multiply-add (one rounding), for CPUs that have them (x86-64-v3: AVX2 and FMA), and
 * with a multiply and an add (two roundings) for the rest. The build never fuses on its
 * own (-ffp-contract=off), so each variant's bits are fixed by its source; which one runs
 * is decided once, when the module loads (fma_rows). */
#define PLAIN_MULADD(a, b, c) ((c) + (a) * (b))

#define T double
#define SUFFIX f64
#define MULADD PLAIN_MULADD
#define DENSE_TARGET CLONES
#include "_fused_dense.inc"

#define T float
#define SUFFIX f32
#define MULADD PLAIN_MULADD
#define DENSE_TARGET CLONES
#include "_fused_dense.inc"

#ifdef X86_64_V3
#define T double
#define SUFFIX f64_fma
#define MULADD fma
#define DENSE_TARGET X86_64_V3
#include "_fused_dense.inc"

#define T float
#define SUFFIX f32_fma
#define MULADD fma
#define DENSE_TARGET X86_64_V3
#include "_fused_dense.inc"
#endif

/* Whether the dense sweeps fuse their multiply-adds: set when the module loads. */
static int fma_rows = 0;

#define T double
#define I int32_t
#define P int32_t
#define SUFFIX f64_i32_i32
#include "_fused_csr.inc"

#define T double
#define I int32_t
#define P int64_t
#define SUFFIX f64_i32_i64
#include "_fused_csr.inc"

#define T double
#define I int64_t
#define P int64_t
#define SUFFIX f64_i64_i64
#include "_fused_csr.inc"

#define T float
#define I int32_t
#define P int32_t
#define SUFFIX f32_i32_i32
#include "_fused_csr.inc"

#define T float
#define I int32_t
#define P int64_t
#define SUFFIX f32_i32_i64
#include "_fused_csr.inc"

#define T float
#define I int64_t
#define P int64_t
#define SUFFIX f32_i64_i64
#include "_fused_csr.inc"

static double dense_sweep(const Rows *rows, const Model *model, const Folds *cv, Out *out)
{
#ifdef X86_64_V3
    if (fma_rows)
        return rows->value_bytes == 4 ? dense_sums_f32_fma(rows, model, cv, out)
                                      : dense_sums_f64_fma(rows, model, cv, out);
#endif
    return rows->value_bytes == 4 ? dense_sums_f32(rows, model, cv, out)
                                  : dense_sums_f64(rows, model, cv, out);
}

/* int64 indices come with int64 indptr (the entry point refuses the other mix). */
static double csr_sweep(const Rows *rows, const Model *model, const Folds *cv, Out *out)
{
    int i64 = rows->index_bytes == 8, p64 = rows->indptr_bytes == 8;
    if (rows->value_bytes == 4)
        return i64   ? csr_sums_f32_i64_i64(rows, model, cv, out)
               : p64 ? csr_sums_f32_i32_i64(rows, model, cv, out)
                     : csr_sums_f32_i32_i32(rows, model, cv, out);
    return i64   ? csr_sums_f64_i64_i64(rows, model, cv, out)
           : p64 ? csr_sums_f64_i32_i64(rows, model, cv, out)
                 : csr_sums_f64_i32_i32(rows, model, cv, out);
}

/* ---- the arguments of the Python entry points ----------------------------------------- */

/* An entry point's arguments, grouped as the caller passes them (see py_dense_sums and
 * py_csr_sums). Buffers not given are all zeros (length 0); release() releases them all.
 * Nothing here is trusted before check_call() has compared it with the rest. */
typedef struct {
    struct {
        Py_buffer X, indices, indptr, y, s; /* X: dense X, or CSR data */
        Py_ssize_t m, n;
    } rows;
    struct {
        Py_buffer theta;
        int loss, need_loss;
        double param;
        Py_ssize_t K;
    } model;
    Py_buffer grad;
    int add;      /* add to grad (and to start) instead of overwriting it */
    double start; /* with add: the loss sum of the rows before these */
    struct {
        Py_buffer fold, labels, cw, loss_sums;
        int given;
    } folds;
} Call;

/* The Python objects of a Call's buffers, as parsed (borrowed); NULL: not given. */
typedef struct {
    PyObject *X, *indices, *indptr, *y, *s, *theta, *grad, *fold, *labels, *cw, *loss_sums;
} Objects;

static void release(Call *c)
{
    Py_buffer *all[] = {&c->rows.X,     &c->rows.indices, &c->rows.indptr,   &c->rows.y,
                        &c->rows.s,     &c->model.theta,  &c->grad,          &c->folds.fold,
                        &c->folds.labels, &c->folds.cw,   &c->folds.loss_sums};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        PyBuffer_Release(all[i]); /* a no-op on one never acquired */
}

/* What a buffer argument may hold. */
enum {
    FLOATS = 1,  /* float32 or float64 */
    DOUBLES = 2, /* float64 */
    INDEXES = 4, /* int32 or int64 */
    INT64S = 8,  /* int64 */
    VECTOR = 16, /* one dimension */
    WRITTEN = 32 /* writable: the sweep writes it */
};

/* The item type of a buffer format ('d', 'f', 'i', 'l', ...) in native byte order, or 0
 * (another byte order, a struct, several items). */
static char item_type(const char *format)
{
#if PY_LITTLE_ENDIAN
    const char native = '<';
#else
    const char native = '>';
#endif
    if (!format)
        return 'B';
    if (*format == '@' || *format == '=' || *format == native)
        format++;
    return format[0] && !format[1] ? format[0] : 0;
}

/* Whether buffer b holds what `want` allows (its element type and dimensions). */
static int holds_kind(const Py_buffer *b, int want)
{
    char t = item_type(b->format);
    int real = (t == 'f' && b->itemsize == 4) || (t == 'd' && b->itemsize == 8);
    int integer = (t == 'i' || t == 'l' || t == 'q') && (b->itemsize == 4 || b->itemsize == 8);
    if ((want & VECTOR) && b->ndim != 1)
        return 0;
    if (want & FLOATS)
        return real;
    if (want & DOUBLES)
        return real && b->itemsize == 8;
    if (want & INDEXES)
        return integer;
    return integer && b->itemsize == 8; /* INT64S */
}

/* Takes obj's buffer into *view: C-contiguous, in native byte order, holding what `want`
 * allows; else a ValueError naming it (a TypeError for an object without a buffer; the
 * exporter's BufferError or ValueError, as NumPy's for a strided or read-only array,
 * becomes one that names the argument).
 * obj NULL (a group not given) leaves *view empty. */
static int take(PyObject *obj, Py_buffer *view, int want, const char *name)
{
    if (!obj)
        return 1;
    int flags = PyBUF_C_CONTIGUOUS | PyBUF_FORMAT | (want & WRITTEN ? PyBUF_WRITABLE : 0);
    if (PyObject_GetBuffer(obj, view, flags) < 0) {
        view->obj = NULL;
        if (PyErr_ExceptionMatches(PyExc_BufferError) ||
            PyErr_ExceptionMatches(PyExc_ValueError)) {
            PyErr_Clear();
            PyErr_Format(PyExc_ValueError, "%s must be a C-contiguous%s array", name,
                         want & WRITTEN ? ", writable" : "");
        }
        return 0;
    }
    if (holds_kind(view, want))
        return 1;
    const char *kind = want & FLOATS    ? "float32 or float64"
                       : want & DOUBLES ? "float64"
                       : want & INDEXES ? "int32 or int64"
                                        : "int64";
    PyErr_Format(PyExc_ValueError, "%s must hold %s items in native byte order%s, not "
                 "'%s' items of %zd bytes in %d dimensions", name, kind,
                 want & VECTOR ? " in one dimension" : "", view->format ? view->format : "B",
                 view->itemsize, view->ndim);
    PyBuffer_Release(view);
    return 0;
}

/* Takes every buffer of a call: the rows' X (dense X or CSR data), indices and indptr
 * (CSR only), y and weights; theta; grad; and the folds' buffers when given. */
static int take_all(const Objects *o, Call *c, int csr)
{
    return take(o->X, &c->rows.X, FLOATS, csr ? "data" : "X") &&
           take(o->indices, &c->rows.indices, INDEXES | VECTOR, "indices") &&
           take(o->indptr, &c->rows.indptr, INDEXES | VECTOR, "indptr") &&
           take(o->y, &c->rows.y, DOUBLES | VECTOR, "y") &&
           take(o->s, &c->rows.s, DOUBLES | VECTOR, "weights") &&
           take(o->theta, &c->model.theta, DOUBLES | VECTOR, "theta") &&
           take(o->grad, &c->grad, DOUBLES | VECTOR | WRITTEN, "grad") &&
           take(o->fold, &c->folds.fold, INT64S | VECTOR, "fold") &&
           take(o->labels, &c->folds.labels, INT64S | VECTOR, "labels") &&
           take(o->cw, &c->folds.cw, DOUBLES, "class weights") &&
           take(o->loss_sums, &c->folds.loss_sums, DOUBLES | VECTOR | WRITTEN, "loss_sums");
}

/* ---- the checks ----------------------------------------------------------------------- */

/* count * size, or -1 when either is negative or the product overflows. */
static Py_ssize_t times(Py_ssize_t count, Py_ssize_t size)
{
    if (count < 0 || size < 0 || (size && count > PY_SSIZE_T_MAX / size))
        return -1;
    return count * size;
}

/* Whether buffer b holds exactly `count` of its items; else a ValueError. */
static int holds(const Py_buffer *b, Py_ssize_t count, const char *name)
{
    Py_ssize_t bytes = times(count, b->itemsize);
    if (bytes >= 0 && b->len == bytes)
        return 1;
    PyErr_Format(PyExc_ValueError, "%s holds %zd bytes, but the sizes given need %zd items "
                 "of %zd bytes", name, b->len, count, b->itemsize);
    return 0;
}

/* Whether buffer b is empty or holds exactly `count` of its items. */
static int empty_or_holds(const Py_buffer *b, Py_ssize_t count, const char *name)
{
    return !b->len || holds(b, count, name);
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

/* Every size of a call against every buffer it indexes, before any is indexed: y
 * (float64, m), theta and grad (float64, (n + 1) K), weights (float64, zero length or m),
 * the folds' buffers (fold: int64, m; labels: int64, K; class weights: float64, zero
 * length or K x 2; loss_sums: float64, 2K), X (dense: m x n values; CSR: the values,
 * with indices of as many items and indptr of m + 1). Without folds, K > 1 is softmax and
 * its labels index the K outputs, so each must lie in [0, K); with folds, the K outputs
 * are single-output models. The written buffers must be apart from what is read.
 * indptr itself and the column indices are checked by the CSR sweep, before it follows
 * them. Returns 0 with a ValueError set on a mismatch. */
static int check_call(const Call *c, int csr)
{
    const Py_ssize_t m = c->rows.m, n = c->rows.n, K = c->model.K;
    const int loss = c->model.loss, folds = c->folds.given;
    if (m < 0 || n < 0 || K < 1 || n == PY_SSIZE_T_MAX) {
        PyErr_Format(PyExc_ValueError, "sizes m = %zd, n = %zd, K = %zd: need m, n >= 0, "
                     "K >= 1", m, n, K);
        return 0;
    }
    if (loss < LOSS_LINEAR || loss > LOSS_SVM ||
        (folds ? loss == LOSS_SOFTMAX : (loss == LOSS_SOFTMAX) != (K > 1))) {
        PyErr_Format(PyExc_ValueError, "loss code %d does not go with K = %zd outputs%s", loss,
                     K, folds ? " of fold models" : "");
        return 0;
    }
    const double a = c->model.param;
    if ((loss == LOSS_TWEEDIE && !(a > 1.0 && a < 2.0)) || (loss == LOSS_HUBER && !(a > 0.0))) {
        PyErr_Format(PyExc_ValueError, "loss code %d cannot take the parameter %g (tweedie: "
                     "1 < power < 2; huber: epsilon > 0)", loss, a);
        return 0;
    }
    Py_ssize_t params = times(n + 1, K);
    if (!holds(&c->rows.y, m, "y") || !holds(&c->model.theta, params, "theta") ||
        !holds(&c->grad, params, "grad") || !empty_or_holds(&c->rows.s, m, "weights"))
        return 0;
    if (folds && (!holds(&c->folds.fold, m, "fold") || !holds(&c->folds.labels, K, "labels") ||
                  !empty_or_holds(&c->folds.cw, times(K, 2), "class weights") ||
                  !holds(&c->folds.loss_sums, times(K, 2), "loss_sums")))
        return 0;
    if (loss == LOSS_SOFTMAX) {
        const double *label = c->rows.y.buf;
        for (Py_ssize_t i = 0; i < m; i++)
            if (!(label[i] >= 0.0 && label[i] < (double)K)) { /* NaN fails too */
                PyErr_Format(PyExc_ValueError, "softmax label of row %zd is not a class "
                             "index 0 .. %zd", i, K - 1);
                return 0;
            }
    }
    const Py_buffer *X = &c->rows.X;
    if (!csr && !holds(X, times(m, n), "X"))
        return 0;
    if (csr && (!holds(&c->rows.indices, X->len / X->itemsize, "indices") ||
                !holds(&c->rows.indptr, m + 1, "indptr"))) /* m + 1: m * 8 fits (y) */
        return 0;
    const Py_buffer *reads[] = {X, &c->rows.indices, &c->rows.indptr, &c->rows.y, &c->rows.s,
                                &c->model.theta, &c->folds.fold, &c->folds.labels,
                                &c->folds.cw, &c->folds.loss_sums};
    if (!apart(&c->grad, "grad", reads, 10) ||
        !apart(&c->folds.loss_sums, "loss_sums", reads, 9))
        return 0;
    if (csr && c->rows.indices.itemsize == 8 && c->rows.indptr.itemsize != 8) {
        PyErr_SetString(PyExc_ValueError, "int64 indices need int64 indptr");
        return 0;
    }
    return 1;
}

/* The checked arguments as the sweeps read them. */
static Rows rows_of(const Call *c)
{
    const Py_buffer *X = &c->rows.X;
    Rows rows = {
        .X = X->buf,
        .indices = c->rows.indices.buf,
        .indptr = c->rows.indptr.buf,
        .value_bytes = (int)X->itemsize,
        .index_bytes = (int)c->rows.indices.itemsize,
        .indptr_bytes = (int)c->rows.indptr.itemsize,
        .m = c->rows.m,
        .n = c->rows.n,
        .nnz = X->len / X->itemsize,
        .y = c->rows.y.buf,
        .s = c->rows.s.len ? c->rows.s.buf : NULL,
    };
    return rows;
}

static Folds folds_of(const Call *c)
{
    Folds folds = {
        .fold = c->folds.fold.buf,
        .labels = c->folds.labels.buf,
        .cw = c->folds.cw.len ? c->folds.cw.buf : NULL,
        .loss_sums = c->folds.loss_sums.buf,
    };
    return folds;
}

/* ---- the Python entry points ---------------------------------------------------------- */

/* The dense sweep of a checked call, without the GIL; its loss sum in *total. One output
 * uses theta and grad as they are; K outputs need (K, n) copies. 0: no memory. */
static int run_dense(const Call *c, double *total)
{
    const Py_ssize_t n = c->rows.n, K = c->model.K;
    size_t work = 2 * BLOCK * (size_t)K + (K > 1 ? 2 * (size_t)(n * K) : 0);
    double *z = malloc(work * sizeof(double));
    if (!z)
        return 0;
    Rows rows = rows_of(c);
    Folds folds = folds_of(c);
    const double *theta = c->model.theta.buf;
    double *grad = c->grad.buf;
    size_t grad_bytes = (size_t)c->grad.len;
    Model model = {theta, theta + n * K, K, {c->model.loss, c->model.param},
                   c->model.need_loss};
    Out out = {grad, grad + n * K, z, z + BLOCK * K, BLOCK, c->add ? c->start : 0.0, NULL, -1};
    Py_BEGIN_ALLOW_THREADS
    if (!c->add)
        memset(grad, 0, grad_bytes);
    if (K > 1) {
        double *Wt = out.r + BLOCK * K, *Gt = Wt + n * K;
        for (Py_ssize_t j = 0; j < n; j++)
            for (Py_ssize_t k = 0; k < K; k++) {
                Wt[k * n + j] = theta[j * K + k];
                Gt[k * n + j] = grad[j * K + k];
            }
        model.W = Wt;
        out.G = Gt;
    }
    *total = dense_sweep(&rows, &model, c->folds.given ? &folds : NULL, &out);
    if (K > 1)
        for (Py_ssize_t j = 0; j < n; j++)
            for (Py_ssize_t k = 0; k < K; k++)
                grad[j * K + k] = out.G[k * n + j];
    Py_END_ALLOW_THREADS
    free(z);
    return 1;
}

/* The rows of a CSR span for m rows of K outputs: whole blocks, at most SPAN_VALUES
 * derivatives (at least one block), no more blocks than the m rows fill. */
static Py_ssize_t csr_span(Py_ssize_t m, Py_ssize_t K)
{
    Py_ssize_t most = SPAN_VALUES / (K > 0 ? K : 1) / BLOCK * BLOCK;
    Py_ssize_t need = (m + BLOCK - 1) / BLOCK * BLOCK;
    most = most > BLOCK ? most : BLOCK;
    return need < most ? (need > BLOCK ? need : BLOCK) : most;
}

/* The CSR sweep of a checked call, without the GIL; its loss sum in *total, and in
 * out->problem why it could not follow the rows. 0: no memory. */
static int run_csr(const Call *c, double *total, Out *out)
{
    const Py_ssize_t n = c->rows.n, K = c->model.K;
    const Py_ssize_t span = csr_span(c->rows.m, K);
    double *z = malloc((size_t)(BLOCK + span) * (size_t)K * sizeof(double));
    if (!z)
        return 0;
    Rows rows = rows_of(c);
    Folds folds = folds_of(c);
    const double *theta = c->model.theta.buf;
    double *grad = c->grad.buf;
    size_t grad_bytes = (size_t)c->grad.len;
    Model model = {theta, theta + n * K, K, {c->model.loss, c->model.param},
                   c->model.need_loss};
    *out = (Out){grad, grad + n * K, z, z + BLOCK * K, span, c->add ? c->start : 0.0, NULL, -1};
    Py_BEGIN_ALLOW_THREADS
    if (!c->add)
        memset(grad, 0, grad_bytes);
    *total = csr_sweep(&rows, &model, c->folds.given ? &folds : NULL, out);
    Py_END_ALLOW_THREADS
    free(z);
    return 1;
}

/* dense_sums(rows, model, (grad, add, start)[, folds]) -> float: the loss sum.
 *   rows = (X, m, n, y, weights): X float32 or float64, m x n, row-major; y float64 (m);
 *          weights float64, m, or empty for none
 *   model = (theta, loss, param, K, need_loss): theta float64 ((n + 1) K, as mpigd lays
 *          it out), loss the code (LOSS_*) and param its parameter (tweedie's power,
 *          huber's epsilon; else ignored), K its outputs
 *   grad: float64, (n + 1) K: overwritten, or with add true added to, and the loss sum
 *          returned is then added to start (the sums of earlier rows, continued as one
 *          sweep over all of them would, where these rows begin at a multiple of BLOCK)
 *   folds = (fold, labels, class_weights, loss_sums): the K outputs are K fold models
 *          (Folds); loss_sums (float64, 2K) is added to. */
static PyObject *py_dense_sums(PyObject *self, PyObject *args)
{
    Call c;
    Objects o = {0};
    double total = 0.0;
    (void)self;
    memset(&c, 0, sizeof c);
    if (!PyArg_ParseTuple(args, "(OnnOO)(Oidnp)(Opd)|(OOOO):dense_sums", &o.X, &c.rows.m,
                          &c.rows.n, &o.y, &o.s, &o.theta, &c.model.loss, &c.model.param,
                          &c.model.K, &c.model.need_loss, &o.grad, &c.add, &c.start, &o.fold,
                          &o.labels, &o.cw, &o.loss_sums))
        return NULL;
    c.folds.given = o.fold != NULL;
    int ok = take_all(&o, &c, 0) && check_call(&c, 0);
    int ran = ok && run_dense(&c, &total);
    release(&c);
    if (!ok)
        return NULL;
    if (!ran)
        return PyErr_NoMemory();
    return PyFloat_FromDouble(total);
}

/* csr_sums(rows, model, (grad, add, start)[, folds]) -> float, as dense_sums with
 *   rows = (data, indices, indptr, m, n, y, weights): data float32 or float64 (nnz),
 *          indices int32 or int64 (nnz), indptr int32 or int64 (m + 1; int64 with int64
 *          indices), indptr[0] at data's first value. */
static PyObject *py_csr_sums(PyObject *self, PyObject *args)
{
    Call c;
    Objects o = {0};
    Out out = {0};
    double total = 0.0;
    (void)self;
    memset(&c, 0, sizeof c);
    if (!PyArg_ParseTuple(args, "(OOOnnOO)(Oidnp)(Opd)|(OOOO):csr_sums", &o.X, &o.indices,
                          &o.indptr, &c.rows.m, &c.rows.n, &o.y, &o.s, &o.theta,
                          &c.model.loss, &c.model.param, &c.model.K, &c.model.need_loss,
                          &o.grad, &c.add, &c.start, &o.fold, &o.labels, &o.cw,
                          &o.loss_sums))
        return NULL;
    c.folds.given = o.fold != NULL;
    int ok = take_all(&o, &c, 1) && check_call(&c, 1);
    int ran = ok && run_csr(&c, &total, &out);
    Py_ssize_t n = c.rows.n;
    release(&c);
    if (!ok)
        return NULL;
    if (!ran)
        return PyErr_NoMemory();
    if (out.problem)
        return PyErr_Format(PyExc_ValueError, "CSR matrix with %zd columns: %s (row %zd)", n,
                            out.problem, out.bad_row);
    return PyFloat_FromDouble(total);
}

static PyMethodDef methods[] = {
    {"dense_sums", py_dense_sums, METH_VARARGS,
     "dense_sums(rows, model, (grad, add, start)[, folds]) -> float\n\nFused loss and "
     "gradient sums, dense rows: rows = (X, m, n, y, weights), model = (theta, loss, param, K, "
     "need_loss), folds = (fold, labels, class_weights, loss_sums)."},
    {"csr_sums", py_csr_sums, METH_VARARGS,
     "csr_sums(rows, model, (grad, add, start)[, folds]) -> float\n\nFused loss and gradient "
     "sums, CSR rows: rows = (data, indices, indptr, m, n, y, weights), the rest as "
     "dense_sums."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_fused", "Fused local sums of mpigd's linear models.", -1, methods,
    NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__fused(void)
{
    PyObject *mod = PyModule_Create(&module);
    _Static_assert((BLOCK & (BLOCK - 1)) == 0, "block_rows halves BLOCK to a divisor of it");
#ifdef X86_64_V3
    __builtin_cpu_init();
    const char *no_fma = getenv("MPIGD_KERNELS_NO_FMA"); /* set, and neither "" nor "0" */
    fma_rows = __builtin_cpu_supports("x86-64-v3") &&
               !(no_fma && no_fma[0] && strcmp(no_fma, "0") != 0);
#endif
    if (mod && (PyModule_AddIntConstant(mod, "ABI", KERNEL_ABI) < 0 ||
                PyModule_AddIntConstant(mod, "BLOCK", BLOCK) < 0 ||
                PyModule_AddIntConstant(mod, "SPAN_VALUES", SPAN_VALUES) < 0 ||
                PyModule_AddIntConstant(mod, "FMA", fma_rows) < 0)) {
        Py_DECREF(mod);
        return NULL;
    }
    return mod;
}
