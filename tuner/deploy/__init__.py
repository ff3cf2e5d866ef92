"""From a chosen trial to a running endpoint.

- `promote`: choose a trial (the policy of `tuner.front.selection`), rebuild its configuration
  with the same `suggest()` that proposed it, write the Ray Serve config.
- `rollout`: deploy it to a Serve cluster, verify it under the trial's load, roll back to the
  previous promotion when it falls short; the promotion history on the study.
- `approval`: `promote --require-approval`, a request in NAME.approvals with the dashboard's
  form, waited on until a person approves or rejects it.

May import: `serving` (the Serve config, the deploy client, the V2 client), the study's read-back,
`tuner.front`, `tuner.search`, `tuner.spec`, `tuner.evaluators` (the served level's client plan)
and the vocabulary. Never `ray` itself
(serving/ does the Ray work), and nothing below imports this package.
"""
