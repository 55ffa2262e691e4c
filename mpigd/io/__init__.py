"""Data in and out, in bounded memory.

Reading for training: :mod:`~mpigd.io.dataset` checks a file's layout and reads one
rank's hyperslab of rows; :mod:`~mpigd.io.rows` is the collective loader on top.
Writing: :mod:`~mpigd.io.outputs` (checks and atomic writes of every output). The data
tools: :mod:`~mpigd.io.convert` (with the readers :mod:`~mpigd.io.text` and
:mod:`~mpigd.io.arrays` and their :mod:`~mpigd.io.source` record),
:mod:`~mpigd.io.split`, :mod:`~mpigd.io.info` and :mod:`~mpigd.io.synthetic`. The
command line imports each tool when it runs, so training never loads the readers.
"""

#: What ``data convert`` reads.
FORMATS = ("csv", "tsv", "libsvm", "npy", "npz")
