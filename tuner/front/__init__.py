"""The Pareto front and the choice from it. Pure and small: numbers and records in, answers out.

- `pareto`: non-dominated sorting of objective vectors.
- `hypervolume`: exact hypervolume (up to three objectives) and normalisation.
- `selection`: the promotion policies (cheapest, fastest, lowest-latency, knee) over
  `tuner.record.TrialRecord`s.

May import: the vocabulary at the top of `tuner` (metrics, record, errors). Never Optuna, Ray,
or anything that does I/O.
"""
