/*
 * The fast path of mpigd's text readers (mpigd.io.parse): whole lines of LIBSVM, numeric
 * CSV, or CSV with categorical columns hashed (scikit-learn's FeatureHasher), parsed
 * straight into arrays the caller allocated.
 *
 * Only "plain" lines are parsed here, those whose meaning is beyond doubt (the grammar is
 * in libsvm_line, csv_line and hashed_line); the entry points stop before the first line that is not
 * plain and say where, and the Python wrapper hands that line to the reference parser
 * (mpigd.io.text), which reads what is unusual (qid:, unsorted indices, quoted fields)
 * and words every error. No error message about the text is made here.
 *
 * Numbers are converted exactly as Python's float() converts them (correctly rounded):
 * Clinger's fast path where one IEEE multiplication or division of exact operands gives
 * the answer, else PyOS_string_to_double, the very routine float() calls (so the GIL is
 * held throughout).
 *
 * The entry points trust none of their arguments: each buffer's item type, layout,
 * writability and length is checked before it is used, every write is checked against
 * its buffer's length, and the text is read only within its own length. A bad argument
 * is a TypeError or a ValueError.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <float.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#define TEXT_ABI 3   /* bumped with the calling convention: a stale build is never used */
#define TOKEN_MAX 63 /* longest number token parsed here (longer: not plain) */
#define INDEX_DIGITS 18 /* longest LIBSVM index parsed here (< 2^63) */
#define EXPONENT_MAX 100000 /* where an exponent's value saturates */

/* Why a parse returned. */
enum { AT_END = 0, NOT_PLAIN = 1, FULL = 2 };

/* What one line was. */
enum { LINE_ERROR = -1, LINE_ROW, LINE_BLANK, LINE_NOT_PLAIN, LINE_FULL };

/* ---- numbers --------------------------------------------------------------------------- */

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

/* ---- lines ----------------------------------------------------------------------------- */

static const char *skip_blanks(const char *p, const char *end)
{
    while (p < end && (*p == ' ' || *p == '\t'))
        p++;
    return p;
}

/* Where the next line starts when p is at the end of this one ("\n", "\r\n" or the end of
 * the text; with `comment`, also a '#' and anything up to the "\n"); NULL otherwise. */
static const char *line_end_at(const char *p, const char *end, int comment)
{
    if (p == end)
        return end;
    if (*p == '\n')
        return p + 1;
    if (*p == '\r' && p + 1 < end && p[1] == '\n')
        return p + 2;
    if (comment && *p == '#') {
        const char *newline = memchr(p, '\n', (size_t)(end - p));
        return newline ? newline + 1 : end;
    }
    return NULL;
}

/* CSR rows as written: labels, numbers (each row's line number) and indptr (each row's
 * end, pair_base + the pairs written so far) hold row_cap items; indices and values (NULL:
 * values not converted) pair_cap. */
typedef struct {
    double *labels, *values;
    int64_t *indptr, *numbers, *indices;
    Py_ssize_t row_cap, pair_cap, rows, pairs;
    int64_t pair_base;
} Sparse;

/* One LIBSVM line from p: a row written to out, a blank or comment-only line, a line that
 * is not plain, or one that does not fit; *next is where the next line starts (for a row
 * or a blank line). A plain line is: blanks, a label, then [ \t]+INDEX:VALUE pairs with
 * INDEX 1-18 digits, strictly increasing, then blanks, an optional '#' comment, and the
 * line's end. The pairs of a line are counted only once the whole line is read. */
static int libsvm_line(const char *p, const char *end, Sparse *out, int64_t number,
                       const char **next)
{
    double label;
    p = skip_blanks(p, end);
    if ((*next = line_end_at(p, end, 1)))
        return LINE_BLANK;
    if (out->rows >= out->row_cap)
        return LINE_FULL;
    int ok = number_token(&p, end, &label);
    if (ok <= 0)
        return ok < 0 ? LINE_ERROR : LINE_NOT_PLAIN;
    Py_ssize_t pairs = out->pairs;
    int64_t last = -1;
    for (;;) {
        const char *digits = skip_blanks(p, end);
        if ((*next = line_end_at(digits, end, 1)))
            break;
        if (digits == p) /* the token before ends in something else than a blank */
            return LINE_NOT_PLAIN;
        Py_ssize_t n = digit_run(digits, end);
        if (n == 0 || n > INDEX_DIGITS)
            return LINE_NOT_PLAIN;
        int64_t index = (int64_t)digits_value(digits, n, end);
        p = digits + n;
        if (p == end || *p != ':' || index <= last)
            return LINE_NOT_PLAIN;
        p++;
        if (pairs >= out->pair_cap)
            return LINE_FULL;
        double value = 0.0;
        ok = number_token(&p, end, out->values ? &value : NULL);
        if (ok <= 0)
            return ok < 0 ? LINE_ERROR : LINE_NOT_PLAIN;
        out->indices[pairs] = index;
        if (out->values)
            out->values[pairs] = value;
        last = index;
        pairs++;
    }
    out->labels[out->rows] = label;
    out->numbers[out->rows] = number;
    out->indptr[out->rows] = out->pair_base + (int64_t)pairs;
    out->rows++;
    out->pairs = pairs;
    return LINE_ROW;
}

/* Dense rows as written: values holds row_cap rows of width, numbers row_cap items. */
typedef struct {
    double *values;
    int64_t *numbers;
    Py_ssize_t row_cap, width, rows;
    char delimiter;
} Dense;

/* One numeric CSV line from p, as libsvm_line. A plain line is: exactly `width` number
 * tokens separated by the delimiter, each with blanks around it unless the delimiter is
 * itself a blank, then the line's end. A line of blanks only is blank. */
static int csv_line(const char *p, const char *end, Dense *out, int64_t number,
                    const char **next)
{
    if ((*next = line_end_at(skip_blanks(p, end), end, 0)))
        return LINE_BLANK;
    if (out->rows >= out->row_cap)
        return LINE_FULL;
    int loose = out->delimiter != ' ' && out->delimiter != '\t';
    double *row = out->values + out->rows * out->width;
    for (Py_ssize_t k = 0; k < out->width; k++) {
        if (loose)
            p = skip_blanks(p, end);
        int ok = number_token(&p, end, &row[k]);
        if (ok <= 0)
            return ok < 0 ? LINE_ERROR : LINE_NOT_PLAIN;
        if (loose)
            p = skip_blanks(p, end);
        if (k + 1 < out->width && !(p < end && *p++ == out->delimiter))
            return LINE_NOT_PLAIN;
    }
    if (!(*next = line_end_at(p, end, 0)))
        return LINE_NOT_PLAIN;
    out->numbers[out->rows] = number;
    out->rows++;
    return LINE_ROW;
}

/* ---- categorical columns by the hashing trick ------------------------------------------ */

static uint32_t rotl32(uint32_t x, int r)
{
    return (x << r) | (x >> (32 - r));
}

static uint32_t murmur3_block(uint32_t k)
{
    k *= 0xcc9e2d51u;
    return rotl32(k, 15) * 0x1b873593u;
}

/* MurmurHash3 x86_32 (Austin Appleby's public-domain algorithm) of data[0, len) with
 * seed 0, its 4-byte blocks read little-endian: scikit-learn's murmurhash3_32 on x86. */
static uint32_t murmur3_32(const unsigned char *data, size_t len)
{
    uint32_t h = 0, k = 0;
    size_t i = 0;
    for (; i + 4 <= len; i += 4) {
        k = (uint32_t)data[i] | (uint32_t)data[i + 1] << 8 | (uint32_t)data[i + 2] << 16 |
            (uint32_t)data[i + 3] << 24;
        h = rotl32(h ^ murmur3_block(k), 13) * 5 + 0xe6546b64u;
    }
    k = 0;
    for (size_t j = len & 3; j-- > 0;)
        k = k << 8 | data[i + j];
    if (len & 3)
        h ^= murmur3_block(k);
    h ^= (uint32_t)len;
    h = (h ^ (h >> 16)) * 0x85ebca6bu;
    h = (h ^ (h >> 13)) * 0xc2b2ae35u;
    return h ^ (h >> 16);
}

/* Whether [p, end) is UTF-8 as Python's strict decoder takes it (no overlong forms, no
 * surrogates, nothing past U+10FFFF). */
static int is_utf8(const unsigned char *p, const unsigned char *end)
{
    while (p < end) {
        unsigned c = *p++;
        if (c < 0x80)
            continue;
        if (c < 0xc2 || c > 0xf4)
            return 0;
        int more = c >= 0xf0 ? 3 : c >= 0xe0 ? 2 : 1;
        unsigned lo = c == 0xe0 ? 0xa0 : c == 0xf0 ? 0x90 : 0x80;
        unsigned hi = c == 0xed ? 0x9f : c == 0xf4 ? 0x8f : 0xbf;
        if (end - p < more || p[0] < lo || p[0] > hi)
            return 0;
        for (int i = 1; i < more; i++)
            if ((p[i] & 0xc0) != 0x80)
                return 0;
        p += more;
    }
    return 1;
}

/* The kinds of field of a hashed CSV line. */
enum { FIELD_LABEL = 'y', FIELD_NUMBER = 'x', FIELD_CATEGORY = 'c' };

/* CSV rows with categorical columns hashed, as written: rows (values always converted);
 * kinds[width] the kind of each field; prefix[c], prefix_len[c] the bytes "NAME=" of a
 * categorical column c's tokens (NULL, 0 for the others); n_numbers the numeric columns,
 * output columns 0 .. n_numbers - 1, before the hashed ones; mask 2^hash_bits - 1.
 * Scratch: the hashed entries of the line being read (room for one a categorical
 * column; n_hashed of them, sorted by column) and the token being hashed (token_cap
 * bytes), both PyMem-allocated. */
typedef struct {
    Sparse rows;
    const char *kinds;
    const char **prefix;
    Py_ssize_t *prefix_len;
    Py_ssize_t width, n_numbers, n_hashed, token_cap;
    int64_t *hash_index;
    double *hash_value;
    unsigned char *token;
    uint32_t mask;
    char delimiter;
} Hashed;

/* The end of the field at p: the delimiter, '\r' or '\n' after it, or `end`; NULL where
 * a '"' comes first (quoted fields are not plain). */
static const char *field_end(const char *p, const char *end, char delimiter)
{
    for (; p < end; p++) {
        if (*p == delimiter || *p == '\n' || *p == '\r')
            return p;
        if (*p == '"')
            return NULL;
    }
    return end;
}

/* Where [start, stop) ends without its trailing blanks. */
static const char *trim_blanks(const char *start, const char *stop)
{
    while (stop > start && (stop[-1] == ' ' || stop[-1] == '\t'))
        stop--;
    return stop;
}

/* The number token that fills the field [start, stop) (blanks trimmed), in *value: 1;
 * 0: not plain; -1: a Python error. */
static int number_field(const char *start, const char *stop, double *value)
{
    int ok = number_token(&start, stop, value);
    return ok <= 0 ? ok : start == stop;
}

/* The hash of the token prefix[column] + [start, stop), made in out->token (grown as
 * needed) in *h: 1; 0 with a Python error when memory runs out. */
static int token_hash(Hashed *out, Py_ssize_t column, const char *start, const char *stop,
                      uint32_t *h)
{
    Py_ssize_t head = out->prefix_len[column], length = head + (stop - start);
    if (length > out->token_cap) {
        Py_ssize_t cap = length > 2 * out->token_cap ? length : 2 * out->token_cap;
        unsigned char *grown = PyMem_Realloc(out->token, (size_t)cap);
        if (!grown) {
            PyErr_NoMemory();
            return 0;
        }
        out->token = grown;
        out->token_cap = cap;
    }
    memcpy(out->token, out->prefix[column], (size_t)head);
    memcpy(out->token + head, start, (size_t)(stop - start));
    *h = murmur3_32(out->token, (size_t)length);
    return 1;
}

/* Adds the token of hash h to the line's hashed entries, as FeatureHasher does: column
 * n_numbers + |h| mod 2^bits (|INT32_MIN| is 2^31), value -1 for h < 0, else +1; the
 * values of one column summed (a sum of 0 stays an entry). */
static void add_hashed(Hashed *out, uint32_t h)
{
    uint32_t magnitude = h >> 31 ? 0u - h : h;
    int64_t index = out->n_numbers + (int64_t)(magnitude & out->mask);
    double value = h >> 31 ? -1.0 : 1.0;
    Py_ssize_t i = out->n_hashed;
    while (i > 0 && out->hash_index[i - 1] > index)
        i--;
    if (i > 0 && out->hash_index[i - 1] == index) {
        out->hash_value[i - 1] += value;
        return;
    }
    size_t moved = (size_t)(out->n_hashed - i);
    memmove(out->hash_index + i + 1, out->hash_index + i, moved * sizeof *out->hash_index);
    memmove(out->hash_value + i + 1, out->hash_value + i, moved * sizeof *out->hash_value);
    out->hash_index[i] = index;
    out->hash_value[i] = value;
    out->n_hashed++;
}

/* Reads field `column`, [start, stop), into the row: the label in *label, a nonzero
 * number as the entry (*numbers, value) at rows.pairs + *pairs (then counted), a
 * category into the hashed entries. 1: read; 0: not plain; -1: a Python error. */
static int hashed_field(Hashed *out, Py_ssize_t column, const char *start, const char *stop,
                        double *label, Py_ssize_t *numbers, Py_ssize_t *pairs)
{
    start = skip_blanks(start, stop);
    stop = trim_blanks(start, stop);
    char kind = out->kinds[column];
    if (kind == FIELD_LABEL)
        return number_field(start, stop, label);
    if (kind == FIELD_CATEGORY) {
        uint32_t h;
        if (start == stop)
            return 1;
        if (!is_utf8((const unsigned char *)start, (const unsigned char *)stop))
            return 0;
        if (!token_hash(out, column, start, stop, &h))
            return -1;
        add_hashed(out, h);
        return 1;
    }
    double value = 0.0;
    Py_ssize_t at = out->rows.pairs + *pairs;
    int ok = start == stop ? 1 : number_field(start, stop, &value);
    if (ok > 0 && value != 0.0) {
        out->rows.indices[at] = *numbers;
        out->rows.values[at] = value;
        (*pairs)++;
    }
    (*numbers)++;
    return ok;
}

/* One CSV line with categorical columns hashed, from p, as csv_line. A plain line is:
 * exactly `width` fields separated by the delimiter, without '"' or '\r' (but in a
 * final "\r\n"), the label and each nonblank numeric field a number token with blanks
 * around it, each categorical field UTF-8; then the line's end. A line of blanks only is
 * blank. A row takes at most `width` pairs: room for them is asked before it is read. */
static int hashed_line(const char *p, const char *end, Hashed *out, int64_t number,
                       const char **next)
{
    Sparse *rows = &out->rows;
    if ((*next = line_end_at(skip_blanks(p, end), end, 0)))
        return LINE_BLANK;
    if (rows->rows >= rows->row_cap || rows->pair_cap - rows->pairs < out->width)
        return LINE_FULL;
    double label = 0.0;
    Py_ssize_t numbers = 0, pairs = 0;
    out->n_hashed = 0;
    for (Py_ssize_t column = 0;; column++) {
        const char *stop = field_end(p, end, out->delimiter);
        if (!stop)
            return LINE_NOT_PLAIN;
        int ok = hashed_field(out, column, p, stop, &label, &numbers, &pairs);
        if (ok <= 0)
            return ok < 0 ? LINE_ERROR : LINE_NOT_PLAIN;
        if (column + 1 == out->width) {
            if (!(*next = line_end_at(stop, end, 0)))
                return LINE_NOT_PLAIN;
            break;
        }
        if (!(stop < end && *stop == out->delimiter))
            return LINE_NOT_PLAIN;
        p = stop + 1;
    }
    Py_ssize_t at = rows->pairs + pairs;
    memcpy(rows->indices + at, out->hash_index, (size_t)out->n_hashed * sizeof(int64_t));
    memcpy(rows->values + at, out->hash_value, (size_t)out->n_hashed * sizeof(double));
    rows->pairs = at + out->n_hashed;
    rows->labels[rows->rows] = label;
    rows->numbers[rows->rows] = number;
    rows->indptr[rows->rows] = rows->pair_base + (int64_t)rows->pairs;
    rows->rows++;
    return LINE_ROW;
}

/* How far a parse got: bytes and lines consumed, and why it stopped (AT_END, NOT_PLAIN
 * or FULL), or -1 with a Python error set. */
typedef struct {
    Py_ssize_t consumed, lines;
    int status;
} Progress;

/* libsvm_line or csv_line, through an adapter that takes their output as void *. */
typedef int (*LineParser)(const char *, const char *, void *, int64_t, const char **);

static int libsvm_adapter(const char *p, const char *end, void *out, int64_t n, const char **next)
{
    return libsvm_line(p, end, out, n, next);
}

static int csv_adapter(const char *p, const char *end, void *out, int64_t n, const char **next)
{
    return csv_line(p, end, out, n, next);
}

static int hashed_adapter(const char *p, const char *end, void *out, int64_t n, const char **next)
{
    return hashed_line(p, end, out, n, next);
}

/* Parses the lines of text[0, len), numbered from `first`, with `line` into `out` until
 * the end, a line that is not plain, or one that does not fit. */
static Progress parse_lines(const char *text, Py_ssize_t len, int64_t first, LineParser line,
                            void *out)
{
    const char *p = text, *end = text + len, *next = NULL;
    Progress done = {0, 0, AT_END};
    while (p < end) {
        int kind = line(p, end, out, first + done.lines, &next);
        if (kind == LINE_ERROR || kind == LINE_NOT_PLAIN || kind == LINE_FULL) {
            done.status = kind == LINE_ERROR ? -1 : kind == LINE_FULL ? FULL : NOT_PLAIN;
            break;
        }
        p = next;
        done.lines++;
    }
    done.consumed = p - text;
    return done;
}

/* ---- the arguments --------------------------------------------------------------------- */

/* The item type of a buffer format ('d', 'l', 'B', ...) in native byte order, or 0
 * (another byte order, a struct, several items). As in mpigd/kernels/_fused.c. */
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

/* Takes the text's buffer: C-contiguous items of one byte; else a TypeError (an object
 * without a buffer, or of other items) or a ValueError (not contiguous). */
static int take_text(PyObject *obj, Py_buffer *view)
{
    if (PyObject_GetBuffer(obj, view, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT) < 0) {
        view->obj = NULL;
        if (PyErr_ExceptionMatches(PyExc_BufferError)) {
            PyErr_Clear();
            PyErr_SetString(PyExc_ValueError, "text must be a C-contiguous buffer");
        }
        return 0;
    }
    char t = item_type(view->format);
    if (view->itemsize == 1 && (t == 'B' || t == 'b' || t == 'c'))
        return 1;
    PyErr_Format(PyExc_TypeError, "text must be a bytes-like object of bytes, not '%s' "
                 "items of %zd bytes", view->format ? view->format : "B", view->itemsize);
    PyBuffer_Release(view);
    view->obj = NULL;
    return 0;
}

/* Takes an output buffer: writable, C-contiguous, one dimension, of float64 ('d') or
 * int64 items in native byte order; else a ValueError naming it. None leaves it empty
 * when `optional`. */
static int take_out(PyObject *obj, Py_buffer *view, char kind, const char *name, int optional)
{
    view->obj = NULL;
    if (optional && obj == Py_None)
        return 1;
    int flags = PyBUF_C_CONTIGUOUS | PyBUF_FORMAT | PyBUF_WRITABLE;
    if (PyObject_GetBuffer(obj, view, flags) < 0) {
        view->obj = NULL;
        if (PyErr_ExceptionMatches(PyExc_BufferError) ||
            PyErr_ExceptionMatches(PyExc_ValueError)) {
            PyErr_Clear();
            PyErr_Format(PyExc_ValueError, "%s must be a writable, C-contiguous array", name);
        }
        return 0;
    }
    char t = item_type(view->format);
    int held = kind == 'd' ? t == 'd' : (t == 'l' || t == 'q');
    if (held && view->itemsize == 8 && view->ndim == 1)
        return 1;
    PyErr_Format(PyExc_ValueError, "%s must hold %s items in one dimension, native byte "
                 "order, not '%s' items of %zd bytes in %d dimensions", name,
                 kind == 'd' ? "float64" : "int64", view->format ? view->format : "B",
                 view->itemsize, view->ndim);
    PyBuffer_Release(view);
    view->obj = NULL;
    return 0;
}

static void release_all(Py_buffer *views, int count)
{
    for (int i = 0; i < count; i++)
        if (views[i].obj)
            PyBuffer_Release(&views[i]);
}

/* The items of a taken output buffer (0 for one not given). */
static Py_ssize_t items(const Py_buffer *view)
{
    return view->obj ? view->len / 8 : 0;
}

/* Whether the buffers other than the text (views[1..count)) hold the same number of
 * items, named in `names`; else a ValueError. */
static int same_items(const Py_buffer *views, const char *const *names, int from, int count)
{
    for (int i = from + 1; i < count; i++)
        if (items(&views[i]) != items(&views[from])) {
            PyErr_Format(PyExc_ValueError, "%s holds %zd items, %s %zd: they must be equal",
                         names[i], items(&views[i]), names[from], items(&views[from]));
            return 0;
        }
    return 1;
}

/* Whether the text is apart from every output (the parse must not write what it reads);
 * else a ValueError. */
static int apart(const Py_buffer *views, int count)
{
    uintptr_t t0 = (uintptr_t)views[0].buf, t1 = t0 + (uintptr_t)views[0].len;
    for (int i = 1; i < count; i++) {
        uintptr_t b0 = (uintptr_t)views[i].buf, b1 = b0 + (uintptr_t)views[i].len;
        if (views[i].obj && views[i].len && views[0].len && t0 < b1 && b0 < t1) {
            PyErr_SetString(PyExc_ValueError, "an output shares memory with the text");
            return 0;
        }
    }
    return 1;
}

/* Whether first + len(text) and base + capacity stay within int64, base >= 0; else a
 * ValueError. */
static int numbers_fit(int64_t first, Py_ssize_t len, int64_t base, Py_ssize_t capacity)
{
    if (first <= INT64_MAX - len - 1 && base >= 0 && base <= INT64_MAX - capacity)
        return 1;
    PyErr_SetString(PyExc_ValueError, "pair_base must be >= 0, and the line numbers and "
                    "pair counts must stay within int64");
    return 0;
}

static PyObject *progress_tuple(Progress done, Py_ssize_t rows, Py_ssize_t pairs, int csr)
{
    if (done.status < 0)
        return NULL;
    if (csr)
        return Py_BuildValue("(nnnni)", done.consumed, rows, pairs, done.lines, done.status);
    return Py_BuildValue("(nnni)", done.consumed, rows, done.lines, done.status);
}

/* ---- the Python entry points ----------------------------------------------------------- */

/* libsvm_plain(text, out, first_line, pair_base) -> (consumed, rows, pairs, lines, status)
 *   text: bytes-like; out = (labels, indptr, indices, values, numbers): labels float64,
 *   indptr and numbers int64, all three of one length (the rows that fit); indices int64
 *   and values float64 (or None: values checked, not converted) of one length (the pairs
 *   that fit); all writable. Row k written is labels[k], numbers[k] (first_line + its
 *   line's offset) and indptr[k] = pair_base + the pairs written up to its end. */
/* Takes the text and out = (labels, indptr, indices, values, numbers) of libsvm_plain
 * into views[0..6), in the order of SPARSE_NAMES; values may be None where `optional`.
 * Else a TypeError or ValueError, every view released. */
static const char *const SPARSE_NAMES[] = {"text", "labels", "indptr", "numbers", "indices",
                                           "values"};

static int take_sparse(PyObject *text, PyObject *out, int optional, long long first,
                       long long base, Py_buffer *views)
{
    PyObject *obj[6] = {text};
    const char *const *names = SPARSE_NAMES;
    memset(views, 0, 6 * sizeof *views);
    if (!PyArg_ParseTuple(out, "OOOOO:out", &obj[1], &obj[2], &obj[4], &obj[5], &obj[3]))
        return 0;
    int ok = take_text(obj[0], &views[0]) && take_out(obj[1], &views[1], 'd', names[1], 0) &&
             take_out(obj[2], &views[2], 'l', names[2], 0) &&
             take_out(obj[3], &views[3], 'l', names[3], 0) &&
             take_out(obj[4], &views[4], 'l', names[4], 0) &&
             take_out(obj[5], &views[5], 'd', names[5], optional) &&
             same_items(views, names, 1, 4) &&
             (!views[5].obj || same_items(views, names, 4, 6)) && apart(views, 6) &&
             numbers_fit(first, views[0].len, base, items(&views[4]));
    if (!ok)
        release_all(views, 6);
    return ok;
}

/* The CSR rows in the buffers that take_sparse took. */
static Sparse sparse_rows(Py_buffer *views, long long base)
{
    Sparse out = {
        .labels = views[1].buf, .values = views[5].obj ? views[5].buf : NULL,
        .indptr = views[2].buf, .numbers = views[3].buf, .indices = views[4].buf,
        .row_cap = items(&views[1]), .pair_cap = items(&views[4]), .pair_base = base,
    };
    return out;
}

/* libsvm_plain(text, out, first_line, pair_base) -> (consumed, rows, pairs, lines, status)
 *   text: bytes-like; out = (labels, indptr, indices, values, numbers): labels float64,
 *   indptr and numbers int64, all three of one length (the rows that fit); indices int64
 *   and values float64 (or None: values checked, not converted) of one length (the pairs
 *   that fit); all writable. Row k written is labels[k], numbers[k] (first_line + its
 *   line's offset) and indptr[k] = pair_base + the pairs written up to its end. */
static PyObject *py_libsvm_plain(PyObject *self, PyObject *args)
{
    PyObject *text, *out_obj;
    Py_buffer views[6];
    long long first, base;
    (void)self;
    if (!PyArg_ParseTuple(args, "OO!LL:libsvm_plain", &text, &PyTuple_Type, &out_obj, &first,
                          &base) ||
        !take_sparse(text, out_obj, 1, first, base, views))
        return NULL;
    Sparse out = sparse_rows(views, base);
    Progress done = parse_lines(views[0].buf, views[0].len, first, libsvm_adapter, &out);
    release_all(views, 6);
    return progress_tuple(done, out.rows, out.pairs, 1);
}

/* Whether the CSV parse can take this delimiter: a blank (space or tab), or ASCII
 * punctuation that cannot be part of a number or a quote (not + - . "). */
static int plain_delimiter(int c)
{
    int punctuation = (c >= 33 && c <= 47) || (c >= 58 && c <= 64) || (c >= 91 && c <= 96) ||
                      (c >= 123 && c <= 126);
    return c == ' ' || c == '\t' || (punctuation && c != '+' && c != '-' && c != '.' && c != '"');
}

/* numeric_plain(text, out, first_line, delimiter, width) -> (consumed, rows, lines, status)
 *   text: bytes-like; out = (values, numbers): values float64, width * the rows that fit,
 *   numbers int64, the rows that fit; both writable. Row k written is values[k * width,
 *   (k + 1) * width) and numbers[k]. delimiter: one character (see plain_delimiter);
 *   width >= 1. */
static PyObject *py_numeric_plain(PyObject *self, PyObject *args)
{
    static const char *const names[] = {"text", "values", "numbers"};
    PyObject *obj[3];
    Py_buffer views[3];
    long long first;
    int delimiter;
    Py_ssize_t width;
    (void)self;
    memset(views, 0, sizeof views);
    if (!PyArg_ParseTuple(args, "O(OO)LCn:numeric_plain", &obj[0], &obj[1], &obj[2], &first,
                          &delimiter, &width))
        return NULL;
    if (!plain_delimiter(delimiter))
        return PyErr_Format(PyExc_ValueError, "delimiter %R: choose a space, a tab or ASCII "
                            "punctuation other than + - . \"", PyTuple_GET_ITEM(args, 3));
    if (width < 1)
        return PyErr_Format(PyExc_ValueError, "width %zd: need at least 1", width);
    int ok = take_text(obj[0], &views[0]) && take_out(obj[1], &views[1], 'd', names[1], 0) &&
             take_out(obj[2], &views[2], 'l', names[2], 0) && apart(views, 3) &&
             numbers_fit(first, views[0].len, 0, 0);
    Py_ssize_t rows = items(&views[2]);
    if (ok && (rows > PY_SSIZE_T_MAX / width || items(&views[1]) != rows * width)) {
        PyErr_Format(PyExc_ValueError, "values holds %zd items, but numbers holds %zd rows of "
                     "width %zd", items(&views[1]), rows, width);
        ok = 0;
    }
    PyObject *result = NULL;
    if (ok) {
        Dense out = {.values = views[1].buf, .numbers = views[2].buf, .row_cap = rows,
                     .width = width, .delimiter = (char)delimiter};
        Progress done = parse_lines(views[0].buf, views[0].len, first, csv_adapter, &out);
        result = progress_tuple(done, out.rows, 0, 0);
    }
    release_all(views, 3);
    return result;
}

/* Sets out's layout from kinds (one byte a field: FIELD_LABEL at most once,
 * FIELD_NUMBER, FIELD_CATEGORY) and prefixes (a tuple of bytes, one for each
 * FIELD_CATEGORY in order) and allocates its scratch; else a TypeError, a ValueError or a
 * MemoryError. The prefixes are borrowed from the tuple. Release with free_layout. */
static int take_layout(const char *kinds, Py_ssize_t width, PyObject *prefixes, int hash_bits,
                       Hashed *out)
{
    Py_ssize_t labels = 0, categories = 0;
    for (Py_ssize_t c = 0; c < width; c++) {
        labels += kinds[c] == FIELD_LABEL;
        categories += kinds[c] == FIELD_CATEGORY;
        out->n_numbers += kinds[c] == FIELD_NUMBER;
    }
    if (width < 1 || labels > 1 || labels + categories + out->n_numbers != width ||
        hash_bits < 1 || hash_bits > 31 || PyTuple_GET_SIZE(prefixes) != categories) {
        PyErr_SetString(PyExc_ValueError, "kinds: one of y (at most once), x or c a field, "
                        "at least one; prefixes: one for each c; 1 <= hash_bits <= 31");
        return 0;
    }
    out->kinds = kinds;
    out->width = width;
    out->mask = (UINT32_C(1) << hash_bits) - 1;
    out->prefix = PyMem_Calloc((size_t)width, sizeof *out->prefix);
    out->prefix_len = PyMem_Calloc((size_t)width, sizeof *out->prefix_len);
    out->hash_index = PyMem_Calloc((size_t)categories + 1, sizeof *out->hash_index);
    out->hash_value = PyMem_Calloc((size_t)categories + 1, sizeof *out->hash_value);
    if (!out->prefix || !out->prefix_len || !out->hash_index || !out->hash_value) {
        PyErr_NoMemory();
        return 0;
    }
    for (Py_ssize_t c = 0, k = 0; c < width; c++) {
        if (kinds[c] != FIELD_CATEGORY)
            continue;
        PyObject *prefix = PyTuple_GET_ITEM(prefixes, k++);
        if (!PyBytes_Check(prefix)) {
            PyErr_SetString(PyExc_TypeError, "prefixes must hold bytes");
            return 0;
        }
        out->prefix[c] = PyBytes_AS_STRING(prefix);
        out->prefix_len[c] = PyBytes_GET_SIZE(prefix);
    }
    return 1;
}

static void free_layout(Hashed *out)
{
    PyMem_Free(out->prefix);
    PyMem_Free(out->prefix_len);
    PyMem_Free(out->hash_index);
    PyMem_Free(out->hash_value);
    PyMem_Free(out->token);
}

/* hashed_plain(text, out, first_line, pair_base, delimiter, kinds, prefixes, hash_bits)
 *     -> (consumed, rows, pairs, lines, status)
 *   text, out, first_line and pair_base as libsvm_plain, values required. kinds: bytes,
 *   one a field: b'y' the label (at most one), b'x' a numeric feature, b'c' a categorical
 *   one; prefixes: a tuple of bytes, for each b'c' in order the bytes its tokens start
 *   with ("NAME="); delimiter as numeric_plain; 1 <= hash_bits <= 31. A row's numeric
 *   features (nonzero, not empty) are columns 0, 1, ... in file order, its categories'
 *   hashed columns (see add_hashed) come after them; a row takes at most len(kinds)
 *   pairs. */
static PyObject *py_hashed_plain(PyObject *self, PyObject *args)
{
    PyObject *text, *out_obj, *prefixes, *result = NULL;
    Py_buffer views[6];
    long long first, base;
    int delimiter, hash_bits;
    const char *kinds;
    Py_ssize_t width;
    Hashed out = {0};
    (void)self;
    if (!PyArg_ParseTuple(args, "OO!LLCy#O!i:hashed_plain", &text, &PyTuple_Type, &out_obj,
                          &first, &base, &delimiter, &kinds, &width, &PyTuple_Type, &prefixes,
                          &hash_bits))
        return NULL;
    if (!plain_delimiter(delimiter))
        return PyErr_Format(PyExc_ValueError, "delimiter %R: choose a space, a tab or ASCII "
                            "punctuation other than + - . \"", PyTuple_GET_ITEM(args, 4));
    if (!take_sparse(text, out_obj, 0, first, base, views))
        return NULL;
    if (take_layout(kinds, width, prefixes, hash_bits, &out)) {
        out.rows = sparse_rows(views, base);
        out.delimiter = (char)delimiter;
        Progress done = parse_lines(views[0].buf, views[0].len, first, hashed_adapter, &out);
        result = progress_tuple(done, out.rows.rows, out.rows.pairs, 1);
    }
    free_layout(&out);
    release_all(views, 6);
    return result;
}

/* line_end(text, start) -> int: where the line that starts at `start` ends, past its "\n"
 * (len(text) for a last line without one); 0 <= start <= len(text). */
static PyObject *py_line_end(PyObject *self, PyObject *args)
{
    PyObject *obj;
    Py_buffer view;
    Py_ssize_t start;
    (void)self;
    if (!PyArg_ParseTuple(args, "On:line_end", &obj, &start) || !take_text(obj, &view))
        return NULL;
    Py_ssize_t end = view.len;
    if (start >= 0 && start <= view.len) {
        const char *text = view.buf;
        const char *newline = memchr(text + start, '\n', (size_t)(view.len - start));
        end = newline ? newline - text + 1 : view.len;
    }
    PyBuffer_Release(&view);
    if (start < 0 || start > end)
        return PyErr_Format(PyExc_ValueError, "start %zd is outside the text", start);
    return PyLong_FromSsize_t(end);
}

/* newlines(text) -> int: the count of "\n" bytes in text (any bytes-like object). */
static PyObject *py_newlines(PyObject *self, PyObject *args)
{
    PyObject *obj;
    Py_buffer view;
    Py_ssize_t count = 0;
    (void)self;
    if (!PyArg_ParseTuple(args, "O:newlines", &obj) || !take_text(obj, &view))
        return NULL;
    const char *p = view.buf, *end = p + view.len;
    Py_BEGIN_ALLOW_THREADS
    while (p < end && (p = memchr(p, '\n', (size_t)(end - p)))) {
        count++;
        p++;
    }
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&view);
    return PyLong_FromSsize_t(count);
}

static PyMethodDef methods[] = {
    {"libsvm_plain", py_libsvm_plain, METH_VARARGS,
     "libsvm_plain(text, out, first_line, pair_base) -> (consumed, rows, pairs, lines, "
     "status)\n\nPlain LIBSVM lines into out = (labels, indptr, indices, values, numbers); "
     "status 0: the end of the text, 1: stopped before a line that is not plain, 2: "
     "stopped before a line that does not fit."},
    {"numeric_plain", py_numeric_plain, METH_VARARGS,
     "numeric_plain(text, out, first_line, delimiter, width) -> (consumed, rows, lines, "
     "status)\n\nPlain numeric CSV lines into out = (values, numbers); status as "
     "libsvm_plain."},
    {"hashed_plain", py_hashed_plain, METH_VARARGS,
     "hashed_plain(text, out, first_line, pair_base, delimiter, kinds, prefixes, hash_bits) "
     "-> (consumed, rows, pairs, lines, status)\n\nPlain CSV lines with categorical "
     "columns hashed into out = (labels, indptr, indices, values, numbers); status as "
     "libsvm_plain."},
    {"line_end", py_line_end, METH_VARARGS,
     "line_end(text, start) -> int\n\nThe offset past the end of the line at start."},
    {"newlines", py_newlines, METH_VARARGS,
     "newlines(text) -> int\n\nThe count of newline bytes in text."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_text",
    "Plain LIBSVM, numeric CSV and hashed CSV lines, parsed fast.", -1,
    methods, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__text(void)
{
    PyObject *mod = PyModule_Create(&module);
    if (mod && PyModule_AddIntConstant(mod, "ABI", TEXT_ABI) < 0) {
        Py_DECREF(mod);
        return NULL;
    }
    return mod;
}
