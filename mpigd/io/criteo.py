"""A made-up click log in Criteo's layout: the README's worked example without a download.

Criteo's display-advertising logs (the Kaggle 2014 set, the 1 TB log) are tab-separated
text without a header, a line a shown ad: the label (1: clicked), 13 integer count
columns and 26 categorical columns of 8-hex-digit tokens, any of the 39 possibly empty.
:func:`write_criteo` writes a file of that layout whose labels depend on a few counts and
on the tokens of a few columns, so that a logistic model trained on it (the categorical
columns hashed) learns something. Pure, no MPI.
"""

from __future__ import annotations

import operator
import os

import numpy as np
from scipy.special import expit

from ..errors import InvalidInputError, MpigdError
from .outputs import check_outputs, space_problem, writing

N_COUNTS, N_CATEGORIES = 13, 26
#: How often each count and each categorical column is empty (about as in Criteo's log).
COUNT_MISSING = (0.45, 0.0, 0.2, 0.2, 0.03, 0.22, 0.04, 0.0, 0.04, 0.45, 0.04, 0.77, 0.2)
CATEGORY_MISSING = (0.0, 0.0, 0.03, 0.03, 0.0, 0.12, 0.0, 0.0, 0.0, 0.0, 0.0, 0.03, 0.0, 0.0,
                    0.0, 0.03, 0.0, 0.0, 0.44, 0.44, 0.03, 0.76, 0.0, 0.03, 0.44, 0.44)  # fmt: skip
#: The columns the label depends on: counts (weight on log1p of the count) and categories
#: (a hidden weight per token).
SIGNAL_COUNTS, SIGNAL_CATEGORIES = (0, 2, 4), (0, 5, 8, 13, 16)
COUNT_WEIGHT, TOKEN_SCALE, BIAS = 0.15, 0.8, -1.6
#: Rows drawn per random-number stream, each seeded by ``(seed, 1, block index)``: the
#: file's content depends on the seed only. Also the rows formatted at a time.
BLOCK_ROWS = 1 << 16
FIELD_BYTES = 9  # the widest field, 8 hex digits or digits of a count, and its separator
COUNT_MAX = 10**8 - 1  # counts have at most 8 digits
BYTES_PER_ROW = 250  # about: 240 with the default missing rates
HEX_DIGITS = np.frombuffer(b"0123456789abcdef", np.uint8)
#: The bytes of a field of each length: the last ``length`` before the separator, and it.
KEEP = np.arange(FIELD_BYTES) >= FIELD_BYTES - 1 - np.arange(FIELD_BYTES)[:, None]


def write_criteo(path: str | os.PathLike, rows: int, seed: int = 0, *, hex_vocab: int = 1000):
    """Write ``rows`` lines of a Criteo-like TSV to ``path``, atomically, the same for one
    ``seed``: a label 0/1, 13 non-negative integer counts (heavy-tailed), 26 tokens of 8
    lowercase hex digits (each column its own ``hex_vocab`` tokens, Zipf-like popularity),
    fields empty at about Criteo's rates, no header, ``"\\n"`` line ends. The label is
    ``Bernoulli(expit(z))`` with ``z`` a bias plus a hidden weight for each token of a few
    columns and a weight on ``log1p`` of a few counts (about 30% of the labels are 1).
    Memory use is one block of 65,536 rows, whatever ``rows`` is. Collective: no (call
    on one rank)."""
    if operator.index(rows) < 0 or operator.index(hex_vocab) < 1:
        raise InvalidInputError(f"need rows >= 0 and hex_vocab >= 1, got {rows}, {hex_vocab}")
    check_outputs({"the output": path})
    problem = space_problem(path, rows * BYTES_PER_ROW, "Criteo-like file")
    if problem:
        raise MpigdError(problem)
    vocab, weights = _hidden(seed, hex_vocab)
    with writing(path) as tmp, open(tmp, "wb") as f:
        for block, start in enumerate(range(0, rows, BLOCK_ROWS)):
            rng = np.random.default_rng([seed, 1, block])
            f.write(_block_text(rng, min(BLOCK_ROWS, rows - start), vocab, weights))


def _hidden(seed: int, hex_vocab: int) -> tuple[np.ndarray, np.ndarray]:
    """The tokens, their 8 hex digits as one uint64 each (26, hex_vocab), and the hidden
    weight of each token (26, hex_vocab), zero outside the signal columns."""
    rng = np.random.default_rng([seed, 0])
    codes = rng.integers(0, 2**32, (N_CATEGORIES, hex_vocab), dtype=np.uint64)
    shifts = np.arange(28, -1, -4, dtype=np.uint64)
    vocab = HEX_DIGITS[(codes[..., None] >> shifts) & np.uint64(15)].view(np.uint64)[..., 0]
    weights = np.zeros((N_CATEGORIES, hex_vocab))
    signal = list(SIGNAL_CATEGORIES)
    weights[signal] = rng.normal(0, TOKEN_SCALE, (len(signal), hex_vocab))
    return vocab, weights


def _block_text(rng, n: int, vocab: np.ndarray, weights: np.ndarray) -> bytes:
    """``n`` lines drawn with ``rng``. Token j of a column comes with probability
    ``log((j + 2) / (j + 1)) / log(hex_vocab + 1)``, about ``1 / (j + 1.5)`` times as
    often as token 0 (Zipf-like)."""
    counts = np.minimum(rng.lognormal(1.0, 1.6, (n, N_COUNTS)), COUNT_MAX).astype(np.int32)
    has_count = rng.random((n, N_COUNTS)) >= np.array(COUNT_MISSING)
    span = np.log(vocab.shape[1] + 1.0)
    tokens = np.exp(rng.random((n, N_CATEGORIES)) * span).astype(np.int64) - 1
    tokens = np.clip(tokens, 0, vocab.shape[1] - 1)  # exp may round up at the top
    has_token = rng.random((n, N_CATEGORIES)) >= np.array(CATEGORY_MISSING)
    signal = counts[:, SIGNAL_COUNTS] * has_count[:, SIGNAL_COUNTS]
    z = BIAS + COUNT_WEIGHT * np.log1p(signal).sum(axis=1)
    z += (weights[np.arange(N_CATEGORIES), tokens] * has_token).sum(axis=1)
    labels = rng.random(n) < expit(z)
    digits, lengths = _fields(labels, counts, has_count, vocab[np.arange(N_CATEGORIES), tokens])
    lengths[:, 1 + N_COUNTS :] *= has_token
    return _joined(digits, lengths)


def _fields(labels, counts, has_count, hex_tokens):
    """The bytes of every field of the rows, right-aligned in the first FIELD_BYTES - 1
    and followed by a tab (a newline after the last), (n, 40, FIELD_BYTES) uint8, and
    their lengths (n, 40) (0 for an empty count; the tokens' 8 whatever they hold)."""
    n = len(labels)
    digits = np.zeros((n, 1 + N_COUNTS + N_CATEGORIES, FIELD_BYTES), np.uint8)
    lengths = np.full((n, 1 + N_COUNTS + N_CATEGORIES), 8, np.int64)
    digits[:, :, -1] = ord("\t")
    digits[:, -1, -1] = ord("\n")
    digits[:, 0, -2], lengths[:, 0] = ord("0") + labels, 1
    width = np.ones_like(counts)
    for place in range(FIELD_BYTES - 1):  # the digit of 10**place, while a count has one
        digits[:, 1 : 1 + N_COUNTS, -2 - place] = ord("0") + counts % 10
        counts = counts // 10
        width += counts > 0
        if not counts.any():
            break
    lengths[:, 1 : 1 + N_COUNTS] = width * has_count
    digits[:, 1 + N_COUNTS :, :-1] = hex_tokens.view(np.uint8).reshape(n, N_CATEGORIES, 8)
    return digits, lengths


def _joined(digits: np.ndarray, lengths: np.ndarray) -> bytes:
    """The lines: of each field its last ``length`` bytes before the separator, then the
    separator."""
    return digits[KEEP[lengths]].tobytes()
