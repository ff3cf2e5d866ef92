"""Running trials. The seam the study loop sees is `base.Runner`; `trial.RayRunner` implements it on
a Ray cluster and `local.LocalRunner` in this process.

This is the only package of tuner that imports Ray (besides serving/), and only in `cluster`,
`pool` and `trial`: `base`, `local` and `cores` import no Ray, and this file imports nothing.
Served trials deploy through `serving.trial_serve` (the Ray Serve calls live there).
"""
