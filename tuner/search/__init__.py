"""The search: how a search space becomes Optuna trials, and which configuration to try next.

- `suggest`: `suggest` (a trial -> TrialConfig), `enumerate_configs` (the grid), `params_for`
  (a config -> its params); one search space, the same answer everywhere.
- `samplers`: the `--sampler` choices; `structured` is tuner's default sampler, driven by the
  speed model of `surrogate` and the `context` known before the first trial.
- `seeds`: the start configurations for Optuna's own samplers; `stopping`: --timeout-s and
  --patience.

May import: Optuna, `tuner.spec`, `tuner.front` and the vocabulary. Never Ray, the runners or
the study loop.
"""
