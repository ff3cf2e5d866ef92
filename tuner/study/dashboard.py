"""optuna-dashboard on the study storage, bound to 127.0.0.1 by default.

Optuna 5's `set_constraint` values are not read by optuna-dashboard 0.21, so every trial also
carries user attributes the dashboard does show: its config, metrics, ``feasible`` and each
``constraint.<name>`` (feasible when <= 0).
"""

from __future__ import annotations

import contextlib

from tuner.study.storage import DEFAULT_STORAGE, open_storage


def run_dashboard(storage_url: str | None, host: str, port: int) -> int:
    import optuna_dashboard

    storage = open_storage(storage_url, create=False)
    if host not in ("127.0.0.1", "localhost", "::1"):
        print(f"warning: binding {host}: the dashboard has no authentication and anyone who can reach "
              "this port can read and edit the study.")
    print(f"optuna-dashboard for {storage_url or DEFAULT_STORAGE} at http://{host}:{port}/ (Ctrl-C stops it)",
          flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        optuna_dashboard.run_server(storage, host=host, port=port)
    return 0
