"""A trained model on data spread over ranks: :mod:`~mpigd.evaluation.metrics` combines
per-rank scores into metrics by reductions; :mod:`~mpigd.evaluation.scoring` reads the
rows and writes the metrics or a prediction file."""
