"""Scaling benchmarks: :mod:`~mpigd.bench.measure` times one run under MPI and writes its
record; :mod:`~mpigd.bench.report` aggregates records into tables, a model and plots."""
