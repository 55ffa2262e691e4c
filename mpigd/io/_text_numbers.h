/*
 * Numbers for the text parser (_text.c includes this file once): the strict grammar of a
 * number token, scanned eight digits at a time where the bytes allow, and its double
 * exactly as Python's float() makes it (Clinger's fast path, else PyOS_string_to_double).
 * Every read stays within the limit its caller gives.
 */

/* A number token [+-]?(D+(\.D*)?|\.D+)([eE][+-]?D+)? as scanned: its first 19 significant
 * digits as an integer, the power of ten of the last of them, and its exponent. */
typedef struct {
    uint64_t mantissa;
    int exact;       /* mantissa holds every significant digit */
    int negative;
    long scale;      /* the value is mantissa * 10^(scale + exponent) when exact */
    long exponent;   /* the e part, saturated at +-EXPONENT_MAX */
    long int_digits; /* digits before the point, leading zeros included */
} Number;

static int is_digit(char c)
{
    return (unsigned char)(c - '0') < 10;
}

/* Adds digit d to the significant digits of num; `fraction`: after the point. */
static void add_digit(Number *num, int d, int *significant, int fraction)
{
    if (num->mantissa == 0 && d == 0) { /* a leading zero */
        num->scale -= fraction;
        return;
    }
    if (*significant == 19) {
        num->exact = 0; /* PyOS_string_to_double rounds it */
        return;
    }
    num->mantissa = num->mantissa * 10 + (uint64_t)d;
    num->scale -= fraction;
    (*significant)++;
}

/* Digits eight at a time where the bytes allow (a little-endian load of 8 bytes, the
 * first in the lowest); byte by byte elsewhere, and on other machines. */
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
#define EIGHT_AT_A_TIME 1
#else
#define EIGHT_AT_A_TIME 0
#endif

/* 10^0 .. 10^19, each exactly a uint64_t. */
static const uint64_t POW10_INT[] = {
    UINT64_C(1), UINT64_C(10), UINT64_C(100), UINT64_C(1000), UINT64_C(10000),
    UINT64_C(100000), UINT64_C(1000000), UINT64_C(10000000), UINT64_C(100000000),
    UINT64_C(1000000000), UINT64_C(10000000000), UINT64_C(100000000000),
    UINT64_C(1000000000000), UINT64_C(10000000000000), UINT64_C(100000000000000),
    UINT64_C(1000000000000000), UINT64_C(10000000000000000), UINT64_C(100000000000000000),
    UINT64_C(1000000000000000000), UINT64_C(10000000000000000000)};

#if EIGHT_AT_A_TIME
/* The value of the eight ASCII digits in v (the first in its lowest byte; a 0 byte reads
 * as the digit 0), by three multiplications that each join neighbouring lanes. */
static uint64_t eight_digits(uint64_t v)
{
    v = ((v & UINT64_C(0x0F0F0F0F0F0F0F0F)) * 2561) >> 8;
    v = ((v & UINT64_C(0x00FF00FF00FF00FF)) * 6553601) >> 16;
    return ((v & UINT64_C(0x0000FFFF0000FFFF)) * UINT64_C(42949672960001)) >> 32;
}
#endif

/* How many digits start at p, reading no further than `limit`. */
static inline Py_ssize_t digit_run(const char *p, const char *limit)
{
    const char *s = p;
#if EIGHT_AT_A_TIME
    for (; limit - s >= 8; s += 8) {
        uint64_t v;
        memcpy(&v, s, 8);
        /* a byte's high bit is set where it is below '0', above '9' or not ASCII; a carry
         * or borrow leaves a byte only from a non-digit, and moves to later bytes */
        uint64_t other = ((v + UINT64_C(0x4646464646464646)) | (v - UINT64_C(0x3030303030303030)) |
                          v) & UINT64_C(0x8080808080808080);
        if (other)
            return (s - p) + (__builtin_ctzll(other) >> 3);
    }
#endif
    while (s < limit && is_digit(*s))
        s++;
    return s - p;
}

/* The value of the n <= 19 digits at p, reading no further than `limit`. */
static inline uint64_t digits_value(const char *p, Py_ssize_t n, const char *limit)
{
    uint64_t m = 0;
#if EIGHT_AT_A_TIME
    uint64_t v;
    for (; n >= 8; n -= 8, p += 8) {
        memcpy(&v, p, 8);
        m = m * POW10_INT[8] + eight_digits(v);
    }
    if (n > 0 && limit - p >= 8) { /* the last n digits, moved to the top of the word */
        memcpy(&v, p, 8);
        return m * POW10_INT[n] + eight_digits(v << (8 * (8 - n)));
    }
#else
    (void)limit;
#endif
    for (; n > 0; n--, p++)
        m = m * 10 + (uint64_t)(*p - '0');
    return m;
}

/* Scans the number token at p, reading no further than `limit`: the end of its grammar
 * match, or NULL where none starts at p. Up to 19 digits in all are read as one integer;
 * more go digit by digit, the first 19 significant ones kept. */
static const char *scan_number(const char *p, const char *limit, Number *num)
{
    memset(num, 0, sizeof *num);
    num->exact = 1;
    if (p < limit && (*p == '+' || *p == '-'))
        num->negative = *p++ == '-';
    const char *whole = p, *fraction = p;
    Py_ssize_t n_whole = digit_run(p, limit), n_fraction = 0;
    p += n_whole;
    if (p < limit && *p == '.') {
        fraction = ++p;
        n_fraction = digit_run(p, limit);
        p += n_fraction;
    }
    if (!n_whole && !n_fraction)
        return NULL;
    num->int_digits = n_whole;
    if (n_whole + n_fraction <= 19) {
        num->mantissa = digits_value(whole, n_whole, limit) * POW10_INT[n_fraction] +
                        digits_value(fraction, n_fraction, limit);
        num->scale = -n_fraction;
    } else {
        int significant = 0;
        for (const char *d = whole; d < whole + n_whole; d++)
            add_digit(num, *d - '0', &significant, 0);
        for (const char *d = fraction; d < fraction + n_fraction; d++)
            add_digit(num, *d - '0', &significant, 1);
    }
    if (p < limit && (*p == 'e' || *p == 'E')) {
        const char *e = p + 1;
        int negative = e < limit && *e == '-';
        if (e < limit && (*e == '+' || *e == '-'))
            e++;
        if (!(e < limit && is_digit(*e)))
            return p; /* "1e" is the token "1" followed by "e": not plain where it ends */
        for (; e < limit && is_digit(*e); e++)
            if (num->exponent < EXPONENT_MAX)
                num->exponent = num->exponent * 10 + (*e - '0');
        num->exponent = negative ? -num->exponent : num->exponent;
        p = e;
    }
    return p;
}

/* 10^0 .. 10^22, each exactly a double. */
static const double POW10[] = {1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,
                               1e8,  1e9,  1e10, 1e11, 1e12, 1e13, 1e14, 1e15,
                               1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22};

/* The double of the token [start, stop) scanned into num, correctly rounded, in *value:
 * 1 when it is finite, 0 when it overflows, -1 with a Python error set. */
static int to_double(const char *start, const char *stop, const Number *num, double *value)
{
#if FLT_EVAL_METHOD == 0 /* each operation rounded to double once: Clinger's fast path */
    long e = num->scale + num->exponent;
    if (num->exact && num->mantissa == 0) {
        *value = num->negative ? -0.0 : 0.0;
        return 1;
    }
    if (num->exact && num->mantissa <= (UINT64_C(1) << 53) && e >= -22 && e <= 22) {
        double m = (double)num->mantissa;
        m = e >= 0 ? m * POW10[e] : m / POW10[-e];
        *value = num->negative ? -m : m;
        return 1;
    }
#endif
    char token[TOKEN_MAX + 1], *end = NULL;
    size_t length = (size_t)(stop - start);
    if (length > TOKEN_MAX)
        return 0;
    memcpy(token, start, length);
    token[length] = '\0';
    double x = PyOS_string_to_double(token, &end, NULL);
    if (x == -1.0 && PyErr_Occurred())
        return -1;
    *value = x;
    return end == token + length && isfinite(x);
}

/* The number token at *p (read no further than `end`) in the strict grammar, at most
 * TOKEN_MAX bytes and finite, its value in *value (value NULL: only checked, converted
 * only where it might overflow). 1: *p is moved past it; 0: not plain; -1: a Python
 * error. */
static int number_token(const char **p, const char *end, double *value)
{
    Number num;
    const char *start = *p;
    const char *limit = end - start > TOKEN_MAX ? start + TOKEN_MAX + 1 : end;
    const char *stop = scan_number(start, limit, &num);
    if (!stop || stop - start > TOKEN_MAX)
        return 0;
    *p = stop;
    if (!value && num.int_digits + num.exponent <= DBL_MAX_10_EXP) /* < 10^308 */
        return 1;
    double x;
    int ok = to_double(start, stop, &num, &x);
    if (ok > 0 && value)
        *value = x;
    return ok;
}
