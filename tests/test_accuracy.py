"""Fidelity must be able to fail where top-1 agreement cannot."""

from __future__ import annotations

import numpy as np

from tuner.models.accuracy import fidelity, fidelity_details, top1_accuracy


def test_fidelity_is_one_for_identical_outputs_and_drops_with_error() -> None:
    rng = np.random.default_rng(0)
    ref = rng.standard_normal((64, 10))
    assert fidelity(ref, ref) == 1.0
    small = fidelity(ref + 0.01 * rng.standard_normal(ref.shape), ref)
    large = fidelity(ref + 0.5 * rng.standard_normal(ref.shape), ref)
    assert 0.98 < small < 1.0 and large < small


def test_fidelity_sees_damage_that_top1_agreement_hides() -> None:
    """Outputs dominated by one constant (random-weight nets): every input predicts class 0."""
    rng = np.random.default_rng(1)
    common = np.zeros(1000)
    common[0] = 100.0
    signal = 0.1 * rng.standard_normal((64, 1000))
    ref = common + signal
    damaged = common + signal + 0.1 * rng.standard_normal((64, 1000))  # noise as big as the signal
    details = fidelity_details(damaged, ref)
    assert details["top1_agreement_raw"] == 1.0          # measures nothing
    assert details["relative_l2_error_raw"] < 0.05       # looks harmless
    assert fidelity(damaged, ref) < 0.2                  # but the input-dependent part is gone


def test_top1_accuracy() -> None:
    logits = np.array([[0.1, 0.9], [0.8, 0.2], [0.3, 0.7]])
    assert top1_accuracy(logits, np.array([1, 0, 0])) == 2 / 3
