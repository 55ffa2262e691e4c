/*
 * The pointwise losses of mpigd's fused kernels, vectorised over a block of rows, and
 * the branch-free exp/log1p/log they need. Included by _fused.c (after BLOCK and the
 * loss codes); every function is inlined into the kernels that use it, so it is
 * compiled for each of their target clones.
 */
#ifndef MPIGD_LOSSES_H
#define MPIGD_LOSSES_H
/* Functions with a loop that vectorises get an AVX2+FMA clone as well as the baseline,
 * chosen at load time by the CPU (GCC's function multiversioning on x86-64), so one
 * build runs on any node of a cluster whatever the login node's CPU. */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && __GNUC__ >= 12
#if __has_attribute(target_clones)
#define CLONES __attribute__((target_clones("default", "arch=x86-64-v3")))
#define X86_64_V3 __attribute__((target("arch=x86-64-v3")))
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

/* exp(x) / 2^s for x in [-708, 709.78] and s 0 or 1 (NaN stays NaN): Cody-Waite
 * reduction by ln 2 and a degree-13 Taylor polynomial, within 2 ulp of libm's exp.
 * Branch-free, so a loop over rows vectorises, which libm's exp does not without
 * fast-math. s = 1 keeps 2^(k - s) a normal number up to k = 1024. */
static INLINE double exp_halved(double x, int64_t s)
{
    const double log2e = 1.4426950408889634, ln2_hi = 6.93147180369123816490e-01,
                 ln2_lo = 1.90821492927058770002e-10, shifter = 0x1.8p52;
    union { double d; int64_t i; } k = {x * log2e + shifter}; /* round(x / ln 2) */
    double kd = k.d - shifter;
    double r = x - kd * ln2_hi - kd * ln2_lo;  /* |r| <= ln(2) / 2 */
    double p = 1.0 / 6227020800.0;
    p = p * r + 1.0 / 479001600.0; p = p * r + 1.0 / 39916800.0;
    p = p * r + 1.0 / 3628800.0;   p = p * r + 1.0 / 362880.0;
    p = p * r + 1.0 / 40320.0;     p = p * r + 1.0 / 5040.0;
    p = p * r + 1.0 / 720.0;       p = p * r + 1.0 / 120.0;
    p = p * r + 1.0 / 24.0;        p = p * r + 1.0 / 6.0;
    p = p * r + 0.5;               p = p * r + 1.0;
    p = p * r + 1.0;
    union { int64_t i; double d; } scale = {(int64_t)((uint64_t)(k.i + 1023 - s) << 52)};
    return p * scale.d; /* p 2^(k - s) */
}

/* exp(x) for x <= 0 (NaN stays NaN); 0 below -708, where exp(x) < 4e-308. */
static INLINE double exp_nonpos(double x)
{
    return x < -708.0 ? 0.0 : exp_halved(x < -708.0 ? -708.0 : x, 0);
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

/* exp(x) for any x: 0 below -708, inf above 709.78 (NaN stays NaN). Branch-free, for
 * the log-link losses, whose predictors may have either sign. */
static INLINE double exp_real(double x)
{
    double xc = x < -708.0 ? -708.0 : x > 709.78 ? 709.78 : x;
    double result = exp_halved(xc, 1) * 2.0;
    return x < -708.0 ? 0.0 : x > 709.78 ? HUGE_VAL : result;
}

/* A pointwise loss: its code (LOSS_*) and parameter (tweedie's power, huber's epsilon;
 * unused by the others, and checked by the entry points where it is used). */
typedef struct {
    int code;
    double param;
} Loss;

/* Each row's loss v and derivative r = dl/dz for `rows` (<= BLOCK) single-output rows;
 * v is left unset when !need_loss (logistic skips its log1p). One branch-free loop per
 * loss, so each vectorises; the formulas are those of losses.py, which the tests compare
 * against. */
static INLINE void pointwise(Loss loss, Py_ssize_t rows, const double *z, const double *y,
                             double *r, double *v, int need_loss)
{
    const double a = loss.param;
    switch (loss.code) {
    case LOSS_LINEAR:
#pragma omp simd
        for (Py_ssize_t i = 0; i < rows; i++) {
            r[i] = z[i] - y[i];
            v[i] = 0.5 * r[i] * r[i];
        }
        break;
    case LOSS_LOGISTIC:
        /* log(1 + exp(z)) - y z and sigmoid(z) - y, from one e = exp(-|z|) */
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
        break;
    case LOSS_POISSON: /* exp(z) - y z */
#pragma omp simd
        for (Py_ssize_t i = 0; i < rows; i++) {
            double mu = exp_real(z[i]);
            r[i] = mu - y[i];
            v[i] = mu - y[i] * z[i];
        }
        break;
    case LOSS_GAMMA: /* z + y exp(-z) */
#pragma omp simd
        for (Py_ssize_t i = 0; i < rows; i++) {
            double ye = y[i] * exp_real(-z[i]);
            r[i] = 1.0 - ye;
            v[i] = z[i] + ye;
        }
        break;
    case LOSS_TWEEDIE: /* exp((2 - p) z) / (2 - p) - y exp((1 - p) z) / (1 - p) */
#pragma omp simd
        for (Py_ssize_t i = 0; i < rows; i++) { /* y = 0: no second term, even where exp is inf */
            double e2 = exp_real((2.0 - a) * z[i]);
            double ye1 = y[i] != 0.0 ? y[i] * exp_real((1.0 - a) * z[i]) : 0.0;
            r[i] = e2 - ye1;
            v[i] = e2 / (2.0 - a) - ye1 / (1.0 - a);
        }
        break;
    case LOSS_HUBER: /* rho(y - z): quadratic within epsilon, linear beyond */
#pragma omp simd
        for (Py_ssize_t i = 0; i < rows; i++) {
            double d = z[i] - y[i], ad = fabs(d);
            r[i] = d > a ? a : d < -a ? -a : d;
            v[i] = ad <= a ? 0.5 * d * d : a * ad - 0.5 * a * a;
        }
        break;
    default: /* LOSS_SVM: max(0, 1 - t z)^2 with t = 2y - 1 */
#pragma omp simd
        for (Py_ssize_t i = 0; i < rows; i++) {
            double t = 2.0 * y[i] - 1.0, h = 1.0 - t * z[i];
            h = h > 0.0 ? h : 0.0;
            r[i] = -2.0 * t * h;
            v[i] = h * h;
        }
        break;
    }
}

/* Losses of `rows` (<= BLOCK) single-output rows: z (predictors) in, r = s dl/dz out;
 * returns the weighted loss sum and adds sum(r) to *r_sum. y and s (NULL: unweighted)
 * point at the block's first row. Each loop is branch-free, so it vectorises. */
static INLINE double block_losses(Loss loss, Py_ssize_t rows, const double *z, const double *y,
                                  const double *s, double *r, double *r_sum, int need_loss,
                                  double *unweighted)
{
    double v[BLOCK], total = 0.0, rs = 0.0;
    pointwise(loss, rows, z, y, r, v, need_loss);
    if (unweighted) /* each row's loss before the weights (cross-validation) */
        memcpy(unweighted, v, (size_t)rows * sizeof(double));
    if (s) { /* a row of weight 0 adds nothing, also where its loss overflowed to inf */
#pragma omp simd
        for (Py_ssize_t i = 0; i < rows; i++) {
            v[i] = s[i] != 0.0 ? v[i] * s[i] : 0.0;
            r[i] = s[i] != 0.0 ? r[i] * s[i] : 0.0;
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

/* The class of label y among K: checked before the sweep (check_call), and clamped again
 * here where it becomes an index, so that a label another thread changes during the sweep
 * (the GIL is released) never indexes outside the row; a valid label is itself. */
static inline Py_ssize_t class_of(double y, Py_ssize_t K)
{
    return y >= 0.0 && y < (double)K ? (Py_ssize_t)y : 0;
}

/* Losses of a block of rows with K predictors each (z and r row-major, rows x K); z is
 * overwritten. One output: block_losses. Softmax: each row's exponentials (shifted by
 * the row's largest predictor, so none overflows) are vectorised over the outputs, and
 * the normalisers' logarithms over the rows. */
static INLINE double losses(Loss loss, Py_ssize_t rows, Py_ssize_t K, double *z,
                            const double *y, const double *s, double *r, double *r_sum,
                            int need_loss)
{
    if (K == 1)
        return block_losses(loss, rows, z, y, s, r, r_sum, need_loss, NULL);
    double sums[BLOCK], label_z[BLOCK], total = 0.0;
    for (Py_ssize_t i = 0; i < rows; i++) {
        double *zi = z + i * K, top = zi[0], sum = 0.0;
        for (Py_ssize_t k = 1; k < K; k++)
            top = zi[k] > top ? zi[k] : top;
        label_z[i] = zi[class_of(y[i], K)] - top;
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
        Py_ssize_t label = class_of(y[i], K);
        ri[label] -= weight;
        r_sum[label] -= weight;
    }
    return total;
}

/* Losses of F single-output models (any loss but softmax) at once, for cross-validation:
 * z and r are rows x F, row-major; model k weighs row i by s_i cw[k][y_i] if the row is
 * outside fold labels[k], else 0 (cw: NULL, or F x 2 class weights). Adds each model's
 * weighted training loss to sums[k], its unweighted loss on the rows of its own fold
 * (the validation loss) to sums[F + k], and its sum of r to r_sum[k]. */
static INLINE void fold_losses(Loss loss, Py_ssize_t rows, Py_ssize_t F, const double *z,
                               const double *y, const double *s, const int64_t *fold,
                               const int64_t *labels, const double *cw, double *r,
                               double *r_sum, double *sums)
{
    double zk[BLOCK], wk[BLOCK], rk[BLOCK], vk[BLOCK];
    for (Py_ssize_t k = 0; k < F; k++) {
        double held_out = 0.0;
        for (Py_ssize_t i = 0; i < rows; i++) {
            double w = fold[i] != labels[k] ? (s ? s[i] : 1.0) : 0.0;
            zk[i] = z[i * F + k];
            wk[i] = cw ? w * cw[2 * k + (y[i] != 0.0)] : w;
        }
        sums[k] += block_losses(loss, rows, zk, y, wk, rk, &r_sum[k], 1, vk);
        for (Py_ssize_t i = 0; i < rows; i++) {
            r[i * F + k] = rk[i];
            held_out += fold[i] == labels[k] ? vk[i] : 0.0;
        }
        sums[F + k] += held_out;
    }
}

#endif

