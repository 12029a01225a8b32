"""Where and in which precision a model runs: the device (GPU, MPS or CPU), the dtype (``auto`` measures
whether this CPU runs bfloat16 fast) and torch's CPU threads."""

from __future__ import annotations

import hashlib
import time
from enum import Enum

import torch

from ..errors import XlsptError

class DType(str, Enum):
    """Model weights: ``auto`` is bfloat16 where the hardware runs it fast (measured), else float32."""

    AUTO = "auto"
    FLOAT32 = "float32"
    BFLOAT16 = "bfloat16"


#: The dtype of a model loaded without one: the same choice in the Python API, the command line and run configs.
DEFAULT_DTYPE = DType.AUTO


#: ``auto`` picks bfloat16 on a CPU where a bf16 matrix multiply runs at least this much faster than float32.
BF16_MIN_SPEEDUP = 1.5


def cpu_bf16_speedup() -> float:
    """How much faster a bfloat16 matrix multiply runs than a float32 one on this CPU, measured once.

    CPU flags do not tell: AMX (Intel) and AVX-512 BF16 (AMD EPYC) both run bf16 several times
    faster, other CPUs emulate it slower. The measurement (1024x1024 products in turns, under a
    second) is cached per CPU model, flags and torch version (not thread count: one machine, one answer) under ``<cache>/probes/``, so every
    run on a machine resolves ``auto`` the same way (run ids depend on it).
    """
    import json
    import platform

    from ..files import cache_dir, write_json_atomic

    flags = ""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            lines = f.read().splitlines()
        name = next((line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")), "")
        flags = next((line.split(":", 1)[1] for line in lines if line.startswith("flags")), "")
    except OSError:
        name = platform.processor() or platform.machine()
    identity = f"{name}|{' '.join(sorted(flags.split()))}|{torch.__version__}"
    path = cache_dir("probes") / f"bf16-{hashlib.sha256(identity.encode()).hexdigest()[:16]}.json"
    try:
        return float(json.loads(path.read_text(encoding="utf-8"))["speedup"])
    except (OSError, ValueError, KeyError):
        pass

    float32, bfloat16 = _fastest_matmuls((torch.float32, torch.bfloat16))
    speedup = float32 / bfloat16
    gflops = lambda seconds: round(2 * 1024**3 / seconds / 1e9, 1)  # noqa: E731
    write_json_atomic(path, {"cpu": name, "torch": torch.__version__, "threads": torch.get_num_threads(),
                             "float32_gflops": gflops(float32), "bfloat16_gflops": gflops(bfloat16),
                             "speedup": round(speedup, 3)})
    return speedup


def _fastest_matmuls(dtypes: tuple[torch.dtype, ...], rounds: int = 12) -> list[float]:
    """The fastest of ``rounds`` 1024x1024 products in each dtype, the dtypes taking turns: a burst of other work
    on the machine slows a few products of each, not all of one (the answer is cached and decides run ids)."""
    pairs = [(torch.randn(1024, 1024).to(dtype), torch.randn(1024, 1024).to(dtype)) for dtype in dtypes]
    for a, b in pairs:
        a @ b  # warm-up: kernels chosen, memory touched
    best = [float("inf")] * len(dtypes)
    for _ in range(rounds):
        for i, (a, b) in enumerate(pairs):
            start = time.perf_counter()
            a @ b
            best[i] = min(best[i], time.perf_counter() - start)
    return best


DEVICES = ("auto", "cpu", "cuda", "mps")


def set_threads(threads: int | None) -> None:
    """Let torch use ``threads`` CPU threads (``None``: torch's choice)."""
    if threads is not None:
        if threads < 1:
            raise XlsptError(f"--threads must be at least 1 (got {threads})")
        torch.set_num_threads(threads)


def resolve_device(device: str | None = None) -> str:
    """``None``/``"auto"``: the first CUDA GPU if there is one, else Apple's MPS, else the CPU.

    A device asked for by name that this machine lacks is refused with a clear line.
    """
    mps = getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()
    if device in (None, "auto"):
        return "cuda" if torch.cuda.is_available() else "mps" if mps else "cpu"
    kind = str(device).split(":", 1)[0]
    if kind not in DEVICES[1:]:
        raise XlsptError(f"unknown --device {device!r}: use one of {', '.join(DEVICES)} (or cuda:N)")
    if kind == "cuda" and not torch.cuda.is_available():
        raise XlsptError(f"--device {device}: this machine has no CUDA GPU that torch can use; use --device cpu or auto")
    if kind == "mps" and not mps:
        raise XlsptError(f"--device {device}: Apple's MPS is not available here; use --device cpu or auto")
    return str(device)


def resolve_dtype(dtype: str | torch.dtype = "auto", device: str = "cpu") -> torch.dtype:
    """``auto`` is bfloat16 on a GPU that supports it and on a CPU where a measured bf16 matrix multiply
    is at least 1.5x faster than float32 (:func:`cpu_bf16_speedup`), else float32."""
    if isinstance(dtype, torch.dtype):
        return dtype
    dtype = dtype.value if isinstance(dtype, DType) else dtype
    if dtype == "float32":
        return torch.float32
    if dtype == "bfloat16":
        return torch.bfloat16
    if dtype == "auto":
        if device.startswith("cuda"):
            fast_bf16 = torch.cuda.is_bf16_supported()
        else:
            fast_bf16 = device == "cpu" and cpu_bf16_speedup() >= BF16_MIN_SPEEDUP
        return torch.bfloat16 if fast_bf16 else torch.float32
    raise XlsptError(f"unknown --dtype {dtype!r}: use one of {', '.join(d.value for d in DType)}")

