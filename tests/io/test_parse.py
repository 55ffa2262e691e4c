"""The text parsers of mpigd.io.parse: the compiled fast path against the reference.

Numbers must come out exactly as ``float()`` reads them, bit for bit; the compiled parser
and the reference (``MPIGD_KERNELS=numpy``) must give the same arrays and the same error
messages on any text; the LIBSVM rows must equal scikit-learn's; and no argument can drive
the C entry points outside their buffers.
"""

from __future__ import annotations

import mmap
import os
import struct
import sys
from unittest import mock

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mpigd.errors import InvalidInputError, MpigdError
from mpigd.io import parse, parsed

needs_compiled = pytest.mark.skipif(
    parse._text is None, reason=f"compiled text parser off: {parse.why_not}"
)
PARSERS = ("compiled", "numpy")
FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def read(fn, choice: str, *args, **kwargs):
    """``fn(*args, **kwargs)`` with ``MPIGD_KERNELS=choice``: its result, or the text of
    the MpigdError it raised."""
    with mock.patch.dict(os.environ, {"MPIGD_KERNELS": choice}):
        try:
            return fn(*args, **kwargs)
        except MpigdError as error:
            return f"MpigdError: {error}"


def bits(a):
    """An array's dtype, shape and bytes: equal exactly when two arrays are identical."""
    return None if a is None else (a.dtype.str, a.shape, np.ascontiguousarray(a).tobytes())


def same(a, b) -> bool:
    """Whether two results of libsvm_lines or numeric_lines (or two errors) are identical."""
    if isinstance(a, str) or isinstance(b, str):
        return a == b
    if isinstance(a, parse.SparseLines):
        fields = ("labels", "indptr", "indices", "values", "numbers")
        return a.n_lines == b.n_lines and all(
            bits(getattr(a, f)) == bits(getattr(b, f)) for f in fields
        )
    return a[2] == b[2] and bits(a[0]) == bits(b[0]) and bits(a[1]) == bits(b[1])


def both(fn, text, **kwargs):
    """The results of the compiled parser and the reference, checked identical. The
    compiled parser reads a copy of the text that ends where its memory does (so that
    the sanitizers see a byte read past the end)."""
    exact = np.frombuffer(text, np.uint8).copy()
    compiled = read(fn, "compiled", exact, path="f.txt", **kwargs)
    reference = read(fn, "numpy", text, path="f.txt", **kwargs)
    assert same(compiled, reference), (text, compiled, reference)
    return compiled


def int64_bits(values) -> np.ndarray:
    return np.asarray(values, dtype=np.float64).view(np.int64)


# ------------------------------------------------------------------ exact as float()

HARD = [
    "0.1", "1e22", "1e23", "123456789012345678901234567890", "-0", "+1", ".5", "5.", "1.e5",
    "9007199254740993", "9007199254740992", "9007199254740991", "9007199254740993.000000001",
    "4503599627370496.5", "4503599627370497.5", "18446744073709551615", "1844674407370955161",
    "2.2250738585072011e-308", "2.2250738585072012e-308", "2.2250738585072014e-308",
    "4.9e-324", "2.4703282292062328e-324", "2.4703282292062327e-324", "1e-400", "-1e-400",
    "1.7976931348623157e308", "1.7976931348623158e308", "8.98846567431158e307", "0e999999",
    "1E+5", "1e-5", "-1.5E-3", "+.5e-0", "3.14159265358979323846264338327950288",
    "0.000000000000000000000000000000001", "000000000000000000000000000001.5", "1e0000000022",
    "7.2057594037927933e16", "5e-324", "1" * 63, "0." + "1" * 61, "1" * 64, "9" * 19 + "e-10",
    "18446744073709551621", "18446744073709551621e-5", "1.7976931348623157e+308",
]  # fmt: skip


def one_line(tokens, label: str = "0") -> bytes:
    """A LIBSVM line of ``label`` and ``tokens`` as the values of indices 1, 2, ..."""
    pairs = "".join(f" {i}:{t}" for i, t in enumerate(tokens, start=1))
    return f"{label}{pairs}\n".encode()


@pytest.mark.parametrize("choice", PARSERS)
def test_hard_numbers_are_read_exactly_as_float_reads_them(choice):
    if choice == "compiled" and parse._text is None:
        pytest.skip(parse.why_not)
    got = read(parse.libsvm_lines, choice, one_line(HARD), path="f", first_line=1)
    assert np.array_equal(int64_bits(got.values), int64_bits([float(t) for t in HARD]))
    counted = read(parse.libsvm_lines, choice, one_line(HARD), path="f", first_line=1, values=False)
    assert np.array_equal(counted.indices, got.indices)  # every value finite: no error
    labels = b"".join(f"{t} 1:0\n".encode() for t in HARD)
    got = read(parse.libsvm_lines, choice, labels, path="f", first_line=1)
    assert np.array_equal(int64_bits(got.labels), int64_bits([float(t) for t in HARD]))
    csv = b"".join(f"{t},{t}\n".encode() for t in HARD)
    got = read(parse.numeric_lines, choice, csv, path="f", first_line=1, delimiter=",", width=2)
    assert np.array_equal(got[0].view(np.int64), int64_bits([[float(t)] * 2 for t in HARD]))


def test_digit_runs_of_every_length_are_read_at_any_distance_from_the_texts_end():
    """Runs of 1 to 24 digits, before and after the point and as indices, where 8 bytes
    follow and where the text ends within them (the compiled parser reads 8 at a time
    where the bytes allow): each value is float()'s, each index its integer."""
    rng = np.random.default_rng(5)
    tokens = []
    for whole in range(0, 25):
        for fraction in (None, *range(0, 25)):
            if whole == 0 and not fraction:
                continue
            w = "".join(map(str, rng.integers(0, 10, whole)))
            tokens.append(
                w
                if fraction is None
                else w + "." + "".join(map(str, rng.integers(0, 10, fraction)))
            )
    tokens += ["0" * k + "7" for k in range(24)] + ["0." + "0" * k + "3" for k in range(24)]
    for token in tokens:
        for tail in ("", "\n", " 9:1\n"):
            text = f"1 3:{token}{tail}".encode()
            got = both(parse.libsvm_lines, text, first_line=1)
            assert int64_bits(got.values)[0] == int64_bits([float(token)])[0], token
    indices = ["".join(map(str, rng.integers(1, 10, k))) for k in range(1, 21)]
    for index in [*indices, str(2**63 - 1), str(2**63)]:
        for tail in ("", "\n", "  \n"):
            got = both(parse.libsvm_lines, f"1 {index}:2.5{tail}".encode(), first_line=1)
            if int(index) < 2**63:  # 19 digits go to the reference, which reads them
                assert got.indices.tolist() == [int(index)], index
            else:
                assert isinstance(got, str) and "too large" in got, (index, got)


digits = st.text("0123456789", max_size=25)
decimals = st.builds(
    lambda sign, whole, point, fraction, exponent: sign + whole + point + fraction + exponent,
    st.sampled_from(["", "+", "-"]),
    digits,
    st.sampled_from(["", "."]),
    digits,
    st.one_of(
        st.just(""),
        st.builds(
            "{}{}{}".format,
            st.sampled_from("eE"),
            st.sampled_from(["", "+", "-"]),
            st.integers(0, 400).map(str),
        ),
    ),
).filter(lambda t: any(c.isdigit() for c in t.split("e")[0].split("E")[0]))
reprs = st.floats(allow_nan=False, allow_infinity=False).flatmap(
    lambda x: st.sampled_from([repr(x), f"{x:.17g}", f"{x:.6g}", f"{x:.20e}", f"{x:.3f}"])
)


@needs_compiled
@FUZZ
@given(st.lists(st.one_of(decimals, reprs), min_size=1, max_size=40))
def test_random_numbers_are_read_exactly_as_float_reads_them(tokens):
    tokens = [t for t in tokens if np.isfinite(float(t))] or ["1"]
    got = both(parse.libsvm_lines, one_line(tokens, label=tokens[-1]), first_line=1)
    assert np.array_equal(int64_bits(got.values), int64_bits([float(t) for t in tokens]))
    assert struct.pack("<d", got.labels[0]) == struct.pack("<d", float(tokens[-1]))


# ------------------------------------------------- the compiled parser is the reference

LABELS = ["1", "-1", "+1", "0", "2.5", "1e3", ".5", "-0", "3."]
VALUES = ["1", "0.5", "-2.25e-3", "1e5", ".25", "7.", "123456789012345678", "1e-320"]
#: What makes a line not plain: handled by the reference, or an error it words.
ODD = ["qid:3", "1_0", "inf", "nan", "0x1p3", "abc", "1:2:3", "-1:2", ":5", "5:", "\x0c",
       "3:1e999", "\u0661:1", "4:\u0661", "\xa0", "19:1.5e", "2:1.0.0"]  # fmt: skip


@st.composite
def libsvm_line(draw):
    """One line: blank, a comment, or a data line, perhaps with odd tokens."""
    kind = draw(st.sampled_from(["data"] * 6 + ["blank", "comment"]))
    blank = st.sampled_from(["", " ", "\t", "  \t", " \r"])
    if kind == "blank":
        return draw(blank)
    if kind == "comment":
        return draw(blank) + "# a comment 1:2"
    indices = draw(st.lists(st.integers(0, 30), max_size=8, unique=True))
    if draw(st.integers(0, 3)):
        indices.sort()
    if indices and draw(st.integers(0, 15)) == 0:
        indices.append(draw(st.sampled_from(indices)))
    pairs = [f"{i}:{draw(st.sampled_from(VALUES))}" for i in indices]
    if draw(st.integers(0, 12)) == 0:
        pairs.insert(draw(st.integers(0, len(pairs))), draw(st.sampled_from(ODD)))
    gap = st.sampled_from([" ", "\t", "  ", " \t"])
    line = draw(blank) + draw(st.sampled_from(LABELS))
    for pair in pairs:
        line += draw(gap) + pair
    return line + draw(st.sampled_from(["", " ", "\t", "# c", " #c 1:x"]))


@st.composite
def libsvm_texts(draw):
    lines = draw(st.lists(libsvm_line(), max_size=12))
    ending = st.sampled_from(["\n", "\r\n"])
    text = "".join(line + draw(ending) for line in lines)
    if lines and draw(st.booleans()):
        text = text.rstrip("\r\n")
    return text.encode()


@needs_compiled
@FUZZ
@given(libsvm_texts(), st.integers(-5, 10**9), st.booleans())
def test_libsvm_compiled_equals_the_reference(text, first_line, values):
    both(parse.libsvm_lines, text, first_line=first_line, values=values)


@needs_compiled
@FUZZ
@given(st.binary(max_size=80), st.booleans())
def test_libsvm_compiled_equals_the_reference_on_any_bytes(text, values):
    both(parse.libsvm_lines, text, first_line=1, values=values)


@needs_compiled
@FUZZ
@given(st.text("0123456789.:+-eE #\t\r\nqid_x\x00", max_size=80), st.booleans())
def test_libsvm_compiled_equals_the_reference_on_near_misses(text, values):
    both(parse.libsvm_lines, text.encode(), first_line=7, values=values)


FIELDS = ["1", "-2.5", "1e5", ".5", "3.", "+4", "0.1", "1e-320", "123456789012345678901"]
ODD_FIELDS = ['"1.5"', "", "x", "inf", "nan", "1_0", "1e999", "0x10", '"a,b"', "1 2", "--1", "1#"]


@st.composite
def csv_texts(draw):
    """A delimited text, its delimiter and width."""
    delimiter = draw(st.sampled_from([",", "\t", ";", " ", "|"]))
    width = draw(st.integers(1, 4))
    lines = []
    for _ in range(draw(st.integers(0, 10))):
        if draw(st.integers(0, 6)) == 0:
            lines.append(draw(st.sampled_from(["", " ", "\t", " \r"])))
            continue
        count = width if draw(st.integers(0, 25)) else draw(st.integers(1, 5))
        pool = st.sampled_from(FIELDS if draw(st.integers(0, 20)) else FIELDS + ODD_FIELDS)
        pad = st.sampled_from(["", "", " ", "\t"] if delimiter in ",;|" else ["", "", "", " "])
        fields = [draw(pad) + draw(pool) + draw(pad) for _ in range(count)]
        lines.append(delimiter.join(fields))
    ending = st.sampled_from(["\n", "\r\n"])
    text = "".join(line + draw(ending) for line in lines)
    if lines and draw(st.booleans()):
        text = text.rstrip("\r\n")
    return text.encode(), delimiter, width


@needs_compiled
@FUZZ
@given(csv_texts(), st.integers(1, 1000))
def test_csv_compiled_equals_the_reference(case, first_line):
    text, delimiter, width = case
    names = [f"c{i}" for i in range(width)] if first_line % 2 else None
    both(
        parse.numeric_lines, text, first_line=first_line, delimiter=delimiter, width=width,
        names=names,
    )  # fmt: skip


@needs_compiled
@FUZZ
@given(st.text('0123456789.,+-eE \t\r\n"x#', max_size=60), st.integers(1, 3))
def test_csv_compiled_equals_the_reference_on_near_misses(text, width):
    both(parse.numeric_lines, text.encode(), first_line=1, delimiter=",", width=width)


@needs_compiled
@pytest.mark.parametrize("delimiter", ["e", "a", "1", ".", "\u00e9"])
def test_csv_with_a_delimiter_the_compiled_parser_cannot_take_is_read_by_the_reference(
    delimiter,
):
    text = f"1{delimiter}2\n3{delimiter}4\n".encode()
    got = both(parse.numeric_lines, text, first_line=1, delimiter=delimiter, width=2)
    assert isinstance(got, str) or got[0].shape == (2, 2)


# ---------------------------------------------------------------------------- errors

ERRORS = [
    (b"1 2:3\n\n1 2:abc\n", "f.txt: line 102, column 2: '2:abc' is not index:value"),
    (b"1 2:3\n1 2:1e999\n", "f.txt: line 101, column 2: '2:1e999' is not a finite number"),
    (b"1 2:3\n1 2:9e308\n", "f.txt: line 101, column 2: '2:9e308' is not a finite number"),
    (b"1 2:-.2e309", "f.txt: line 100, column 2: '2:-.2e309' is not a finite number"),
    (b"1 2:3\r\nx 2:3\r\n", "f.txt: line 101, column 1: label 'x' is not a finite number"),
    (b"# c\n1 3:1 2:1 3:2\n", "f.txt: line 101: index 3 appears twice in one row"),
    (b"1 4:1 4:1", "f.txt: line 100: index 4 appears twice in one row"),
    (b"1 -4:1\n", "f.txt: line 100, column 2: negative index"),
    (b"1 99999999999999999999:1\n", "f.txt: line 100: index 99999999999999999999 is too large"),
]  # fmt: skip


@pytest.mark.parametrize(("text", "message"), ERRORS)
@pytest.mark.parametrize("values", [True, False])
def test_libsvm_errors_name_the_line_alike_on_both_paths(text, message, values):
    if parse._text is None:
        pytest.skip(parse.why_not)
    got = both(parse.libsvm_lines, text, first_line=100, values=values)
    assert got == f"MpigdError: {message}"


CSV_ERRORS = [
    (b"1,2\n\n1,2,3\n", "f.txt: line 12 has 3 fields, expected 2"),
    (b"1,2\n1,\n", "f.txt: line 11, column 2 ('b'): an empty field is not a finite number"),
    (b"1,2\r\n1,inf\r\n", "f.txt: line 11, column 2 ('b'): 'inf' is not a finite number"),
    (b"x,2\n", "f.txt: line 10, column 1 ('a'): 'x' is not a finite number"),
    (b"1,2\n1_0,2\n", "f.txt: line 11 cannot be read"),
]  # fmt: skip


@pytest.mark.parametrize(("text", "message"), CSV_ERRORS)
def test_csv_errors_name_the_line_alike_on_both_paths(text, message):
    if parse._text is None:
        pytest.skip(parse.why_not)
    got = both(parse.numeric_lines, text, first_line=10, delimiter=",", width=2, names=["a", "b"])
    assert got == f"MpigdError: {message}"


# --------------------------------------------------------------- what the rows hold


def test_libsvm_rows_skip_blanks_and_comments_and_sort_each_row():
    text = b"\n  # note\n+1 qid:2 5:0.5 3:1.5 # tail\r\n-1\n\t2 1:1\t4:2   \n0 7:1"
    got = parse.libsvm_lines(text, path="f", first_line=3)
    assert got.n_lines == 6
    assert got.labels.tolist() == [1.0, -1.0, 2.0, 0.0]
    assert got.numbers.tolist() == [5, 6, 7, 8]
    assert got.indptr.tolist() == [0, 2, 2, 4, 5]
    assert got.indices.tolist() == [3, 5, 1, 4, 7]
    assert got.values.tolist() == [1.5, 0.5, 1.0, 2.0, 1.0]
    assert [a.dtype for a in (got.labels, got.indptr, got.indices, got.numbers)] == [
        np.float64, np.int64, np.int64, np.int64,
    ]  # fmt: skip


@pytest.mark.parametrize(("text", "n_lines"), [(b"", 0), (b"\n", 1), (b"1", 1), (b"1\n\n", 2)])
def test_lines_are_counted_with_or_without_a_final_newline(text, n_lines):
    assert parse.libsvm_lines(text, path="f", first_line=1).n_lines == n_lines
    assert parse.numeric_lines(text, path="f", first_line=1, delimiter=",", width=1)[2] == n_lines


@pytest.mark.parametrize("choice", PARSERS)
@pytest.mark.parametrize("text", [b"", b"\n", b"x", b"\r\n\n", b"a\nb\n\nc", bytes(range(256)) * 9])
def test_newlines_are_counted_alike_on_both_paths(choice, text):
    if choice == "compiled" and parse._text is None:
        pytest.skip(parse.why_not)
    exact = np.frombuffer(text, np.uint8).copy()  # ends where its memory does
    assert read(parse.count_newlines, choice, exact) == text.count(b"\n")
    assert read(parse.count_newlines, choice, memoryview(text)[1:]) == text[1:].count(b"\n")


def test_values_false_leaves_the_values_out_and_the_rest_alike():
    text = b"1 1:0.5 3:2\n-1 qid:1 2:1e-5\n"
    full = parse.libsvm_lines(text, path="f", first_line=1)
    counted = parse.libsvm_lines(text, path="f", first_line=1, values=False)
    assert counted.values is None
    assert same(counted, parse.SparseLines(**{**full.__dict__, "values": None}))


WRAPS = [bytes, bytearray, memoryview, lambda b: memoryview(bytearray(b))]


@pytest.mark.parametrize("wrap", [*WRAPS, lambda b: memoryview(b"xx" + b)[2:]])
def test_any_bytes_like_buffer_is_read(wrap):
    text = b"1 1:0.5\n-1 2:3\n"
    assert same(parse.libsvm_lines(wrap(text), path="f", first_line=1),
                parse.libsvm_lines(text, path="f", first_line=1))  # fmt: skip


def test_an_mmap_and_its_slices_are_read(tmp_path):
    path = tmp_path / "a.svm"
    path.write_bytes(b"1 1:0.5\n-1 2:3\n1 3:1\n")
    with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as m:
        whole = parse.libsvm_lines(m, path=path, first_line=1)
        tail = parse.libsvm_lines(m[8:], path=path, first_line=2)
    assert whole.labels.tolist() == [1.0, -1.0, 1.0]
    assert tail.numbers.tolist() == [2, 3] and tail.indices.tolist() == [2, 3]


def test_a_str_is_not_a_buffer():
    with pytest.raises(TypeError):
        parse.libsvm_lines("1 1:1\n", path="f", first_line=1)


@pytest.mark.parametrize("choice", PARSERS)
def test_the_arrays_grow_past_their_first_guess(choice):
    if choice == "compiled" and parse._text is None:
        pytest.skip(parse.why_not)
    rows = b"1 1:1\n" * 5000 + b"1 " + b" ".join(b"%d:1" % i for i in range(1, 3000)) + b"\n"
    got = read(parse.libsvm_lines, choice, rows + b"2 qid:1 1:2\n", path="f", first_line=1)
    assert got.labels.shape == (5002,) and got.indptr[-1] == 5000 + 2999 + 1
    assert got.indices[-3000:].tolist() == [*range(1, 3000), 1]
    dense = b"1\n" * 20000 + b'"2"\n'
    values, numbers, _ = read(parse.numeric_lines, choice, dense, path="f", first_line=1,
                              delimiter=",", width=1)  # fmt: skip
    assert values.shape == (20001, 1) and values[-1, 0] == 2.0 and numbers[-1] == 20001


@pytest.mark.parametrize("choice", PARSERS)
def test_a_scratch_is_filled_again_and_gives_what_fresh_arrays_give(choice):
    """Blocks parsed one after another into one Scratch: each result is what a fresh
    parse gives, the next block (no larger) reuses the same memory, and a larger one,
    or one that outgrows the first guess, gets new arrays without losing a row."""
    if choice == "compiled" and parse._text is None:
        pytest.skip(parse.why_not)
    rng = np.random.default_rng(3)
    lines = [f"{rng.integers(-1, 2)} " + " ".join(f"{i}:{rng.random():.5f}"
             for i in sorted(rng.choice(99, rng.integers(0, 6), replace=False) + 1))
             for _ in range(400)]  # fmt: skip
    big, small = "\n".join(lines).encode() + b"\n", "\n".join(lines[:50]).encode() + b"\n"
    wide = b"1 " + b" ".join(b"%d:1" % i for i in range(1, 3000)) + b"\n"
    for values in (True, False):
        scratch, seen = parse.Scratch(), []
        for text in (big, small, small + b"# c\n" + big, wide * 3):
            got = read(parse.libsvm_lines, choice, text, path="f", first_line=7,
                       values=values, into=scratch)  # fmt: skip
            fresh = read(parse.libsvm_lines, choice, text, path="f", first_line=7, values=values)
            assert same(got, fresh)
            seen.append(got.indices)
        assert np.shares_memory(seen[0], seen[1])  # the smaller block: the same arrays
        assert not np.shares_memory(seen[1], seen[2])  # the larger one: new arrays
    dense, scratch = b"1,2\n3,4\n\n5,6\n", parse.Scratch()
    first = read(parse.numeric_lines, choice, dense, path="f", first_line=1, delimiter=",",
                 width=2, into=scratch)  # fmt: skip
    again = read(parse.numeric_lines, choice, dense[:8], path="f", first_line=1,
                 delimiter=",", width=2, into=scratch)  # fmt: skip
    assert again[0].tolist() == [[1, 2], [3, 4]] and np.shares_memory(first[0], again[0])
    other = read(parse.numeric_lines, choice, b"1,2,3\n", path="f", first_line=1,
                 delimiter=",", width=3, into=scratch)  # fmt: skip
    assert other[0].tolist() == [[1, 2, 3]]


@pytest.mark.parametrize("choice", PARSERS)
def test_a_fresh_parse_returns_arrays_of_its_own_cut_to_size(choice):
    """Without a scratch, the arrays are the parser's own, shrunk where they were made
    (not views of larger ones, nor copies): a kept block holds no spare room."""
    if choice == "compiled" and parse._text is None:
        pytest.skip(parse.why_not)
    if sys.gettrace() is not None:  # NumPy's reference check then refuses every resize
        pytest.skip("under a trace function (debugger, coverage) the arrays are copies")
    got = read(parse.libsvm_lines, choice, b"1 1:1 2:2\n-1 3:0.5\n" * 1000, path="f",
               first_line=1)  # fmt: skip
    for a in (got.labels, got.indptr, got.indices, got.values, got.numbers):
        assert a.base is None and a.flags.owndata
    assert got.labels.shape == (2000,) and got.indices.shape == (3000,)
    values, numbers, _ = read(parse.numeric_lines, choice, b"1,2\n3,4\n", path="f",
                              first_line=1, delimiter=",", width=2)  # fmt: skip
    assert values.base is None and values.shape == (2, 2) and numbers.shape == (2,)


def test_an_array_with_a_view_alive_is_never_moved_but_copied():
    rows = parsed.SparseRows(4096, True)
    rows.indices[:3] = [1, 2, 3]
    view = rows.indices[:8]
    parsed._fit(rows, "indices", 3)
    assert rows.indices.tolist() == [1, 2, 3]
    assert not np.shares_memory(rows.indices, view)  # most of it unused: a copy (the view
    # itself is not read: were it resized under, that would read freed memory)


# ------------------------------------------------------------ the division of labour


@needs_compiled
def test_plain_lines_never_reach_the_reference_and_each_other_line_once(monkeypatch):
    calls = []
    reference = parse._libsvm_row
    monkeypatch.setenv("MPIGD_KERNELS", "compiled")
    monkeypatch.setattr(parse, "_libsvm_row", lambda *a: calls.append(a[1]) or reference(*a))
    parse.libsvm_lines(b"1 1:1\n# c\n\n-1 2:1.5e-3 3:2 # x\r\n1", path="f", first_line=1)
    assert calls == []
    parse.libsvm_lines(b"1 1:1\n1 qid:1 1:1\n1 1:1\n1 2:1 1:1\n1 1:1", path="f", first_line=1)
    assert calls == [2, 4]


def test_mpigd_kernels_numpy_turns_the_compiled_parser_off(monkeypatch):
    monkeypatch.setenv("MPIGD_KERNELS", " NumPy ")
    assert parse.name() == "numpy"
    monkeypatch.setenv("MPIGD_KERNELS", "fast")
    with pytest.raises(InvalidInputError, match="MPIGD_KERNELS='fast'"):
        parse.libsvm_lines(b"1 1:1\n", path="f", first_line=1)


def test_the_compiled_parser_is_built_unless_turned_off():
    if os.environ.get("MPIGD_KERNELS", "").strip().lower() == "numpy":
        assert parse.name() == "numpy"
    else:
        assert parse.name() == "compiled", parse.why_not


# ------------------------------------------------------------- against scikit-learn


def test_libsvm_rows_equal_scikit_learns(tmp_path):
    datasets = pytest.importorskip("sklearn.datasets")
    rng = np.random.default_rng(3)
    lines = []
    for i in range(400):
        index = np.sort(rng.choice(200, rng.integers(0, 12), replace=False)) + 1
        pairs = "".join(
            f" {j}:{v:.6g}" for j, v in zip(index, rng.standard_normal(len(index)), strict=True)
        )
        lines.append(f"{rng.choice([-1, 1])}{pairs}" + (" # note" if i % 7 == 0 else ""))
    path = tmp_path / "a.svm"
    path.write_text("\n".join(lines) + "\n")
    X, y = datasets.load_svmlight_file(str(path), n_features=200, zero_based=False)
    got = parse.libsvm_lines(path.read_bytes(), path=path, first_line=1)
    assert np.array_equal(int64_bits(got.labels), int64_bits(y))
    assert np.array_equal(int64_bits(got.values), int64_bits(X.data))
    assert np.array_equal(got.indices - 1, X.indices)
    assert np.array_equal(got.indptr, X.indptr)


# --------------------------------------------------------------- memory safety of C


@pytest.fixture
def text_module():
    if parse._text is None:
        pytest.skip(parse.why_not)
    return parse._text


def sparse_out(rows=4, pairs=8, **change):
    out = {
        "labels": np.empty(rows), "indptr": np.empty(rows, np.int64),
        "indices": np.empty(pairs, np.int64), "values": np.empty(pairs),
        "numbers": np.empty(rows, np.int64),
    }  # fmt: skip
    out.update(change)
    return tuple(out[k] for k in ("labels", "indptr", "indices", "values", "numbers"))


def readonly(a):
    a.setflags(write=False)
    return a


TEXT = b"1 1:2 3:4\n-1 2:0.5\n"
BAD_TEXT = [
    ("1 1:2\n", TypeError), (np.zeros(3), TypeError), (12, TypeError),
    (memoryview(b"1 1:2 \n")[::2], ValueError),
]  # fmt: skip
BAD_OUT = [
    {"labels": np.empty(4, np.float32)}, {"labels": readonly(np.empty(4))},
    {"labels": np.empty((2, 2))}, {"labels": np.empty(8)[::2]}, {"labels": np.empty(3)},
    {"indptr": np.empty(4, np.int32)}, {"indptr": np.empty(4, np.uint64)},
    {"indptr": np.empty(5, np.int64)}, {"numbers": np.empty(4, ">i8")},
    {"indices": np.empty(8)}, {"values": np.empty(7)}, {"values": np.empty(8, np.float32)},
    {"values": bytearray(64)}, {"labels": b"x" * 32}, {"labels": None},
]  # fmt: skip


@pytest.mark.parametrize(("text", "error"), BAD_TEXT)
def test_the_c_parsers_refuse_a_text_that_is_not_bytes(text_module, text, error):
    with pytest.raises(error):
        text_module.libsvm_plain(text, sparse_out(), 1, 0)
    with pytest.raises(error):
        text_module.numeric_plain(text, (np.empty(4), np.empty(4, np.int64)), 1, ",", 1)
    with pytest.raises(error):
        text_module.line_end(text, 0)
    with pytest.raises(error):
        text_module.newlines(text)


@pytest.mark.parametrize("change", BAD_OUT)
def test_libsvm_plain_refuses_outputs_it_cannot_fill(text_module, change):
    with pytest.raises((TypeError, ValueError)):
        text_module.libsvm_plain(TEXT, sparse_out(**change), 1, 0)


def test_the_c_parsers_refuse_sizes_and_numbers_out_of_range(text_module):
    with pytest.raises(ValueError):
        text_module.libsvm_plain(TEXT, sparse_out(), 1, -1)
    with pytest.raises(ValueError):
        text_module.libsvm_plain(TEXT, sparse_out(), 2**63 - 5, 0)
    with pytest.raises(ValueError):
        text_module.libsvm_plain(TEXT, sparse_out(), 1, 2**63 - 5)
    with pytest.raises(OverflowError):
        text_module.libsvm_plain(TEXT, sparse_out(), 2**64, 0)
    dense = (np.empty(6), np.empty(2, np.int64))
    for delimiter, width in [(",", 2), (",", 4), (".", 3), ("+", 3), ("\n", 3), (",", 0)]:
        with pytest.raises(ValueError):
            text_module.numeric_plain(b"1,2,3\n", dense, 1, delimiter, width)
    with pytest.raises(TypeError):
        text_module.numeric_plain(b"1,2,3\n", dense, 1, ",,", 3)
    for start in (-1, len(TEXT) + 1):
        with pytest.raises(ValueError):
            text_module.line_end(TEXT, start)


def test_the_c_parsers_refuse_outputs_that_share_the_texts_memory(text_module):
    shared = bytearray(TEXT + bytes(200))
    labels = np.frombuffer(shared, np.float64, 4, offset=32)
    with pytest.raises(ValueError, match="shares memory"):
        text_module.libsvm_plain(memoryview(shared)[:40], sparse_out(labels=labels), 1, 0)


def test_the_c_parsers_stop_before_a_line_that_does_not_fit(text_module):
    empty = sparse_out(rows=0, pairs=0)
    assert text_module.libsvm_plain(b"\n1 1:2\n", empty, 1, 0) == (1, 0, 0, 1, 2)
    out = sparse_out(rows=4, pairs=2)
    assert text_module.libsvm_plain(TEXT, out, 5, 10) == (10, 1, 2, 1, 2)
    assert out[0][0] == 1.0 and out[1][0] == 12 and out[4][0] == 5
    assert text_module.libsvm_plain(TEXT, sparse_out(values=None), 1, 0) == (19, 2, 3, 2, 0)
    assert text_module.libsvm_plain(b"1 2:1 1:1\n", sparse_out(), 1, 0) == (0, 0, 0, 0, 1)
    dense = (np.empty(2), np.empty(1, np.int64))
    assert text_module.numeric_plain(b"1,2\n3,4", dense, 1, ",", 2) == (4, 1, 1, 2)
    assert text_module.line_end(TEXT, 0) == 10 and text_module.line_end(TEXT, 19) == 19
