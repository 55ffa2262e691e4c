"""Delimited text with categorical columns, read by the hashing trick, as scikit-learn's
``FeatureHasher(input_type="dict", alternate_sign=True)`` and Vowpal Wabbit read them: the
numeric columns first, then each categorical value's token ``NAME=VALUE`` hashed (signed
32-bit MurmurHash3, seed 0) into one of 2**B columns with the hash's sign.

As :mod:`~mpigd.io.parse`: the compiled parser (``_text.c``) reads plain lines and the
reference here (pure Python, :func:`murmurhash3_32`) reads the others, bit for bit alike.
Pure, no MPI.
"""

from __future__ import annotations

import csv
import math
import operator
import struct
from dataclasses import dataclass

import numpy as np

from ..errors import InvalidInputError, MpigdError
from .parse import (
    PLAIN_DELIMITERS,
    bytes_of,
    check_delimiter,
    compiled_parser,
    read_compiled,
    read_reference,
)
from .parsed import Scratch, SparseLines, sparse_rows

_MASK32 = 0xFFFFFFFF


def _rotl32(x: int, r: int) -> int:
    return ((x << r) | (x >> (32 - r))) & _MASK32


def _murmur_block(k: int) -> int:
    return (_rotl32((k * 0xCC9E2D51) & _MASK32, 15) * 0x1B873593) & _MASK32


def murmurhash3_32(data: bytes, seed: int = 0) -> int:
    """MurmurHash3 x86_32 (Austin Appleby's public-domain algorithm) of the bytes of
    ``data`` (bytes-like; a str is a TypeError), ``0 <= seed < 2**32``, as a signed 32-bit
    integer: ``sklearn.utils.murmurhash3_32(data, seed, positive=False)``, whose 4-byte
    blocks are read little-endian as on x86. The reference of the compiled hash in
    ``_text.c``. Collective: no."""
    data = memoryview(data).cast("B").tobytes()
    if not 0 <= operator.index(seed) <= _MASK32:
        raise InvalidInputError(f"seed {seed}: need 0 <= seed < 2**32")
    h, blocks = seed, len(data) // 4 * 4
    for (k,) in struct.iter_unpack("<I", data[:blocks]):
        h = (_rotl32(h ^ _murmur_block(k), 13) * 5 + 0xE6546B64) & _MASK32
    if len(data) > blocks:
        h ^= _murmur_block(int.from_bytes(data[blocks:], "little"))
    h ^= len(data) & _MASK32
    h = ((h ^ (h >> 16)) * 0x85EBCA6B) & _MASK32
    h = ((h ^ (h >> 13)) * 0xC2B2AE35) & _MASK32
    h ^= h >> 16
    return h - (1 << 32) if h >> 31 else h


@dataclass(frozen=True)
class _Hashing:
    """How :func:`hashed_lines` reads each field: ``kinds`` one byte a field, ``y`` the
    label, ``x`` a number, ``c`` a category; ``prefixes`` the UTF-8 ``"NAME="`` of each
    category in order; ``heads`` the same by column (None for the others)."""

    path: object
    delimiter: str
    kinds: bytes
    prefixes: tuple[bytes, ...]
    heads: tuple[bytes | None, ...]
    names: list[str] | None
    n_numbers: int
    hash_bits: int


def _check_hashing(width: int, label, categorical: set[int], names, hash_bits) -> None:
    """An :class:`~mpigd.errors.InvalidInputError` for arguments of :func:`hashed_lines`
    that do not fit together."""
    if width < 1 or not all(0 <= c < width for c in categorical | ({label} - {None})):
        raise InvalidInputError(f"width {width}: the label and categorical columns must be in it")
    if label in categorical:
        raise InvalidInputError(f"column {label} cannot be both the label and categorical")
    if names is not None and (len(names) != width or not all(isinstance(n, str) for n in names)):
        raise InvalidInputError(f"names: need {width} strings, one a field")
    if isinstance(hash_bits, bool) or not 1 <= operator.index(hash_bits) <= 31:
        raise InvalidInputError(f"hash_bits {hash_bits}: need 1 <= hash_bits <= 31")


def _hashing(path, delimiter, width, label, categorical, names, hash_bits) -> _Hashing:
    """The :class:`_Hashing` of :func:`hashed_lines`'s arguments, checked."""
    check_delimiter(delimiter)
    width, label = operator.index(width), None if label is None else operator.index(label)
    categorical = {operator.index(c) for c in categorical}
    _check_hashing(width, label, categorical, names, hash_bits)
    names = None if names is None else [n.strip() for n in names]
    kinds = bytearray(b"x" * width)
    for c in categorical:
        kinds[c] = ord("c")
    if label is not None:
        kinds[label] = ord("y")
    heads = tuple(
        f"{names[c] if names else c}=".encode() if k == ord("c") else None
        for c, k in enumerate(kinds)
    )
    prefixes = tuple(h for h in heads if h is not None)
    n_numbers = kinds.count(b"x")
    how = (bytes(kinds), prefixes, heads, names, n_numbers, operator.index(hash_bits))
    return _Hashing(path, delimiter, *how)


def _fields(path, number: int, line: str, delimiter: str, width: int) -> list[str] | None:
    """The fields of one line (its ``"\\n"`` or ``"\\r\\n"`` off): split at the delimiter,
    or read by the csv module where the line holds a ``"``; None for a line of blanks."""
    body = line[:-2] if line.endswith("\r\n") else line.removesuffix("\n")
    if not body.strip(" \t"):
        return None
    if '"' not in body:
        fields = body.split(delimiter)
    else:
        try:
            fields = next(csv.reader([body], delimiter=delimiter, quotechar='"'), [])
        except csv.Error as error:
            raise MpigdError(f"{path}: line {number} cannot be read ({error})") from None
    if len(fields) != width:
        raise MpigdError(f"{path}: line {number} has {len(fields)} fields, expected {width}")
    return fields


def _finite(how: _Hashing, number: int, column: int, field: str) -> float:
    """``float(field)``, or the error naming the line and column where it is not finite."""
    try:
        value = float(field)
    except ValueError:
        value = math.nan
    if math.isfinite(value):
        return value
    name = f" ({how.names[column]!r})" if how.names else ""
    what = repr(field.strip(" \t")) if field.strip(" \t") else "an empty field"
    raise MpigdError(
        f"{how.path}: line {number}, column {column + 1}{name}: {what} is not a finite number"
    )


def _hashed_row(how: _Hashing, number: int, line: str):
    """The reference reading of one hashed CSV line: ``(label, indices, values)``, or None
    for a line of blanks."""
    fields = _fields(how.path, number, line, how.delimiter, len(how.kinds))
    if fields is None:
        return None
    label, index, value, hashed, numbers = 0.0, [], [], {}, 0
    for column, (kind, field) in enumerate(zip(how.kinds, fields, strict=True)):
        text = field.strip(" \t")
        if kind == ord("y"):
            label = _finite(how, number, column, field)
        elif kind == ord("x"):
            x = _finite(how, number, column, field) if text else 0.0
            if x != 0:
                index.append(numbers)
                value.append(x)
            numbers += 1
        elif text:
            h = murmurhash3_32(how.heads[column] + text.encode())
            at = how.n_numbers + abs(h) % (1 << how.hash_bits)
            hashed[at] = hashed.get(at, 0.0) + (-1.0 if h < 0 else 1.0)
    index += sorted(hashed)
    value += [hashed[at] for at in sorted(hashed)]
    return label, np.array(index, dtype=np.int64), np.array(value, dtype=np.float64)


def hashed_lines(
    buf,
    *,
    path,
    first_line: int,
    delimiter: str,
    width: int,
    label: int | None,
    categorical: frozenset[int] | set[int],
    names: list[str] | None,
    hash_bits: int,
    into: Scratch | None = None,
) -> SparseLines:
    """The data lines of ``buf``, whole lines of delimited text numbered from
    ``first_line``, as CSR rows with the categorical columns hashed, exactly as
    scikit-learn's ``FeatureHasher(n_features=2**hash_bits, input_type="dict",
    alternate_sign=True)`` hashes them.

    Each line holds ``width`` fields (a line with a ``"`` is read by the :mod:`csv`
    module, any other split at ``delimiter``); a line of spaces and tabs only gives no row
    but is counted. Column ``label`` (None: no label, the labels are 0) is a finite
    number as :class:`float` reads it. The other columns not in ``categorical`` are
    numeric features, output columns 0 .. k - 1 in file order; sparse output: a field of
    blanks (a missing value) and a value of 0 store nothing. Each categorical field that
    is not blank gives the token ``f"{NAME}={value}"`` (value without its surrounding
    spaces and tabs; NAME ``names[column]`` stripped, or the column's 0-based index
    without ``names``); its signed :func:`murmurhash3_32` ``h`` over the UTF-8 bytes puts
    ``-1`` (``h < 0``) or ``+1`` at output column ``k + abs(h) % 2**hash_bits``. Tokens of
    a row that land on one column add up, and a sum of 0 stays stored (as
    ``FeatureHasher``, whose ``sum_duplicates`` keeps explicit zeros), so a row's indices
    after the k numeric ones and their values equal ``FeatureHasher``'s row exactly. Each
    row's ``indices`` increase strictly. Two categorical columns of one name give a token
    each (as FeatureHasher given ``"pair"`` input; a dict would keep only one of them).

    A line with another number of fields, or a label or nonblank numeric field that is not
    a finite number, is an :class:`~mpigd.errors.MpigdError` naming ``path``, the line and
    the column (1-based, and its name in ``names``); a bad argument (``hash_bits`` outside
    1 .. 31 included) an :class:`~mpigd.errors.InvalidInputError`. With ``into`` (a
    :class:`~mpigd.io.parsed.Scratch`), the rows are views of its arrays. Collective: no."""
    text, first_line = bytes_of(buf), operator.index(first_line)
    how = _hashing(path, delimiter, width, label, categorical, names, hash_bits)
    out = sparse_rows(len(text), True, into)
    parser = compiled_parser()
    parser = parser if delimiter in PLAIN_DELIMITERS else None

    def row_of(number: int, line: str):
        return _hashed_row(how, number, line)

    layout = (delimiter, how.kinds, how.prefixes, how.hash_bits)

    def plain(rest, number: int):
        consumed, rows, pairs, lines, status = parser.hashed_plain(
            rest, out.room(), number, out.n_pairs, *layout
        )
        out.wrote(rows, pairs)
        return consumed, lines, status

    if parser is None:
        return out.result(read_reference(text, first_line, out, row_of))
    return out.result(read_compiled(text, first_line, out, plain, row_of))
