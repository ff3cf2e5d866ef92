"""The GPU evaluator up to the device: imports without CUDA or Ray, refuses a missing runtime with
an error naming it, refuses a CPU fallback, builds the right torch modules and dtypes, maps out
of memory to "out of memory", and runs its whole bench code path on CPU tensors.

Where a test needs "no CUDA" it says so with monkeypatch, so it holds on a GPU machine too."""

from __future__ import annotations

import pickle
import subprocess
import sys

import numpy as np
import onnxruntime
import pytest
import torch

from tuner.errors import TunerError
from tuner.evaluators.gpu_bench import GpuOutOfMemoryError, GpuReplicaBench
from tuner.evaluators.gpu_runners import OrtCudaRunner, TorchRunner, require_provider
from tuner.evaluators.gpu_torch_models import (
    TorchSource,
    build_module,
    has_torch_definition,
    torch_dtype,
    torch_source_for,
    torch_source_from_fp32,
)
from tuner.models import digits, resnet
from tuner.models.spec import PreparedModel, Variant

from helpers import DIGITS_INPUTS, OomAbove, cpu_bench, digits_source, tiny_cnn


def test_module_imports_without_ray_torch_pydantic_or_cuda():
    """Replica processes and the bare GPU image (no Ray, no pydantic) import these."""
    code = ("import sys, tuner.evaluators.gpu_bench, tuner.evaluators.gpu_select, tuner.costmodels.gpu.devices, "
            "tuner.costmodels.gpu.whatif; "
            "print(sorted(m for m in ('ray', 'torch', 'onnxruntime', 'pydantic', 'optuna') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_torch_backend_without_cuda_names_what_is_missing(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(TunerError) as err:
        GpuReplicaBench("torch", 0, "fp16")
    message = str(err.value)
    assert f"torch {torch.__version__}" in message and "no usable CUDA device" in message
    assert "install a CUDA build of torch" in message


def test_ort_backend_without_the_cuda_provider_names_the_package(monkeypatch):
    monkeypatch.setattr(onnxruntime, "get_available_providers", lambda: ["CPUExecutionProvider"])
    with pytest.raises(TunerError) as err:
        GpuReplicaBench("ort", 0, "fp32")
    message = str(err.value)
    assert "CUDAExecutionProvider" in message and "onnxruntime-gpu" in message and "tuner[gpu]" in message


def test_a_session_that_fell_back_to_the_cpu_is_refused(monkeypatch):
    """A real ONNX Runtime session asked for CUDA where it cannot load: ORT only warns and runs on
    the CPU; the runner must refuse it rather than time the CPU."""
    real = onnxruntime.get_available_providers()
    if "CUDAExecutionProvider" not in real:
        monkeypatch.setattr(onnxruntime, "get_available_providers", lambda: ["CUDAExecutionProvider", *real])
        monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
        runner = OrtCudaRunner(0, "fp32")
        with pytest.warns(UserWarning), pytest.raises(TunerError, match="fell back|runs the model on the CPU"):
            runner.build(tiny_cnn())
    with pytest.raises(TunerError, match=r"Got providers \['CPUExecutionProvider'\]"):
        require_provider(["CPUExecutionProvider"], "CUDAExecutionProvider", onnxruntime.__version__)
    require_provider(["CUDAExecutionProvider", "CPUExecutionProvider"], "CUDAExecutionProvider", "1.22")


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"backend": "jax"}, "backend"),
        ({"backend": "ort", "precision": "bf16"}, "precision"),
        ({"backend": "torch", "precision": "fp8"}, "precision"),
        ({"backend": "torch", "device_index": -1}, "device_index"),
        ({"backend": "torch", "memory_fraction": 1.5}, "memory_fraction"),
    ],
)
def test_bad_arguments_are_refused_before_touching_a_device(kwargs, field):
    with pytest.raises(TunerError, match=f"for {field}\\."):
        GpuReplicaBench(**kwargs)


def test_torch_int8_is_not_supported_with_a_clear_error():
    with pytest.raises(TunerError, match="no int8 CUDA inference path"):
        GpuReplicaBench("torch", 0, "int8")


def test_digits_builder_loads_the_trained_weights():
    source, state = digits_source()
    module = build_module(source)
    assert isinstance(module, digits.DigitsCNN) and not module.training
    for name, value in module.state_dict().items():
        assert torch.equal(value, state[name])


def test_resnet_builder_is_the_seeded_resnet():
    module = build_module(TorchSource("resnet18"))
    reference = resnet.build()
    assert isinstance(module, resnet.ResNet18)
    assert torch.equal(module.stem[0].weight, reference.stem[0].weight)


def test_builder_refusals():
    with pytest.raises(TunerError, match="trained weights"):
        build_module(TorchSource("digits-cnn"))
    with pytest.raises(TunerError, match="ort backend"):
        build_module(TorchSource("my-model"))
    assert has_torch_definition("resnet18") and not has_torch_definition("my-model")


@pytest.mark.parametrize(("precision", "dtype"), [("fp32", torch.float32), ("fp16", torch.float16),
                                                   ("bf16", torch.bfloat16)])
def test_runner_casts_parameters_and_activations(precision, dtype):
    assert torch_dtype(precision) is dtype
    runner = TorchRunner("cpu", precision)
    module = runner.build(digits_source()[0])
    assert {p.dtype for p in module.parameters()} == {dtype}
    runner.bind(module, {"x": np.ones((2, 1, 8, 8), np.float32)})
    assert runner.call(2) > 0


def test_weights_come_from_the_npz_beside_the_fp32_onnx(tmp_path):
    source, state = digits_source()
    (tmp_path / "weights.npz").write_bytes(source.weights_npz)
    fp32 = tmp_path / "fp32.onnx"
    fp32.write_bytes(b"onnx")
    assert torch_source_from_fp32("digits-cnn", fp32) == source
    prepared = PreparedModel("digits-cnn", "builtin", DIGITS_INPUTS, "top1_accuracy", "",
                             {"fp32": Variant("fp32", str(fp32), "sha", 0.98)})
    assert torch_source_for(prepared) == source
    user_file = PreparedModel("mine", "/data/mine.onnx", DIGITS_INPUTS, "fidelity", "", prepared.variants)
    assert torch_source_for(user_file) is None
    (tmp_path / "weights.npz").unlink()
    with pytest.raises(TunerError, match="weights must sit beside it"):
        torch_source_from_fp32("digits-cnn", fp32)


def test_torch_runner_refuses_onnx_bytes():
    with pytest.raises(TunerError, match="TorchSource"):
        TorchRunner("cpu", "fp32").build(b"onnx bytes")


def test_bench_code_path_runs_on_cpu_tensors():
    bench = cpu_bench("bf16")
    source, _ = digits_source()
    assert bench.prepare("d", source, DIGITS_INPUTS, 8) is False
    sample = bench.run_for(0.05, 3)
    assert sample.batch_size == 8 and len(sample.latencies_s) >= 3
    info = bench.info()
    assert (info["backend"], info["precision"], info["platform"]) == ("torch", "bf16", "gpu")
    assert info["dtype"] == "torch.bfloat16" and info["tf32"] is False


def test_forward_only_timing_stages_inputs_on_the_device():
    runner = TorchRunner("cpu", "fp16", time_transfers=False)
    bench = GpuReplicaBench._on_runner(runner, "torch", "fp16")
    bench.prepare("d", digits_source()[0], DIGITS_INPUTS, 8)
    assert [x.dtype for x in runner._staged] == [torch.float16]  # cast once, before timing
    assert bench.info()["transfers_timed"] is False and "forward pass" in bench.info()["timing"]
    assert len(bench.run_for(0.0, 3).latencies_s) == 3
    with pytest.raises(TunerError, match="for time_transfers"):
        GpuReplicaBench("ort", 0, "fp32", time_transfers=False)


@pytest.mark.parametrize("error", [
    torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB (GPU 0; 79.1 GiB total)"),
    RuntimeError("[ONNXRuntimeError] : 6 : RUNTIME_EXCEPTION : Failed to allocate memory for requested buffer"),
])
def test_out_of_memory_becomes_an_infeasible_error_and_the_replica_recovers(error):
    bench = GpuReplicaBench._on_runner(OomAbove(16, error), "torch", "fp32")
    source, _ = digits_source()
    with pytest.raises(GpuOutOfMemoryError) as err:
        bench.prepare("d", source, DIGITS_INPUTS, 64)
    message = str(err.value)
    assert "out of memory" in message and "Got batch_size 64" in message and "smaller batch" in message
    assert isinstance(err.value, TunerError)
    assert "out of memory" in str(pickle.loads(pickle.dumps(err.value)))  # crosses Ray intact
    with pytest.raises(TunerError, match="before a successful prepare"):
        bench.run_for(0.01, 1)
    bench.prepare("d", source, DIGITS_INPUTS, 4)
    assert len(bench.run_for(0.0, 2).latencies_s) == 2


def test_other_errors_pass_through_unchanged():
    bench = GpuReplicaBench._on_runner(OomAbove(1, ValueError("mat1 and mat2 shapes cannot be multiplied")),
                                       "torch", "fp32")
    with pytest.raises(ValueError, match="shapes cannot be multiplied"):
        bench.prepare("d", digits_source()[0], DIGITS_INPUTS, 8)


def test_batch_size_is_validated():
    with pytest.raises(TunerError, match="for batch_size"):
        cpu_bench().prepare("d", digits_source()[0], DIGITS_INPUTS, 0)
