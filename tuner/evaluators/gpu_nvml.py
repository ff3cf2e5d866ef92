"""Facts about a GPU from NVML (package nvidia-ml-py) or nvidia-smi, when either is there.

Everything here is best effort: a missing library, tool or permission gives an empty dict,
never an error, because these facts describe a measurement and must not stop it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from typing import Any

_MIB = 1024 * 1024


def physical_index(cuda_index: int) -> str:
    """The nvidia-smi id of CUDA device `cuda_index`, following CUDA_VISIBLE_DEVICES (Ray sets it
    for actors with num_gpus, so device 0 of an actor may be physical GPU 3, or a UUID)."""
    visible = [v.strip() for v in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if v.strip()]
    if visible and cuda_index < len(visible):
        return visible[cuda_index]
    return str(cuda_index)


def _from_pynvml(ident: str) -> dict[str, Any]:
    import pynvml  # from nvidia-ml-py

    pynvml.nvmlInit()
    try:
        handle = (pynvml.nvmlDeviceGetHandleByUUID(ident) if not ident.isdigit()
                  else pynvml.nvmlDeviceGetHandleByIndex(int(ident)))
        mem = pynvml.nvmlDeviceGetMemoryInfo(handle)
        name = pynvml.nvmlDeviceGetName(handle)
        driver = pynvml.nvmlSystemGetDriverVersion()
        out: dict[str, Any] = {
            "gpu_name": name.decode() if isinstance(name, bytes) else name,
            "driver_version": driver.decode() if isinstance(driver, bytes) else driver,
            "gpu_memory_total_mib": round(mem.total / _MIB, 1),
            "gpu_memory_used_mib": round(mem.used / _MIB, 1),
        }
        try:
            version = pynvml.nvmlSystemGetCudaDriverVersion_v2()
            out["cuda_driver_version"] = f"{version // 1000}.{version % 1000 // 10}"
        except pynvml.NVMLError:
            pass
        try:  # our own process's memory; absent in containers with their own pid namespace
            for proc in pynvml.nvmlDeviceGetComputeRunningProcesses(handle):
                if proc.pid == os.getpid() and proc.usedGpuMemory is not None:
                    out["process_memory_mib"] = round(proc.usedGpuMemory / _MIB, 1)
        except pynvml.NVMLError:
            pass
        return out
    finally:
        pynvml.nvmlShutdown()


def _from_nvidia_smi(ident: str) -> dict[str, Any]:
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return {}
    fields = "name,driver_version,memory.total,memory.used"
    done = subprocess.run([exe, f"--query-gpu={fields}", "--format=csv,noheader,nounits", "-i", ident],
                          capture_output=True, text=True, timeout=10, check=False)
    answered = done.returncode == 0 and done.stdout.strip()
    parts = [p.strip() for p in done.stdout.strip().splitlines()[0].split(",")] if answered else []
    if len(parts) != 4:
        return {}
    return {"gpu_name": parts[0], "driver_version": parts[1],
            "gpu_memory_total_mib": float(parts[2]), "gpu_memory_used_mib": float(parts[3])}


def device_facts(cuda_index: int = 0) -> dict[str, Any]:
    """Name, driver version, total and used memory (MiB) of CUDA device `cuda_index`; {} if unknown."""
    ident = physical_index(cuda_index)
    for source in (_from_pynvml, _from_nvidia_smi):
        try:
            facts = source(ident)
        except Exception:  # ImportError, NVMLError, OSError, a timeout: all mean "not known here"
            continue
        if facts:
            facts["facts_source"] = "nvml" if source is _from_pynvml else "nvidia-smi"
            return facts
    return {}
