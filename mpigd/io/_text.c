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

#include "_text_numbers.h"

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

#include "_text_hashing.h"

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
