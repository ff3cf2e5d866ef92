"""The study: `tuner tune` from model to front, and the one-configuration commands beside it.

- `tune`: prepare the model, start the cluster, open the study, run the loop, re-measure the
  finalists; `open`: create or continue the study, warm start, the record of each run.
- `loop`: ask -> run -> tell, with trials in parallel, reuse of measured configurations, the
  failure cap and heartbeats; it sees the runner only through `tuner.runner.base.Runner`.
- `outcome`: what a trial's measurement becomes (metrics, constraints, attributes);
  `readback`: a study read back as `tuner.record` records; `finalists`: repeated measurements.
- `storage`: SQLite / PostgreSQL with retries; `dashboard`: optuna-dashboard on it;
  `dashboard_view`: a trial's feasibility and note, the study's note; `companions`: the
  studies NAME.measured and NAME.estimated beside each search; `artifacts`: the store the
  report is uploaded to.
- `measure` and `estimate`: one configuration without a study (`tuner measure`, `tuner estimate`).
- `memory`: peak memory of a run; `interrupts`: Ctrl-C / SIGTERM that cannot be lost.

May import: Optuna, every package below it (`spec`, `search`, `front`, `evaluators`,
`costmodels`, `models`, `runner`) and the vocabulary. Never `serving`, `deploy` or `cli`.
"""
