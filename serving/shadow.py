"""The fp32 shadow of a replica: accuracy in production (``tuner promote --shadow-fraction F``).

A replica that serves an fp16 or int8 variant also runs a sampled share F of its live instances
through the fp32 variant (a second ONNX Runtime session on ``user_config.shadow_model_path``, on
the CPU with 1 intra-op thread) and compares the two. An instance *agrees* when the argmax over
the last axis of the served model's first output equals fp32's (top-1 agreement; for a first
output with more axes than (instances, classes), at every position). Two counters record it
(`serving.metrics`): instances compared and instances that agreed; agreed / compared is the
served precision's fidelity to fp32 on live traffic, which ``tuner watch`` reads.

Off the request's critical path: the replica offers a batch after its results are computed
(`Shadow.offer`: only the sampling draws run on the event loop, no copy), and one background
task compares the sampled batches one at a time in a worker thread (`asyncio.to_thread`),
recording the counters back on the event loop. At most `MAX_PENDING_BATCHES` sampled batches
wait; past that, samples are dropped (`dropped_instances`, logged once), so a shadow that falls
behind costs samples, never memory or latency. An exception in the shadow is logged once and
its batch is not counted; it never reaches a request.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import random
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import onnxruntime as ort

from serving.args import ServeSettings
from serving.model import ORT_TYPES
from tuner.errors import TunerError, field_error
from tuner.models.sessions import session_options

__all__ = ["MAX_PENDING_BATCHES", "Shadow", "shadow_for", "top1_agreement"]

logger = logging.getLogger("ray.serve")

#: Sampled batches that may wait for the shadow; more are dropped (the shadow fell behind).
MAX_PENDING_BATCHES = 16

Tensors = dict[str, np.ndarray]
#: (requests, their results, per request the indices of the sampled instances)
_Sample = tuple[Sequence[Tensors], Sequence[Tensors], list[np.ndarray]]


def top1_agreement(served: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Per instance, whether the served output's top-1 equals the reference's.

    Args:
        served: the served model's first output, (instances, ..., classes).
        reference: fp32's first output for the same instances, the same shape.

    Returns:
        (instances,) bool: argmax over the last axis equal at every other position.

    Raises:
        ValueError: the shapes differ, or there is no class axis (fewer than 2 dims).
    """
    if served.shape != reference.shape or served.ndim < 2:
        raise ValueError(f"Cannot compare top-1 of outputs shaped {served.shape} (served) and {reference.shape} "
                         "(fp32): they need the same shape, (instances, ..., classes).")
    same = np.argmax(served, axis=-1) == np.argmax(reference, axis=-1)
    return same.reshape(len(same), -1).all(axis=1)


class Shadow:
    """The fp32 session of one replica and its sampling.

    Args:
        model_path: absolute path of the fp32 .onnx file.
        fraction: share of instances compared, in (0, 1].
        input_names: the served model's inputs (the fp32 model must take the same).
        batch_size: most instances per fp32 call.
        record: called on the event loop with (instances compared, instances agreed) per batch.
        rng: the sampling draws (seed it in tests); default: a new unseeded one.

    Raises:
        TunerError: the file is missing or its inputs differ from the served model's.
    """

    def __init__(self, model_path: str, fraction: float, input_names: Sequence[str], batch_size: int,
                 record: Callable[[int, int], None], rng: random.Random | None = None) -> None:
        if not Path(model_path).is_file():
            raise field_error("user_config.shadow_model_path", model_path, "The fp32 model file does not exist on "
                              "this node.", "Re-run tuner tune with the same --model to rebuild the variants, or "
                              "promote without --shadow-fraction.")
        self.model_path, self.fraction, self.batch_size = model_path, fraction, batch_size
        self.rng = rng or random.Random()
        self._record = record
        self._session = ort.InferenceSession(model_path, session_options(1), providers=["CPUExecutionProvider"])
        names = sorted(i.name for i in self._session.get_inputs())
        if names != sorted(input_names):
            raise TunerError(f"The fp32 model {model_path} (user_config.shadow_model_path) takes inputs {names}, the "
                             f"served model {sorted(input_names)}: it is not the same model. Point shadow_model_path "
                             "at the fp32 variant of the served model (tuner promote --shadow-fraction writes it).")
        self._dtypes = {i.name: ORT_TYPES[i.type] for i in self._session.get_inputs()}
        self._output = self._session.get_outputs()[0].name
        self._pending: collections.deque[_Sample] = collections.deque()
        self._task: asyncio.Task[None] | None = None
        self._failed_logged = self._dropped_logged = False
        self.compared_instances = self.agreed_instances = self.dropped_instances = 0

    def offer(self, requests: Sequence[Tensors], results: Sequence[Tensors], served_output: str) -> None:
        """Sample a computed batch for comparison (call on the event loop, after the results are ready).

        Args:
            requests: the batch's requests, input name -> (instances, ...) array.
            results: their results, output name -> (instances, ...) array.
            served_output: the served model's first output.
        """
        try:
            self._sample(requests, results, served_output)
        except Exception:  # never a request's problem
            self._log_failure()

    def _log_failure(self) -> None:
        if not self._failed_logged:
            self._failed_logged = True
            logger.exception("The fp32 shadow failed; its batch is not counted (logged once).")

    def _sample(self, requests: Sequence[Tensors], results: Sequence[Tensors], served_output: str) -> None:
        picks = []
        for request in requests:
            n = len(next(iter(request.values())))
            picks.append(np.arange(n) if self.fraction >= 1 else
                         np.array([i for i in range(n) if self.rng.random() < self.fraction], dtype=np.intp))
        sampled = sum(len(p) for p in picks)
        if sampled == 0:
            return
        if len(self._pending) >= MAX_PENDING_BATCHES:
            self.dropped_instances += sampled
            if not self._dropped_logged:
                self._dropped_logged = True
                logger.warning("The fp32 shadow falls behind: sampled instances are dropped, not queued "
                               "(lower --shadow-fraction to compare fewer). Logged once.")
            return
        self._pending.append((requests, [{served_output: r[served_output]} for r in results], picks))
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._drain_pending())

    async def drain(self) -> None:
        """Wait until every pending sample is compared and counted (for tests and shutdown)."""
        while self._task is not None and not self._task.done():
            await self._task

    async def _drain_pending(self) -> None:
        while self._pending:
            sample = self._pending.popleft()
            try:
                compared, agreed = await asyncio.to_thread(self._compare, *sample)
                self.compared_instances += compared
                self.agreed_instances += agreed
                self._record(compared, agreed)
            except Exception:  # never a request's problem: logged once, the batch not counted
                self._log_failure()

    def _compare(self, requests: Sequence[Tensors], results: Sequence[Tensors],
                 picks: list[np.ndarray]) -> tuple[int, int]:
        """(instances compared, instances agreed) of one sampled batch; runs in a worker thread."""
        kept = [i for i, p in enumerate(picks) if len(p)]
        feeds = {name: np.concatenate([requests[i][name][picks[i]] for i in kept]).astype(dtype, copy=False)
                 for name, dtype in self._dtypes.items()}
        served = np.concatenate([next(iter(results[i].values()))[picks[i]] for i in kept])
        total = len(served)
        reference = np.concatenate([
            self._session.run([self._output], {n: a[start:start + self.batch_size] for n, a in feeds.items()})[0]
            for start in range(0, total, self.batch_size)])
        return total, int(top1_agreement(served, reference).sum())


def shadow_for(settings: ServeSettings, current: Shadow | None, input_names: Sequence[str],
               record: Callable[[int, int], None]) -> Shadow | None:
    """The replica's shadow under `settings`: None when the fraction is 0; `current`, its fraction and
    batch size updated, when the fp32 file is the same (the session is loaded once); else a new one."""
    if settings.shadow_fraction <= 0 or settings.shadow_model_path is None:
        return None
    if current is not None and current.model_path == settings.shadow_model_path:
        current.fraction, current.batch_size = settings.shadow_fraction, settings.batch_size
        return current
    return Shadow(settings.shadow_model_path, settings.shadow_fraction, input_names, settings.batch_size, record)
