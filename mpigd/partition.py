"""Which rows each rank owns: a pure function, no communication."""


def block_range(n_rows: int, size: int, rank: int) -> tuple[int, int]:
    """Half-open row range ``[start, stop)`` owned by ``rank`` of ``size``.

    Contiguous blocks whose lengths differ by at most one row; the ``n_rows % size``
    remainder rows go to the lowest ranks. With ``size > n_rows`` the highest ranks
    get empty ranges.

    Collective: no.

    Parameters
    ----------
    n_rows : int
        Global number of rows, ``>= 0``.
    size : int
        Number of ranks, ``>= 1``.
    rank : int
        This rank, ``0 <= rank < size``.

    Returns
    -------
    (start, stop) : tuple of int
    """
    if n_rows < 0 or size < 1 or not 0 <= rank < size:
        raise ValueError(f"invalid partition: n_rows={n_rows}, size={size}, rank={rank}")
    base, extra = divmod(n_rows, size)
    start = rank * base + min(rank, extra)
    return start, start + base + (rank < extra)
