"""torch -> ONNX export with a dynamic batch axis and one self-contained file."""

from __future__ import annotations

import contextlib
import io
import logging
import warnings
from pathlib import Path

import torch


def export_onnx(model: torch.nn.Module, example: torch.Tensor, path: Path) -> None:
    """Export `model` (one tensor argument; the ONNX input is named ``x``) with a dynamic batch dimension.

    torch 2.13's default exporter (dynamo) writes weights to a side file unless
    ``external_data=False``; one file is simpler to cache, copy and serve.
    """
    model = model.eval()
    quiet = io.StringIO()
    with warnings.catch_warnings(), contextlib.redirect_stdout(quiet):
        warnings.simplefilter("ignore")
        logging.getLogger("torch.onnx").setLevel(logging.ERROR)
        torch.onnx.export(
            model,
            (example,),
            str(path),
            dynamo=True,
            external_data=False,
            input_names=["x"],
            dynamic_shapes=({0: torch.export.Dim("batch", min=1, max=4096)},),  # positional: any arg name
        )
