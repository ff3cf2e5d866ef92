"""Content-addressed on-disk cache for trained weights, ONNX variants and their accuracy.

An entry's key is a hash of everything that determines its content (model source code,
training settings, data, input file bytes, recipe version), so a changed input never reuses
a stale entry and an unchanged one is never rebuilt. Files are written atomically, so two
tuner processes sharing the cache never read a half-written file.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any


def cache_root() -> Path:
    """``$TUNER_CACHE_DIR`` if set, else ``~/.cache/tuner``."""
    env = os.environ.get("TUNER_CACHE_DIR")
    root = Path(env) if env else Path.home() / ".cache" / "tuner"
    return root.expanduser().resolve()


def entry_dir(name: str, key: str) -> Path:
    """Directory of one cache entry, created on demand."""
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in name)
    d = cache_root() / "models" / f"{safe}-{key[:16]}"
    d.mkdir(parents=True, exist_ok=True)
    return d


def sha256_bytes(*parts: bytes) -> str:
    h = hashlib.sha256()
    for p in parts:
        h.update(hashlib.sha256(p).digest())
    return h.hexdigest()


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def write_atomic(path: Path, data: bytes) -> None:
    """Write bytes so readers see either the old file or the whole new one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read_json(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def write_json(path: Path, data: dict[str, Any]) -> None:
    write_atomic(path, json.dumps(data, indent=2, sort_keys=True).encode())
