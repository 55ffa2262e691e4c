/*
 * Categorical columns by the hashing trick for the text parser (_text.c includes this file
 * once, after the line helpers it uses): scikit-learn's FeatureHasher(input_type="dict",
 * alternate_sign=True) exactly, signed 32-bit MurmurHash3 with seed 0 of each token
 * NAME=VALUE, into 2^B columns with the hash's sign.
 */

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
