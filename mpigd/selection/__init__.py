"""Model selection: k-fold cross-validation along a penalty path at about the price of
one fit. :mod:`~mpigd.selection.folds` derives each fold model's weights and scaling,
:mod:`~mpigd.selection.objective` evaluates every fold model in one sweep and one
``Allreduce``, :mod:`~mpigd.selection.path` runs the path and chooses the penalty."""
