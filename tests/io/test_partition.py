import pytest

from mpigd.partition import block_range, rows_per_block


@pytest.mark.parametrize("n_rows", [0, 1, 2, 3, 7, 10, 11, 100, 1009])
@pytest.mark.parametrize("size", [1, 2, 3, 4, 5, 8, 13, 64])
def test_blocks_cover_every_row_once_in_order(n_rows, size):
    ranges = [block_range(n_rows, size, rank) for rank in range(size)]
    rows = [i for start, stop in ranges for i in range(start, stop)]
    assert rows == list(range(n_rows))
    lengths = [stop - start for start, stop in ranges]
    assert max(lengths) - min(lengths) <= 1
    assert lengths == sorted(lengths, reverse=True)  # remainder rows on the low ranks


def test_more_ranks_than_rows_gives_empty_blocks_to_high_ranks():
    assert [block_range(3, 5, r) for r in range(5)] == [(0, 1), (1, 2), (2, 3), (3, 3), (3, 3)]


def test_rank_3_of_5():
    assert block_range(23, 5, 3) == (15, 19)  # blocks 5, 5, 5, 4, 4


@pytest.mark.parametrize("args", [(-1, 2, 0), (10, 0, 0), (10, 2, 2), (10, 2, -1)])
def test_invalid_arguments(args):
    with pytest.raises(ValueError):
        block_range(*args)


@pytest.mark.parametrize(
    ("row_bytes", "block_bytes", "n_rows", "expected"),
    [
        (8 * 64, 2**21, None, 4096),  # 2 MiB of 64 float64 features
        (8 * 10**7, 2**21, None, 1),  # a row wider than a block: still one row
        (0, 100, None, 100),  # no bytes per row: the block's byte count, never a division by 0
        (8, 2**20, 10, 10),  # at most the rows there are
        (8, 2**20, 0, 1),  # and at least one
    ],
)
def test_rows_per_block(row_bytes, block_bytes, n_rows, expected):
    assert rows_per_block(row_bytes, block_bytes, n_rows) == expected
