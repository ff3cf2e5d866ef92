"""optuna-dashboard on the study storage, bound to 127.0.0.1 by default, with the artifact store
beside it (`tuner.study.artifacts`), where the studies' reports are uploaded.

What the dashboard shows of tuner's studies is written elsewhere: feasibility and notes per
trial (`tuner.study.dashboard_view`), the companion studies (`tuner.study.companions`), the
approval form (`tuner.deploy.approval`).
"""

from __future__ import annotations

import contextlib
import socket
from pathlib import Path

from tuner.errors import TunerError, field_error
from tuner.study.artifacts import artifact_dir, open_store
from tuner.study.storage import DEFAULT_STORAGE, open_storage


def run_dashboard(storage_url: str | None, host: str, port: int, artifacts: Path | None = None) -> int:
    """Serve the dashboard on the storage, with its artifact store (the uploaded reports)."""
    import optuna_dashboard

    storage = open_storage(storage_url, create=False)
    store = open_store(storage_url, artifacts)
    _check_port(host, port)  # before the success line: a busy port is bad input, not a traceback
    if host not in ("127.0.0.1", "localhost", "::1"):
        print(f"warning: binding {host}: the dashboard has no authentication and anyone who can reach "
              "this port can read and edit the study.")
    print(f"optuna-dashboard for {storage_url or DEFAULT_STORAGE} at http://{host}:{port}/ (Ctrl-C stops it); "
          f"artifacts (the uploaded reports) from {artifact_dir(storage_url, artifacts)}/", flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        try:
            optuna_dashboard.run_server(storage, host=host, port=port, artifact_store=store)
        except OSError as exc:  # taken between the check and the bind
            raise _busy(host, port, exc) from None
    return 0


def _busy(host: str, port: int, exc: OSError) -> TunerError:
    return field_error("--port", port, f"The dashboard cannot listen on {host}:{port} ({exc.strerror or exc}).",
                       f"Pick a free port (tuner dashboard --port {port + 1}) or stop what listens there.")


def _check_port(host: str, port: int) -> None:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the server binds it
        try:
            sock.bind((host, port))
        except OSError as exc:
            raise _busy(host, port, exc) from None
