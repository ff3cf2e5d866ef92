"""`tuner watch` on real parts: a real tune (two served trials of digits-cnn), promote --deploy of
the slower one, a real client at a low rate and then above its capacity, Ray's real metrics
endpoint. Issue 19's criterion: the overload is reported within 15 s and names a configuration
that fits; with --apply the switch fails no request and the overload verdict clears."""

from __future__ import annotations

import queue
import threading
import time
from pathlib import Path

import optuna
import pytest

from serving.loadgen import drive_background
from tuner.models.spec import InputSpec

from helpers import free_port, start_tuner, stop, tuner

pytestmark = pytest.mark.integration

# Two configurations, batch 1 and batch 16 (step 15), one replica of one thread each. Served
# trials of them measured 741 and 1,640 inf/s on a quiet machine, 1,122 and 1,426 late in a CI run:
# both near the HTTP proxy's ceiling here, so the gap between them is real but not wide.
SPACE = """
platforms:
  cpu:
    precision: {type: categorical, choices: [fp32]}
    batch_size: {type: int, low: 1, high: 16, step: 15}
    replicas: {type: int, low: 1, high: 1}
    threads_per_replica: {type: int, low: 1, high: 1}
measurement: {warmup_s: 0.2, window_s: 0.5, min_windows: 3, max_windows: 5, target_requests: 300}
"""
INPUTS = [InputSpec("x", (1, 8, 8), "float32")]


def trials(work: Path) -> dict[int, optuna.trial.FrozenTrial]:
    study = optuna.load_study(study_name="digits-cnn", storage=f"sqlite:///{work}/tuner.db")
    return {t.user_attrs["config"]["batch_size"]: t for t in study.trials if "throughput_rps" in t.user_attrs}


class Lines:
    """A process's output lines as they come, each with the monotonic time it arrived."""

    def __init__(self, proc) -> None:
        self.all: list[tuple[float, str]] = []
        self._queue: queue.Queue[tuple[float, str]] = queue.Queue()
        threading.Thread(target=self._read, args=(proc,), daemon=True).start()

    def _read(self, proc) -> None:
        for line in proc.stdout:
            self._queue.put((time.monotonic(), line.rstrip()))

    def text(self, settle_s: float = 1.0) -> str:
        """Every line so far, once the process is done (the reader has `settle_s` to drain it)."""
        time.sleep(settle_s)
        while not self._queue.empty():
            self.all.append(self._queue.get())
        return "\n".join(line for _, line in self.all)

    def wait_for(self, text: str, timeout_s: float, after: float = 0.0) -> tuple[float, str] | None:
        deadline = time.monotonic() + timeout_s
        for at, line in self.all:
            if at >= after and text in line:
                return at, line
        while time.monotonic() < deadline:
            try:
                at, line = self._queue.get(timeout=0.2)
            except queue.Empty:
                continue
            self.all.append((at, line))
            if at >= after and text in line:
                return at, line
        return None


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory):
    w = tmp_path_factory.mktemp("watch")
    (w / "space.yaml").write_text(SPACE)
    for attempt in range(3):
        out = tuner(w, "tune", "--trials", "2", "--sampler", "grid", "--space", "space.yaml", "--finalists", "0")
        assert out.returncode == 0, out.stdout + out.stderr
        rates = {b: t.user_attrs["throughput_rps"] for b, t in trials(w).items()}
        if rates[16] > rates[1] or attempt == 2:
            break  # after the last attempt the test's own assertion says what was measured
        # The tests need b16 measured above b1 (the gap is real but narrow here, and a CI run's
        # dip once measured b16 at 562 inf/s against b1's 849): measure both again, in a new study.
        print(f"attempt {attempt + 1}: b16 {rates[16]:,.0f} inf/s <= b1 {rates[1]:,.0f} inf/s; measuring again")
        (w / "tuner.db").unlink()
    yield w
    tuner(w, "undeploy", timeout=180)


def test_watch_reports_an_overload_names_what_fits_and_applies_it_without_a_failed_request(work: Path) -> None:
    by_batch = trials(work)
    small, big = by_batch[1], by_batch[16]
    print(f"trial #{small.number} b1: {small.user_attrs['throughput_rps']:,.0f} inf/s; "
          f"trial #{big.number} b16: {big.user_attrs['throughput_rps']:,.0f} inf/s")
    # What watch needs to offer a switch: a configuration measured to serve more than the promoted one.
    assert big.user_attrs["throughput_rps"] > small.user_attrs["throughput_rps"], \
        "the test needs a configuration that serves more than the promoted one"
    port = free_port()
    out = tuner(work, "promote", "--study", "digits-cnn", "--trial", str(small.number), "--out", "serve.yaml",
                "--port", str(port), "--deploy", "--verify-s", "0")
    assert out.returncode == 0, out.stdout + out.stderr
    watch = start_tuner(work, "watch", "--study", "digits-cnn", "--interval-s", "2", "--apply",
                        "--out", "applied.yaml", "--duration-s", "120")
    lines = Lines(watch)
    base = f"http://127.0.0.1:{port}"
    try:
        assert lines.wait_for("watching trial", 30), lines.all
        # A low rate: a fifth of what the promoted trial measured.
        with drive_background(base, "digits-cnn", INPUTS, "server", 1,
                              target_rps=0.2 * small.user_attrs["throughput_rps"]) as low:
            t_low = time.monotonic()
            assert lines.wait_for("ok:", 20, after=t_low + 2), lines.all
            low_result = low.stop()
        assert not [line for _, line in lines.all if "OVERLOAD" in line], lines.all
        # Above capacity: 8 requests always in flight, 4x the 2 a batch-1 replica takes at once.
        with drive_background(base, "digits-cnn", INPUTS, "offline", 1, concurrency=8) as high:
            t_high = time.monotonic()
            overload = lines.wait_for("OVERLOAD", 15, after=t_high)
            assert overload is not None, lines.all
            assert f"#{big.number} " in overload[1], overload  # names the configuration that fits
            applied = lines.wait_for(f"applying: promoting trial #{big.number} ", 10, after=t_high)
            assert applied is not None, lines.all
            cleared = lines.wait_for("ok:", 45, after=applied[0] + 1)
            assert cleared is not None, lines.all
            time.sleep(2)
            high_result = high.stop()
    finally:
        output = stop(watch)
    for at, line in lines.all:
        print(f"{at - t_low:6.1f} s  {line}")
    print(output)
    print(f"low load: {low_result.summary()}\nhigh load: {high_result.summary()}")
    print(f"overload reported {overload[0] - t_high:.1f} s after the load rose; cleared "
          f"{cleared[0] - applied[0]:.1f} s after the switch")
    assert low_result.requests_failed == 0 and high_result.requests_failed == 0, \
        (high_result.failed_by_status, high_result.errors_sample)
    study = optuna.load_study(study_name="digits-cnn", storage=f"sqlite:///{work}/tuner.db")
    assert study.user_attrs["promotions"][-1]["trial"] == big.number and study.user_attrs["promotions"][-1]["active"]


def test_watch_retunes_at_the_observed_rate_when_nothing_in_the_study_serves_more(work: Path) -> None:
    """After the switch above the fastest configuration of the study serves; a heavier load
    overloads it too, and --retune starts a warm-started study in server mode at the inferred demand."""
    port = int(optuna.load_study(study_name="digits-cnn", storage=f"sqlite:///{work}/tuner.db")
               .user_attrs["promotions"][-1]["serve_config"]["http_options"]["port"])
    watch = start_tuner(work, "watch", "--study", "digits-cnn", "--interval-s", "2", "--retune", "--retune-trials", "1",
                        "--out", "retune.yaml", "--duration-s", "60")
    lines = Lines(watch)
    with drive_background(f"http://127.0.0.1:{port}", "digits-cnn", INPUTS, "offline", 1, concurrency=96) as load:
        retuning = lines.wait_for("retuning for ", 40)
        load.stop()  # the new study measures on a machine without this load
    assert retuning is not None, lines.all
    rc = watch.wait(timeout=600)
    out = lines.text()
    print(out[-3000:])
    assert rc == 0, out
    assert "OVERLOAD" in out
    names = [s.study_name for s in optuna.get_all_study_summaries(f"sqlite:///{work}/tuner.db")]
    retuned = [n for n in names if n.startswith("digits-cnn-retune-") and "." not in n]  # not its companions
    assert len(retuned) == 1, names
    study = optuna.load_study(study_name=retuned[0], storage=f"sqlite:///{work}/tuner.db")
    rate = float(retuning[1].split("retuning for ")[1].split(" inf/s")[0].replace(",", ""))
    assert study.user_attrs["load"]["mode"] == "server" and study.user_attrs["load"]["target_rps"] == pytest.approx(rate, abs=1)
    # The first warm-started configuration ran at that rate (measured, or infeasible when it cannot serve
    # it); the other stays enqueued for a longer rerun of the study.
    assert [t.state.name for t in study.trials] == ["COMPLETE", "WAITING"], out
    assert "warm start: " in out and "(server load)" in out, out
