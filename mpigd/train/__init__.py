"""Training: :mod:`~mpigd.train.options` checks the options and picks the optimiser,
:mod:`~mpigd.train.driver` runs data -> objective -> optimiser -> model on every rank,
:mod:`~mpigd.train.checkpoint` and :mod:`~mpigd.train.preemption` let a long run stop and
continue."""
