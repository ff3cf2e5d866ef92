"""The ONNX Runtime session options of a CPU replica: the same when a trial measures it and when
the Serve application serves it (serving/model.py builds its sessions with them), so a served
replica runs exactly what was measured.
"""

from __future__ import annotations

import onnxruntime as ort

SESSION_CONFIG = {"session.intra_op.allow_spinning": "0"}


def session_options(threads: int) -> ort.SessionOptions:
    """Options for a session with `threads` intra-op threads.

    Spin-waiting is off: a spinning idle thread burns a core another replica needs (two
    2-thread sessions on 2 cores lose up to 50% with it on).
    """
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads  # Ray sets OMP_NUM_THREADS=1, which ORT ignores
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.log_severity_level = 3
    for key, value in SESSION_CONFIG.items():
        opts.add_session_config_entry(key, value)
    return opts
