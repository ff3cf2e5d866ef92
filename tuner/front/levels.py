"""Which trials' figures may stand in one front: figures of one measurement level only.

An engine-level figure (ONNX Runtime timed in a bench actor) is far above what the serving stack
delivers for a small model, so a served figure beside it is always dominated. Once a study holds
served figures (a served study, or an engine study whose finalists were re-measured served),
its front and promote's choice are over served trials; engine-only trials drop out until they
are served. FPGA estimates stay where they are (labelled ESTIMATED; the measured front leaves
them out).
"""

from __future__ import annotations

from collections.abc import Sequence

from tuner.record import TrialRecord


def has_served(records: Sequence[TrialRecord]) -> bool:
    """Whether any measured trial has served figures."""
    return any(r.level == "served" and r.metrics is not None for r in records)


def comparable(records: Sequence[TrialRecord]) -> list[TrialRecord]:
    """`records` without engine-level trials when served ones exist."""
    if not has_served(records):
        return list(records)
    return [r for r in records if r.level != "engine"]
