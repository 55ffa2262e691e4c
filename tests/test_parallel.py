"""The MPI helpers' pure parts; their collective behaviour is tested under mpiexec."""

import pytest

from mpigd.errors import MpigdError
from mpigd.parallel import _parse_bytes, agree


class Gathered:
    """Stands in for a communicator whose ranks passed ``messages`` to ``allgather``."""

    def __init__(self, messages):
        self.messages, self.size = messages, len(messages)

    def allgather(self, mine):
        return self.messages


def agreed_message(messages):
    with pytest.raises(MpigdError) as info:
        agree(Gathered(messages), None)
    return str(info.value)


def test_no_error_anywhere_raises_nothing():
    agree(Gathered([None, None, None]), None)


def test_the_same_error_everywhere_names_no_rank():
    assert agreed_message(["bad file"] * 3) == "bad file"


def test_errors_on_some_ranks_name_them():
    assert agreed_message([None, "NaN", None, "NaN"]) == "NaN (on ranks 1, 3)"
    assert agreed_message(["a", "b", None]) == "a (on rank 0); b (on rank 1)"
    many = agreed_message(["x"] * 10 + [None])
    assert many == "x (on ranks 0, 1, 2, 3, 4, 5, 6, 7 and 2 more)"


@pytest.mark.parametrize(
    "text, value",
    [("512", 512), ("4K", 4096), ("1.5G", 1.5 * 2**30), ("2GiB", 2 * 2**30), ("3m", 3 * 2**20)],
)
def test_memory_sizes(text, value):
    assert _parse_bytes(text) == value
