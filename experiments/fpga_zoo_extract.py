"""Extract AMD's published DPU figures for every board of tuner/catalog/fpga_devices.yaml.

    python experiments/fpga_zoo_extract.py                      # -> tuner/catalog/fpga_published.csv
    python experiments/fpga_zoo_extract.py --repo /path/to/Vitis-AI.git --out /tmp/pub.csv
    python experiments/fpga_zoo_extract.py --extras 3           # also list models we lack (>= 3 boards)

Reads the "Performance on ..." tables of the Model Zoo README of a Vitis-AI git directory with
`git show TAG:PATH` (no work tree needed). One table per catalog device, the one matching the
device's `description` (SELECTION below). Kept: the models our model zoo builds (PREFIXES, see
MODEL_ARCHS in tuner/costmodels/fpga/calibration.py), not their pruned or other-resolution variants.

Columns: lat_ms only where the table's latency is a 1-thread latency (Thread Num = 1); any other
latency is mentioned in thread_note only. dpu_mhz is the row's "DPU Frequency" column where the
table has one, else the clock of the section's DPU configuration sentence. The ids of the rows of
tuner/catalog/fpga_calibration.csv are kept (their figures are checked); new rows get ids from 100.
aws-f1 has no published table (no "Performance on" section of any tag names AWS or F1).
"""

from __future__ import annotations

import argparse
import csv
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_REPO = "/work/.mirror/Xilinx+Vitis-AI/repo"
README = {"v1.4": "models/AI-Model-Zoo/README.md", "v1.4.1": "models/AI-Model-Zoo/README.md",
          "v2.0": "models/AI-Model-Zoo/README.md", "v2.5": "model_zoo/README.md"}
# device -> (tag, section title, text that picks the section's table from its sentence)
SELECTION = {
    "zcu102": ("v2.0", "Performance on ZCU102 (0432055-05)", "3 * B4096"),
    "zcu104": ("v2.0", "Performance on ZCU104", "2 * B4096"),
    "kv260": ("v2.0", "Performance on Kria KV260 SOM", "1 * B4096F"),
    "u50": ("v1.4", "Performance on U50", "6 DPUCAHX8H kernels"),
    "u50lv": ("v2.0", "Performance on U50lv", "10 DPUCAHX8H kernels"),
    "u55c": ("v2.0", "Performance on U55C DWC", "11 DPUCAHX8H DWC kernels"),
    "u280": ("v1.4", "Performance on U280", "14 DPUCAHX8H kernels"),
    "u200": ("v2.0", "Performance on U200", "DPUCADF8H"),
    "u250": ("v2.0", "Performance on U250", "DPUCADF8H"),
    # v2.5: the C32B6 build (6 batch handlers, 192 AIEs) the catalog describes; its README still says
    # "96 AIEs" but its figures are about twice v2.0's (the C32B3 build). v2.5 has the tf_ models only.
    "vck190": ("v2.5", "Performance on VCK190", "96 AIEs"),
    "vck5000": ("v2.0", "Performance on VCK5000", "8PE@350"),
}
# Model Zoo name prefixes (framework_arch_dataset_resolution) of the architectures we build.
PREFIXES = ["cf_resnet50_imagenet_224", "cf_resnet18_imagenet_224", "cf_inceptionv1_imagenet_224",
            "cf_mobilenetv2_imagenet_224", "cf_squeezenet_imagenet_227", "cf_squeeze_imagenet_227",
            "dk_yolov3_voc_416", "tf_inceptionv1_imagenet_224", "tf_inceptionv3_imagenet_299",
            "tf_mobilenetv1_1.0_imagenet_224", "tf_resnetv1_50_imagenet_224", "tf_vgg16_imagenet_224"]
# (device, model) -> why a published row is left out (typos in the tables). None in the tables used;
# U250's DPUCADX8G table (not used) has Inception_v2 at "23221" fps.
EXCLUDE: dict[tuple[str, str], str] = {}
COLUMNS = ["id", "device", "board", "dpu_config", "model", "gop_per_img", "dpu_mhz", "lat_ms",
           "fps_1thr", "fps_multi", "thread_note", "source"]
FIGURES = ["gop_per_img", "dpu_mhz", "lat_ms", "fps_1thr", "fps_multi"]


def git_show(repo: str, tag: str, path: str) -> str:
    return subprocess.run(["git", "-C", repo, "show", f"{tag}:{path}"], check=True,
                          capture_output=True, text=True).stdout


def short_commit(repo: str, tag: str) -> str:
    return subprocess.run(["git", "-C", repo, "rev-parse", "--short=10", f"{tag}^{{commit}}"],
                          check=True, capture_output=True, text=True).stdout.strip()


def cells(line: str) -> list[str]:
    return [c.strip().replace("\\", "") for c in line.strip().strip("|").split("|")]


def read_tables(text: str) -> dict[str, list[tuple[str, list[str], list[list[str]]]]]:
    """Section title -> [(sentence, header, rows)] of every 'The following table ...' table."""
    sections: dict[str, list] = {}
    title, sentence, lines = None, None, iter(text.splitlines())
    for line in lines:
        if line.startswith("#"):
            title, sentence = line.lstrip("#").strip(), None
        elif line.startswith("The following table") and title:
            sentence = line.strip()
            while not sentence.endswith(":") and (more := next(lines, "").strip()):
                sentence += " " + more
        elif line.startswith("|") and sentence and title:
            header, rows = cells(line), []
            for row in lines:
                if not row.startswith("|"):
                    break
                if not set(row) <= set("|-: "):
                    rows.append(cells(row))
            sections.setdefault(title, []).append((sentence, header, rows))
            sentence = None
    return sections


def dpu_config(sentence: str) -> str:
    """'... board with a `3 * B4096  @ 281MHz` DPU configuration:' -> '3 x B4096 @ 281MHz'."""
    text = sentence.split(" board with ", 1)[1].rstrip(":").replace("`", "")
    text = re.sub(r"^an? |\s*DPU configuration$", "", text).replace(" * ", " x ")
    return " ".join(text.split())


def section_mhz(config: str) -> str:
    return re.search(r"(?:@|at)\s*([\d.]+)\s*MHz", config, re.I).group(1)


def column(header: list[str], *words: str) -> int | None:
    found = [i for i, h in enumerate(header) if all(w.lower() in h.lower() for w in words)]
    return found[0] if found else None


def value(row: list[str], i: int | None) -> str:
    return "" if i is None or row[i] in ("", "-", "NA") else row[i]


def ours(name: str) -> re.Match | None:
    """The GOPs of a model of PREFIXES at its own resolution, not pruned: (prefix)_(res)_(GOPs)."""
    m = re.fullmatch(r"(.+)_(\d+)_([\d.]+)([GM])", name)
    return m if m and m.group(1) in PREFIXES else None


def extract(repo: str, device: str) -> tuple[list[dict], list[list[str]]]:
    tag, title, pick = SELECTION[device]
    section = read_tables(git_show(repo, tag, README[tag]))[title]
    tables = [t for t in section if pick in t[0]]
    assert len(tables) == 1, f"{device}: {len(tables)} tables of {tag} '{title}' match {pick!r}"
    sentence, header, rows = tables[0]
    config = dpu_config(sentence)
    i_name, i_mhz = column(header, "name"), column(header, "frequency")
    i_lat, i_1, i_n = column(header, "latency"), column(header, "single"), column(header, "multi")
    lat_1thr = i_lat is not None and re.search(r"thread num\s*=\s*1\b", header[i_lat], re.I)
    where = f' (table "{config}")' if len(section) > 1 else ""
    source = (f"Xilinx/Vitis-AI @ tag {tag} ({short_commit(repo, tag)}) `{README[tag]}`, "
              f'section "{title}"{where}')
    out = []
    for row in rows:
        m = ours(row[i_name])
        if not m or (device, row[i_name]) in EXCLUDE:
            continue
        gop = float(m.group(3)) / (1000 if m.group(4) == "M" else 1)
        notes = ["lat: 1 thread"] if lat_1thr else []
        if i_lat is not None and not lat_1thr:
            thr = re.sub(r".*\(ms\)\s*", "", header[i_lat]).replace("<br/>", " ").strip()
            notes.append(f"lat {value(row, i_lat)} ms published at '{thr}' (not 1-thread: not in lat_ms)")
        notes.append("fps: 1 thread / multi-thread" if i_1 is not None else "fps: multi-thread only")
        if i_mhz is not None:
            notes.append("MHz = table 'DPU Frequency' column")
        out.append({"device": device, "board": title.removeprefix("Performance on ").strip(),
                    "dpu_config": config, "model": row[i_name], "gop_per_img": f"{gop:g}",
                    "dpu_mhz": value(row, i_mhz) or section_mhz(config),
                    "lat_ms": value(row, i_lat) if lat_1thr else "", "fps_1thr": value(row, i_1),
                    "fps_multi": value(row, i_n), "thread_note": "; ".join(notes), "source": source})
    return out, [r[i_name] for r in rows]


def same(a: str, b: str) -> bool:
    a, b = ("" if x in ("", "-") else x for x in (a, b))
    return a == b or (a != "" and b != "" and float(a) == float(b))


def assign_ids(rows: list[dict], existing_csv: Path) -> int:
    """Keep the id of each existing (board, model) row, checking its figures; new ids from 100."""
    with open(existing_csv, newline="") as f:
        old = {(r["board"], r["model"]): r for r in csv.DictReader(f)}
    problems, next_id = 0, max([100] + [int(r["id"]) + 1 for r in old.values() if int(r["id"]) >= 100])
    for row in rows:
        prev = old.pop((row["board"], row["model"]), None)
        if prev is None:
            row["id"], next_id = str(next_id), next_id + 1
            continue
        row["id"] = prev["id"]
        for key in FIGURES:
            if not same(row[key], prev[key]):
                problems += 1
                print(f"id {prev['id']} {row['board']} {row['model']}: {key} {prev[key]!r} in "
                      f"{existing_csv.name}, {row[key]!r} in the README", file=sys.stderr)
    for (board, model), prev in old.items():
        problems += 1
        print(f"id {prev['id']} {board} {model} of {existing_csv.name} not extracted", file=sys.stderr)
    return problems


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--repo", default=DEFAULT_REPO, help="Vitis-AI git directory (bare is fine)")
    p.add_argument("--out", type=Path, default=ROOT / "tuner/catalog/fpga_published.csv", help="csv to write")
    p.add_argument("--existing", type=Path, default=ROOT / "tuner/catalog/fpga_calibration.csv",
                   help="calibration csv whose ids are kept and whose figures are checked")
    p.add_argument("--extras", type=int, metavar="N", default=0,
                   help="also print the unpruned models we lack that are on >= N boards")
    args = p.parse_args(argv)
    rows, names = [], {}
    for device in SELECTION:
        got, all_names = extract(args.repo, device)
        rows += got
        names[device] = all_names
        print(f"{device:8s} {len(got):3d} rows  {SELECTION[device][0]} '{SELECTION[device][1]}'")
    problems = assign_ids(rows, args.existing)
    rows.sort(key=lambda r: int(r["id"]))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with open(args.out, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    print(f"{len(rows)} rows -> {args.out}" + (f" ({problems} differences)" if problems else ""))
    if args.extras:
        boards: dict[str, list[str]] = {}
        for device, all_names in names.items():
            for name in all_names:
                m = re.fullmatch(r"(.+_\d+_\d+)_[\d.]+[GM]", name)  # unpruned: ..._H_W_GOPs
                if m and not ours(name):
                    boards.setdefault(m.group(1), []).append(device)
        for key, devs in sorted(boards.items(), key=lambda kv: (-len(set(kv[1])), kv[0])):
            if len(set(devs)) >= args.extras:
                print(f"  extra {key:45s} {len(set(devs)):2d} boards: {' '.join(sorted(set(devs)))}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
