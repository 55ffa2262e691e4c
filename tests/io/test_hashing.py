"""Categorical columns by the hashing trick (mpigd.io.hashing.hashed_lines), and the
Criteo-like files of mpigd.io.criteo.

The hash must be scikit-learn's (``murmurhash3_32``), a row must equal the numeric
columns followed by ``FeatureHasher``'s row, index for index and bit for bit, and the
compiled parser must give what the reference gives, errors included, on any text.
"""

from __future__ import annotations

import os
import re
import struct
from unittest import mock

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mpigd.errors import InvalidInputError, MpigdError
from mpigd.io import criteo, hashing, parse

sklearn_hashing = pytest.importorskip("sklearn.feature_extraction")
from sklearn.utils import murmurhash3_32 as sklearn_murmur  # noqa: E402

needs_compiled = pytest.mark.skipif(
    parse._text is None, reason=f"compiled text parser off: {parse.why_not}"
)
FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
CRITEO_WIDTH = 1 + criteo.N_COUNTS + criteo.N_CATEGORIES
CRITEO = {
    "delimiter": "\t", "width": CRITEO_WIDTH, "label": 0, "names": None,
    "categorical": frozenset(range(1 + criteo.N_COUNTS, CRITEO_WIDTH)),
}  # fmt: skip


def read(choice: str, text, **kwargs):
    """``hashed_lines(text, **kwargs)`` with ``MPIGD_KERNELS=choice``: its result, or the
    text of the MpigdError it raised."""
    with mock.patch.dict(os.environ, {"MPIGD_KERNELS": choice}):
        try:
            return hashing.hashed_lines(text, **kwargs)
        except MpigdError as error:
            return f"MpigdError: {error}"


def bits(a):
    return (a.dtype.str, a.shape, np.ascontiguousarray(a).tobytes())


def same(a, b) -> bool:
    """Whether two results of hashed_lines (or two errors) are identical."""
    if isinstance(a, str) or isinstance(b, str):
        return a == b
    fields = ("labels", "indptr", "indices", "values", "numbers")
    return a.n_lines == b.n_lines and all(
        bits(getattr(a, f)) == bits(getattr(b, f)) for f in fields
    )


def both(text: bytes, **kwargs):
    """The results of the compiled parser (on a copy of the text that ends where its
    memory does) and of the reference, checked identical."""
    kwargs = {"path": "f.csv", "first_line": 1, **kwargs}
    if parse._text is None:
        return read("numpy", text, **kwargs)
    compiled = read("compiled", np.frombuffer(text, np.uint8).copy(), **kwargs)
    reference = read("numpy", text, **kwargs)
    assert same(compiled, reference), (text, compiled, reference)
    return compiled


# ------------------------------------------------------------------------ the hash


@settings(max_examples=500, deadline=None)
@given(st.one_of(st.text(), st.binary()), st.integers(0, 2**32 - 1))
def test_murmurhash_is_scikit_learns(data, seed):
    raw = data.encode() if isinstance(data, str) else data
    assert hashing.murmurhash3_32(raw, seed) == sklearn_murmur(data, seed=seed, positive=False)


def test_murmurhash_takes_bytes_like_objects_only():
    assert hashing.murmurhash3_32(bytearray(b"abc")) == sklearn_murmur(b"abc", positive=False)
    assert hashing.murmurhash3_32(memoryview(b"xabcd")[1:]) == hashing.murmurhash3_32(b"abcd")
    with pytest.raises(TypeError):
        hashing.murmurhash3_32("abc")
    with pytest.raises(InvalidInputError):
        hashing.murmurhash3_32(b"abc", -1)


token_text = st.text(
    st.characters(blacklist_characters='\t\n\r" ', blacklist_categories=("Cs",)), min_size=1
)


@needs_compiled
@FUZZ
@given(st.lists(token_text, min_size=1, max_size=20))
def test_the_compiled_hash_is_scikit_learns(tokens):
    text = "".join(f"{t}\n" for t in tokens).encode()
    got = both(text, delimiter="\t", width=1, label=None, categorical={0}, names=None, hash_bits=31)
    hashes = [sklearn_murmur(f"0={t}", positive=False) for t in tokens]
    assert got.indices.tolist() == [abs(h) % 2**31 for h in hashes]
    assert got.values.tolist() == [-1.0 if h < 0 else 1.0 for h in hashes]


def _inverse(a: int) -> int:
    return pow(a, -1, 2**32)


def _unmix(h: int) -> int:
    """The 4-byte block k with murmur3_block(k) == h."""
    h = (h * _inverse(0x1B873593)) & 0xFFFFFFFF
    return (((h >> 15) | (h << 17)) & 0xFFFFFFFF) * _inverse(0xCC9E2D51) & 0xFFFFFFFF


PLAIN = [c for c in range(33, 127) if chr(c) not in ',"']


def token_hashing_to_int32_min() -> str:
    """A value v of 6 printable ASCII characters whose token ``"0=" + v`` (two 4-byte
    blocks) has the hash -2**31, found by running MurmurHash3 backwards from it."""
    mask = 0xFFFFFFFF
    h = 0x80000000  # undo the final mix, the length, then the second block's update
    h ^= h >> 16
    h = (h * _inverse(0xC2B2AE35)) & mask
    h ^= (h >> 13) ^ (h >> 26)
    h = (h * _inverse(0x85EBCA6B)) & mask
    h ^= (h >> 16) ^ 8
    h = ((h - 0xE6546B64) * _inverse(5)) & mask
    before = ((h >> 13) | (h << 19)) & mask  # = state after block 1 ^ mixed block 2
    for a in PLAIN:
        for b in PLAIN:
            head = b"0=" + bytes([a, b])
            state = hashing._rotl32(hashing._murmur_block(struct.unpack("<I", head)[0]), 13)
            state = (state * 5 + 0xE6546B64) & mask
            tail = struct.pack("<I", _unmix(state ^ before))
            if all(c in PLAIN for c in tail):
                return (head + tail)[2:].decode()
    raise AssertionError("no printable token found")


def test_a_hash_of_int32_min_goes_to_column_0_negative_as_in_feature_hasher():
    value = token_hashing_to_int32_min()
    assert sklearn_murmur(f"0={value}", positive=False) == -(2**31)
    for bits_ in (1, 4, 31):
        hasher = sklearn_hashing.FeatureHasher(n_features=2**bits_, input_type="dict")
        expected = hasher.transform([{"0": value}])
        got = both(f"{value}\n".encode(), delimiter=",", width=1, label=None,
                   categorical={0}, names=None, hash_bits=bits_)  # fmt: skip
        assert got.indices.tolist() == expected.indices.tolist() == [0]
        assert got.values.tolist() == expected.data.tolist() == [-1.0]


# ------------------------------------------------------------- against FeatureHasher


def expected_rows(text: bytes, *, delimiter, width, label, categorical, names, hash_bits):
    """Each line's (label, indices, values): its numeric columns (nonzero, not empty) then
    FeatureHasher's row of its categorical columns, shifted past them."""
    hasher = sklearn_hashing.FeatureHasher(n_features=2**hash_bits, input_type="dict")
    numeric = [c for c in range(width) if c != label and c not in categorical]
    rows = []
    for line in text.decode().splitlines():
        fields = line.split(delimiter)
        tokens = {
            names[c] if names else str(c): fields[c].strip()
            for c in sorted(categorical)
            if fields[c].strip()
        }
        hashed = hasher.transform([tokens])
        values = [float(fields[c]) if fields[c].strip() else 0.0 for c in numeric]
        index = [j for j, v in enumerate(values) if v != 0]
        rows.append((
            float(fields[label]) if label is not None else 0.0,
            index + (len(numeric) + hashed.indices).tolist(),
            np.concatenate([np.array(values)[index], hashed.data]),
        ))  # fmt: skip
    return rows


def assert_rows_equal(got: parse.SparseLines, rows) -> None:
    assert len(got.labels) == len(rows)
    for r, (label, index, values) in enumerate(rows):
        start, stop = got.indptr[r], got.indptr[r + 1]
        assert got.labels[r] == label
        assert got.indices[start:stop].tolist() == index, r
        assert bits(got.values[start:stop]) == bits(np.asarray(values, np.float64)), r


@pytest.fixture(scope="module")
def criteo_text(tmp_path_factory) -> bytes:
    path = tmp_path_factory.mktemp("criteo") / "day.tsv"
    criteo.write_criteo(path, 3000, seed=5, hex_vocab=300)
    return path.read_bytes()


@pytest.mark.parametrize("hash_bits", [4, 18, 20])
def test_criteo_rows_equal_feature_hashers(criteo_text, hash_bits):
    got = both(criteo_text, first_line=1, hash_bits=hash_bits, **CRITEO)
    assert_rows_equal(got, expected_rows(criteo_text, hash_bits=hash_bits, **CRITEO))
    assert got.numbers.tolist() == list(range(1, 3001)) and got.n_lines == 3000
    for r in range(len(got.labels)):
        row = got.indices[got.indptr[r] : got.indptr[r + 1]]
        assert np.all(np.diff(row) > 0)
    if hash_bits == 4:  # 26 tokens in 16 columns: collisions, some summing to 0
        assert np.any(np.abs(got.values) > 1.5) and np.any(got.values == 0)


CITIES = ["Zürich", "São Paulo", "Kyōto", "Oslo", "", "  ", "New York", "a=b", "x;y", "0"]


def header_csv(rows: int, seed: int) -> tuple[bytes, list[str]]:
    """A CSV with a header line (names with blanks around) and its names stripped."""
    rng = np.random.default_rng(seed)
    header = " y , age,city , score,colour"
    lines = [header]
    for _ in range(rows):
        age = rng.choice(["", "0", str(rng.integers(1, 90)), " 7 "])
        score = rng.choice(["", "-0.0", f"{rng.normal():.6g}", "1e-300", "2.5E3"])
        colour = rng.choice(["red", "green", "", "blue", "ß"])
        lines.append(f"{rng.integers(0, 2)},{age},{rng.choice(CITIES)},{score},{colour}")
    return ("\n".join(lines) + "\n").encode(), [n.strip() for n in header.split(",")]


@pytest.mark.parametrize("hash_bits", [4, 18, 20])
def test_a_csv_with_a_header_hashes_its_names_as_feature_hasher(hash_bits):
    text, names = header_csv(500, hash_bits)
    data = text[text.index(b"\n") + 1 :]
    how = {"delimiter": ",", "width": 5, "label": 0, "categorical": {2, 4}, "names": names}
    got = both(data, first_line=2, hash_bits=hash_bits, **how)
    assert_rows_equal(got, expected_rows(data, hash_bits=hash_bits, **how))
    assert got.numbers[0] == 2
    unstripped = both(data, first_line=2, hash_bits=hash_bits, **{**how, "names": [
        f" {n} " for n in names]})  # fmt: skip
    assert same(got, unstripped)


def test_without_a_label_the_labels_are_zero_and_every_other_column_a_feature():
    text = b"1,a,2\n0,,0\n"
    got = both(text, delimiter=",", width=3, label=None, categorical={1}, names=None, hash_bits=8)
    h = sklearn_murmur("1=a", positive=False)
    assert got.labels.tolist() == [0.0, 0.0]
    assert got.indptr.tolist() == [0, 3, 3]
    assert got.indices.tolist()[:2] == [0, 1] and got.indices[2] == 2 + abs(h) % 256


# ------------------------------------------------- the compiled parser is the reference

FIELDS = ["1", "0", "-2.5", "1e5", "", " ", " 3 ", "0.1", "-0", "1e-320", "12345678901234567890"]
ODD = ['"1"', '"a,b"', 'x"y', "inf", "nan", "1_0", "1e999", "abc", "\x0c", "\u0661", "1 2"]
TOKENS = ["a", "68fd1e64", "", " ", " b ", "é", "x=y", "日本", "\x00", "a\x0cb"]


@st.composite
def hashed_texts(draw):
    """A delimited text with its delimiter, width, label and categorical columns."""
    delimiter = draw(st.sampled_from([",", "\t", ";", "|", " "]))
    width = draw(st.integers(1, 6))
    label = draw(st.one_of(st.none(), st.integers(0, width - 1)))
    categorical = draw(st.sets(st.integers(0, width - 1).filter(lambda c: c != label)))
    lines = []
    for _ in range(draw(st.integers(0, 8))):
        if draw(st.integers(0, 7)) == 0:
            lines.append(draw(st.sampled_from(["", " ", "\t", " \r", "a\rb"])))
            continue
        count = width if draw(st.integers(0, 20)) else draw(st.integers(1, 7))
        odd = draw(st.integers(0, 12)) == 0
        fields = [
            draw(st.sampled_from((TOKENS if c in categorical else FIELDS) + (ODD if odd else [])))
            for c in range(count)
        ]
        lines.append(delimiter.join(fields))
    text = "".join(line + draw(st.sampled_from(["\n", "\r\n"])) for line in lines)
    if lines and draw(st.booleans()):
        text = text.rstrip("\r\n")
    return text.encode(), delimiter, width, label, categorical


@needs_compiled
@FUZZ
@given(hashed_texts(), st.integers(1, 10**6), st.sampled_from([1, 4, 20]), st.booleans())
def test_compiled_equals_the_reference(case, first_line, hash_bits, named):
    text, delimiter, width, label, categorical = case
    names = [f"c{i}" for i in range(width)] if named else None
    both(text, first_line=first_line, delimiter=delimiter, width=width, label=label,
         categorical=categorical, names=names, hash_bits=hash_bits)  # fmt: skip


@needs_compiled
@FUZZ
@given(st.binary(max_size=60), st.integers(1, 4))
def test_compiled_equals_the_reference_on_any_bytes(text, width):
    both(text, delimiter=",", width=width, label=0, categorical=set(range(1, width)),
         names=None, hash_bits=3)  # fmt: skip


@needs_compiled
@FUZZ
@given(st.text('01.,+-eE \t\r\n"xé', max_size=60), st.integers(1, 3))
def test_compiled_equals_the_reference_on_near_misses(text, width):
    both(text.encode(), delimiter=",", width=width, label=width - 1, categorical={0},
         names=None, hash_bits=2)  # fmt: skip


ODD_TEXT = (
    b'1,"a,b",2\r\n\n  \r\n0,c,"3"\n1,"",\n0,d,4\r\n1,\xff\xfe,5\n1,\xc3\xa9,6\n'
    b"1,\xed\xa0\x80,7\n0,e,8"
)


def test_odd_lines_are_read_alike_and_as_the_csv_module_reads_them():
    how = {"delimiter": ",", "width": 3, "label": 0, "categorical": {1}, "names": None}
    got = both(ODD_TEXT, hash_bits=20, **how)
    assert got.numbers.tolist() == [1, 4, 5, 6, 7, 8, 9, 10] and got.n_lines == 10
    tokens = ["a,b", "c", None, "d", "\ufffd\ufffd", "é", "\ufffd\ufffd\ufffd", "e"]
    for r, token in enumerate(tokens):
        row = got.indices[got.indptr[r] : got.indptr[r + 1]].tolist()
        hashed = [] if token is None else [1 + abs(sklearn_murmur(f"1={token}")) % 2**20]
        assert row[len(row) - len(hashed) :] == hashed, r


def test_hashed_rows_parsed_into_a_scratch_are_what_fresh_arrays_give(criteo_text):
    scratch = parse.Scratch()
    for text in (criteo_text, criteo_text[: len(criteo_text) // 3].rsplit(b"\n", 1)[0]):
        got = hashing.hashed_lines(
            text, path="f", first_line=1, hash_bits=10, into=scratch, **CRITEO
        )
        assert same(got, hashing.hashed_lines(text, path="f", first_line=1, hash_bits=10,
                                              **CRITEO))  # fmt: skip


@needs_compiled
def test_plain_lines_never_reach_the_reference(monkeypatch, criteo_text):
    calls = []
    reference = hashing._hashed_row
    monkeypatch.setenv("MPIGD_KERNELS", "compiled")
    monkeypatch.setattr(hashing, "_hashed_row", lambda *a: calls.append(a[1]) or reference(*a))
    hashing.hashed_lines(criteo_text, path="f", first_line=1, hash_bits=10, **CRITEO)
    assert calls == []
    how = {"delimiter": ",", "width": 2, "label": None, "categorical": {1}, "names": None}
    hashing.hashed_lines(b'1,a\n2,"b"\n3,c\r\n4,\xff\n', path="f", first_line=1, hash_bits=3, **how)
    assert calls == [2, 4]


def test_the_arrays_grow_past_their_first_guess():
    many = b"1,a,2\n" * 5000 + b'1,"b",3\n'
    got = both(many, delimiter=",", width=3, label=0, categorical={1}, names=None, hash_bits=4)
    assert len(got.labels) == 5001 and got.indptr[-1] == len(got.indices) == 10002
    wide = (",".join(["1"] * 3000) + "\n").encode() * 3
    got = both(wide, delimiter=",", width=3000, label=None, categorical={7}, names=None,
               hash_bits=4)  # fmt: skip
    assert got.indptr.tolist() == [0, 3000, 6000, 9000]


# ---------------------------------------------------------------------------- errors

ERRORS = [
    (b"1,a,2\n\n1,a\n", None, "f.csv: line 12 has 2 fields, expected 3"),
    (b"1,a,2\n1,a,2,3\n", None, "f.csv: line 11 has 4 fields, expected 3"),
    (b"1,a,x\n", None, "f.csv: line 10, column 3: 'x' is not a finite number"),
    (b"1,a, x \r\n", ["y", "c", "n"], "f.csv: line 10, column 3 ('n'): 'x' is not a finite number"),
    (b"1,a,2\n1,b,1e999\n", ["y", "c", "n"],
     "f.csv: line 11, column 3 ('n'): '1e999' is not a finite number"),
    (b" ,a,2\n", ["y", "c", "n"],
     "f.csv: line 10, column 1 ('y'): an empty field is not a finite number"),
    (b"nan,a,2\n", None, "f.csv: line 10, column 1: 'nan' is not a finite number"),
    (b'1,"a,2\n', None, "f.csv: line 10 has 2 fields, expected 3"),
    (b'1,"a"b"\rc,2\n', None, "f.csv: line 10 cannot be read ("),
]  # fmt: skip


@pytest.mark.parametrize(("text", "names", "message"), ERRORS)
def test_errors_name_the_line_and_column_alike_on_both_paths(text, names, message):
    got = both(text, first_line=10, delimiter=",", width=3, label=0, categorical={1},
               names=names, hash_bits=8)  # fmt: skip
    if message.endswith("("):  # the csv module's words follow, as this Python has them
        assert got.startswith(f"MpigdError: {message}") and got.endswith(")")
    else:
        assert got == f"MpigdError: {message}"


@pytest.mark.parametrize("hash_bits", [0, 32, -1, 64, True])
def test_hash_bits_out_of_range_are_refused(hash_bits):
    with pytest.raises(InvalidInputError, match="hash_bits"):
        hashing.hashed_lines(b"1,a\n", path="f", first_line=1, delimiter=",", width=2, label=0,
                           categorical={1}, names=None, hash_bits=hash_bits)  # fmt: skip


BAD_ARGUMENTS = [
    {"width": 0}, {"label": 2}, {"categorical": {0}}, {"categorical": {5}}, {"names": ["a"]},
    {"names": ["a", 1]}, {"delimiter": '"'}, {"delimiter": ",,"}, {"delimiter": "\n"},
]  # fmt: skip


@pytest.mark.parametrize("change", BAD_ARGUMENTS)
def test_arguments_that_do_not_fit_are_refused(change):
    how = {"delimiter": ",", "width": 2, "label": 0, "categorical": {1}, "names": None, **change}
    with pytest.raises(InvalidInputError):
        hashing.hashed_lines(b"1,a\n", path="f", first_line=1, hash_bits=4, **how)


def test_a_delimiter_the_compiled_parser_cannot_take_is_read_by_the_reference():
    got = both("1é2\n".encode(), delimiter="é", width=2, label=0, categorical={1},
               names=None, hash_bits=4)  # fmt: skip
    assert got.indices.tolist() == [abs(sklearn_murmur("1=2")) % 16]


# --------------------------------------------------------------- memory safety of C


@pytest.fixture
def text_module():
    if parse._text is None:
        pytest.skip(parse.why_not)
    return parse._text


def sparse_out(rows=4, pairs=12, **change):
    out = {
        "labels": np.empty(rows), "indptr": np.empty(rows, np.int64),
        "indices": np.empty(pairs, np.int64), "values": np.empty(pairs),
        "numbers": np.empty(rows, np.int64),
    }  # fmt: skip
    out.update(change)
    return tuple(out[k] for k in ("labels", "indptr", "indices", "values", "numbers"))


TEXT = b"1,a,2\n0,b,0\n"
LAYOUT = (",", b"ycx", (b"1=",), 4)
BAD_LAYOUTS = [
    ((",", b"yyx", (), 4), ValueError), ((",", b"ycq", (b"1=",), 4), ValueError),
    ((",", b"", (), 4), ValueError), ((",", b"ycx", (), 4), ValueError),
    ((",", b"ycx", (b"1=", b"2="), 4), ValueError), ((",", b"ycx", ("1=",), 4), TypeError),
    ((",", b"ycx", [b"1="], 4), TypeError), ((",", b"ycx", (b"1=",), 0), ValueError),
    ((",", b"ycx", (b"1=",), 32), ValueError), (("-", b"ycx", (b"1=",), 4), ValueError),
    (('"', b"ycx", (b"1=",), 4), ValueError), ((",", "ycx", (b"1=",), 4), TypeError),
]  # fmt: skip


@pytest.mark.parametrize(("layout", "error"), BAD_LAYOUTS)
def test_hashed_plain_refuses_a_layout_it_cannot_follow(text_module, layout, error):
    with pytest.raises(error):
        text_module.hashed_plain(TEXT, sparse_out(), 1, 0, *layout)


BAD_OUT = [
    {"labels": np.empty(4, np.float32)}, {"labels": np.empty(3)}, {"values": None},
    {"indices": np.empty(12)}, {"values": np.empty(11)}, {"numbers": np.empty(4, ">i8")},
    {"indptr": np.empty(8, np.int64)[::2]}, {"values": np.empty(12)[::-1]},
]  # fmt: skip


@pytest.mark.parametrize("change", BAD_OUT)
def test_hashed_plain_refuses_outputs_it_cannot_fill(text_module, change):
    with pytest.raises((TypeError, ValueError)):
        text_module.hashed_plain(TEXT, sparse_out(**change), 1, 0, *LAYOUT)
    with pytest.raises(TypeError):
        text_module.hashed_plain(TEXT, list(sparse_out()), 1, 0, *LAYOUT)
    with pytest.raises(ValueError):
        text_module.hashed_plain(TEXT, sparse_out(), 1, -1, *LAYOUT)


def test_hashed_plain_stops_before_a_line_that_does_not_fit(text_module):
    assert text_module.hashed_plain(TEXT, sparse_out(rows=0), 1, 0, *LAYOUT) == (0, 0, 0, 0, 2)
    assert text_module.hashed_plain(TEXT, sparse_out(pairs=2), 1, 0, *LAYOUT) == (0, 0, 0, 0, 2)
    out = sparse_out(pairs=3)
    assert text_module.hashed_plain(TEXT, out, 7, 10, *LAYOUT) == (6, 1, 2, 1, 2)
    assert out[1][0] == 12 and out[4][0] == 7 and out[2][:2].tolist()[0] == 0
    assert text_module.hashed_plain(TEXT, sparse_out(), 1, 0, *LAYOUT) == (12, 2, 3, 2, 0)
    assert text_module.hashed_plain(b'1,"a",2\n', sparse_out(), 1, 0, *LAYOUT)[4] == 1


def test_hashed_plain_grows_its_token_buffer_for_long_tokens(text_module):
    long = "x" * 100_000
    got = both(f"1,{long}\n1,{long}y\n".encode(), delimiter=",", width=2, label=0,
               categorical={1}, names=["y", "n" * 300], hash_bits=31)  # fmt: skip
    hashes = [sklearn_murmur(f"{'n' * 300}={v}") for v in (long, long + "y")]
    assert got.indices.tolist() == [abs(h) % 2**31 for h in hashes]


# ------------------------------------------------------------------ Criteo-like files

CRITEO_LINE = re.compile(rb"[01](\t[0-9]*){13}(\t([0-9a-f]{8})?){26}\n")


def test_write_criteo_writes_criteos_layout(tmp_path):
    path = tmp_path / "day.tsv"
    criteo.write_criteo(path, 2500, seed=3, hex_vocab=50)
    lines = path.read_bytes().splitlines(keepends=True)
    assert len(lines) == 2500
    assert all(CRITEO_LINE.fullmatch(line) for line in lines)
    fields = np.array([line.rstrip(b"\n").split(b"\t") for line in lines])
    assert not any(f.startswith(b"0") and len(f) > 1 for f in fields[:, 1:14].ravel())
    empty = fields == b""
    assert empty[:, 1:].any(axis=0).sum() > 20 and not empty[:, 0].any()
    labels = fields[:, 0].astype(int)
    assert 0.1 < labels.mean() < 0.5
    assert len(set(fields[:, 14].tolist())) <= 50


def test_write_criteo_is_the_same_for_a_seed_block_after_block(tmp_path, monkeypatch):
    criteo.write_criteo(tmp_path / "a.tsv", 300, seed=7)
    criteo.write_criteo(tmp_path / "b.tsv", 300, seed=7)
    criteo.write_criteo(tmp_path / "c.tsv", 300, seed=8)
    criteo.write_criteo(tmp_path / "d.tsv", 0)
    a = (tmp_path / "a.tsv").read_bytes()
    assert a == (tmp_path / "b.tsv").read_bytes() != (tmp_path / "c.tsv").read_bytes()
    assert (tmp_path / "d.tsv").read_bytes() == b""
    monkeypatch.setattr(criteo, "BLOCK_ROWS", 128)
    criteo.write_criteo(tmp_path / "e.tsv", 300, seed=7)
    e = (tmp_path / "e.tsv").read_bytes()
    assert e.count(b"\n") == 300 and e != a  # each block its own stream
    with pytest.raises(InvalidInputError):
        criteo.write_criteo(tmp_path / "f.tsv", -1)


def test_a_logistic_model_learns_from_a_criteo_like_file(tmp_path):
    linear_model = pytest.importorskip("sklearn.linear_model")
    metrics = pytest.importorskip("sklearn.metrics")
    sparse = pytest.importorskip("scipy.sparse")
    path = tmp_path / "day.tsv"
    criteo.write_criteo(path, 20000, seed=1, hex_vocab=200)
    got = hashing.hashed_lines(path.read_bytes(), path=path, first_line=1, hash_bits=14, **CRITEO)
    X = sparse.csr_matrix((got.values, got.indices, got.indptr), shape=(20000, 13 + 2**14))
    X.data = np.sign(X.data) * np.log1p(np.abs(X.data))  # the counts are heavy-tailed
    model = linear_model.LogisticRegression(C=0.1, max_iter=300).fit(X[:15000], got.labels[:15000])
    auc = metrics.roc_auc_score(got.labels[15000:], model.decision_function(X[15000:]))
    assert auc > 0.7
