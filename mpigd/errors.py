"""The one exception type that means "the user's input is wrong", not "mpigd is broken"."""


class MpigdError(Exception):
    """A problem with the input, the options or the environment.

    The command line reports it as a single line from rank 0 and exits with status 2.
    Code that raises it under MPI must raise it on every rank (see ``parallel.agreed``),
    otherwise the ranks that did not raise would wait in the next collective.
    """
