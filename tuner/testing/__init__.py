"""What tuner ships for testing evaluators, the way Optuna ships `optuna.testing`:

- `contract`: the checks every evaluator must pass, as plain functions raising
  `ContractViolation` (numpy only: experiments/gpu_check.py runs them on a bare GPU machine);
- `pytest_evaluators`: the same checks as pytest test classes to subclass, one per kind of
  evaluator (tests/test_evaluator_contract.py runs them over cpu, fpga and the GPU bench).

May import: `tuner.evaluators` and the vocabulary. Nothing in tuner imports this package.
"""
