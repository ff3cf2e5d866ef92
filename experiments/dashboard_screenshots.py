"""What a person sees in optuna-dashboard after a study, in a real headless browser.

Starts `tuner dashboard` on the storage, opens the study list and the pages of the search study
and its companions (NAME.measured, NAME.estimated) in headless Chromium driven by Playwright,
saves full-page screenshots, and checks, through the dashboard's own HTTP API, what the pictures
should make plain: feasible vs infeasible trials, measured vs estimated ones, and that the
Pareto set drawn for NAME.measured is tuner's measured front with the finalists' medians.

    python experiments/dashboard_screenshots.py --study digits-cnn [--storage URL] [--out DIR]

Needs Debian's chromium (apt-get install -y chromium) and Playwright (pip install ".[screenshots]";
it drives /usr/bin/chromium, so `playwright install` is not needed). Writes DIR/*.png and
DIR/facts.json, and prints the facts.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import requests

RESULTS = Path(__file__).resolve().parent / "results" / "dashboard"
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync"]


def start_dashboard(storage: str, port: int) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-m", "tuner", "dashboard", "--storage", storage, "--port", str(port)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"tuner dashboard exited:\n{proc.stdout.read() if proc.stdout else ''}")
        try:
            if requests.get(f"http://127.0.0.1:{port}/api/meta", timeout=2).status_code == 200:
                return proc
        except requests.RequestException:
            time.sleep(0.3)
    raise SystemExit("tuner dashboard did not answer within 60 s")


def api_facts(base: str, name: str, storage: str) -> tuple[dict[str, int], dict]:
    """Study ids by name, and what the API says about each study."""
    from tuner.front.selection import measured_front
    from tuner.study.readback import study_record
    from tuner.study.storage import load_study

    studies = {s["study_name"]: s["study_id"] for s in requests.get(f"{base}/api/studies", timeout=10).json()[
        "study_summaries"]}
    facts: dict = {"studies": sorted(studies)}
    for key in (name, f"{name}.measured", f"{name}.estimated"):
        if key not in studies:
            raise SystemExit(f"The dashboard lists no study {key!r} (it lists {sorted(studies)}). Run tuner tune "
                             "with this tuner first: it writes the companions at its end.")
        d = requests.get(f"{base}/api/studies/{studies[key]}", timeout=60).json()
        done = [t for t in d["trials"] if t["state"] == "Complete"]
        first = [t["note"]["body"].split(" ", 1)[0] for t in done if t["note"]["body"]]
        facts[key] = {
            "complete": len(done),
            "feasible": sum(bool(t["constraints"]) and all(v <= 0 for v in t["constraints"]) for t in done),
            "infeasible": sum(any(v > 0 for v in t["constraints"]) for t in done),
            "no_constraints": sum(not t["constraints"] for t in done),
            "note_first_words": {w: first.count(w) for w in sorted(set(first))},
            "objective_names": d.get("objective_names"),
            "artifacts": [a["filename"] for a in d.get("artifacts", [])],
        }
        report = [a["artifact_id"] for a in d.get("artifacts", []) if a["filename"] == "report.html"]
        if key == name and report:
            facts[key]["report_url"] = f"/artifacts/{studies[key]}/{report[0]}"
        if key == f"{name}.measured":
            drawn = sorted(int(_attr(t, "search_trial")) for t in d["best_trials"])
            record = study_record(load_study(name, storage))
            tuner_front = sorted(r.number for r in measured_front(record.trials, record.objectives))
            medians = {int(_attr(t, "search_trial")): t["values"][0] for t in d["trials"]
                       if str(_attr(t, "figures")).startswith("median")}
            facts[key] |= {"dashboard_pareto_set": drawn, "tuner_measured_front": tuner_front,
                           "same": drawn == tuner_front, "finalist_medians_plotted_rps": medians,
                           "finalist_medians_tuner_rps": {r.number: r.metrics.throughput_rps for r in record.trials
                                                          if r.remeasured and r.metrics}}
    return studies, facts


def _attr(trial: dict, key: str):
    return next((a["value"] for a in trial["user_attrs"] if a["key"] == key), None)


def shoot(base: str, pages: dict[str, str], out: Path) -> dict[str, str]:
    """Full-page screenshots of `pages` (file stem -> path under the dashboard)."""
    from playwright.sync_api import sync_playwright

    browser_path = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser_path is None:
        raise SystemExit("No chromium found. Install it: apt-get install -y chromium")
    shots = {}
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=browser_path, headless=True, args=FLAGS)
        page = browser.new_page(viewport={"width": 1500, "height": 1000})
        for stem, path in pages.items():
            page.goto(base + path, wait_until="networkidle")
            if "/studies/" in path and not path.endswith(("/note", "/trials")):
                page.wait_for_selector(".js-plotly-plot", timeout=60_000)
            page.wait_for_timeout(2500)  # plotly's transitions
            png = out / f"{stem}.png"
            page.screenshot(path=str(png), full_page=not path.endswith("/trials"))  # that page scrolls sideways
            shots[stem] = png.name
        browser.close()
    return shots


def approve_in_browser(base: str, storage: str, study: str, approver: str, out: Path) -> dict:
    """`tuner promote --require-approval` (writing a Serve config, not deploying), approved by
    clicking the form on its request in the browser, as a person would; what promote printed."""
    import tempfile

    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory(prefix="approval-") as tmp:
        promote = subprocess.Popen([sys.executable, "-m", "tuner", "promote", "--study", study, "--storage", storage,
                                    "--out", str(Path(tmp) / "serve.yaml"), "--require-approval",
                                    "--approval-timeout-s", "300"], stdout=subprocess.PIPE,
                                   stderr=subprocess.STDOUT, text=True)
        try:
            request = _wait_request(base, f"{study}.approvals", promote)
            with sync_playwright() as p:
                browser = p.chromium.launch(executable_path=shutil.which("chromium"), headless=True, args=FLAGS)
                page = browser.new_page(viewport={"width": 1500, "height": 1000})
                page.goto(f"{base}/dashboard/studies/{request['study_id']}/trials?numbers={request['number']}",
                          wait_until="networkidle")
                page.get_by_text("Set User Attributes Form").wait_for(timeout=60_000)
                page.wait_for_timeout(1000)
                page.screenshot(path=str(out / "5_approval_request.png"), full_page=True)
                page.get_by_label("Approve").check()
                boxes = page.locator("input[type=text]")
                boxes.nth(0).fill(approver)
                boxes.nth(1).fill("screenshots of the front checked")
                page.wait_for_timeout(1200)  # the form's text fields settle after 500 ms
                page.get_by_role("button", name="Submit").click()
                code = promote.wait(timeout=60)
                page.wait_for_timeout(3000)  # the dashboard reads a study's trials again after 2 s
                page.reload(wait_until="networkidle")
                page.wait_for_timeout(1500)
                page.screenshot(path=str(out / "6_approval_decided.png"), full_page=True)
                browser.close()
        finally:
            if promote.poll() is None:
                promote.terminate()
        printed = promote.stdout.read() if promote.stdout else ""
    return {"promote_exit": code, "promote_said": [line for line in printed.splitlines()
                                                   if line.startswith(("promoted", "awaiting", "APPROVED", "REJECTED",
                                                                       "wrote"))]}


def _wait_request(base: str, name: str, promote: subprocess.Popen, timeout_s: float = 120) -> dict:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if promote.poll() is not None:
            raise SystemExit(f"promote ended before asking:\n{promote.stdout.read() if promote.stdout else ''}")
        studies = requests.get(f"{base}/api/studies", timeout=10).json()["study_summaries"]
        found = next((s for s in studies if s["study_name"] == name), None)
        if found:
            trials = requests.get(f"{base}/api/studies/{found['study_id']}", timeout=30).json()["trials"]
            ready = [t for t in trials if t["state"] == "Running" and t["note"]["body"].startswith("**AWAITING")]
            if ready:
                return ready[-1]
        time.sleep(0.5)
    raise SystemExit(f"no approval request in {name} after {timeout_s} s")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--study", default="digits-cnn", help="the search study (default digits-cnn)")
    parser.add_argument("--storage", default="sqlite:///tuner.db", help="Optuna storage URL (default sqlite:///tuner.db)")
    parser.add_argument("--out", type=Path, default=RESULTS, help=f"folder for the PNGs and facts.json (default {RESULTS})")
    parser.add_argument("--port", type=int, default=8093, help="port for the dashboard (default 8093)")
    parser.add_argument("--approve-as", default=None, metavar="NAME",
                        help="also run promote --require-approval (writing a Serve config, no deploy) and approve it "
                             "by clicking the dashboard's form as NAME; screenshots before and after")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    proc = start_dashboard(args.storage, args.port)
    base = f"http://127.0.0.1:{args.port}"
    try:
        ids, facts = api_facts(base, args.study, args.storage)
        search = f"/dashboard/studies/{ids[args.study]}"
        pages = {"1_study_list": "/dashboard", "2_search_study": search, "2b_search_note": f"{search}/note",
                 "2c_search_trials": f"{search}/trials",
                 "3_measured_companion": f"/dashboard/studies/{ids[args.study + '.measured']}",
                 "4_estimated_companion": f"/dashboard/studies/{ids[args.study + '.estimated']}"}
        if "report_url" in facts[args.study]:  # what the study page's report.html artifact opens
            pages["7_report_from_dashboard"] = facts[args.study]["report_url"]
        facts["screenshots"] = shoot(base, pages, args.out)
        if args.approve_as:
            facts["approval"] = approve_in_browser(base, args.storage, args.study, args.approve_as, args.out)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    (args.out / "facts.json").write_text(json.dumps(facts, indent=1) + "\n")
    print(json.dumps(facts, indent=1))
    measured = facts[f"{args.study}.measured"]
    if not measured["same"]:
        print("MISMATCH: the dashboard's Pareto set of the measured companion is not tuner's measured front")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
