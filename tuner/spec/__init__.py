"""The user's files: the search space (`space`, its parameters in `params`), how trials are timed
and loaded (`measurement`), and reading a file with errors that give file:line (`load`,
`yaml_lines`).

May import: the vocabulary at the top of `tuner` (config, metrics, cluster_info, errors), pydantic
and PyYAML. Never Optuna or Ray (a test checks it): the search space is data; `tuner.search`
turns it into Optuna suggestions. This file imports nothing, so `tuner.spec.measurement` works
on a machine without pydantic.
"""
