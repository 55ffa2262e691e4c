"""The local passes: what one rank computes over its own rows, with no communication.

:mod:`~mpigd.kernels.losses` holds the pointwise losses, :mod:`~mpigd.kernels.dense` the
row-block sums over dense X, :mod:`~mpigd.kernels.theta` the parameter layout.
"""
