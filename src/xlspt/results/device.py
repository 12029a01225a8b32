"""What a result was computed with: library versions and the device (CPU model or GPU name, threads, dtype)."""

from __future__ import annotations

import platform


def library_versions() -> dict[str, str]:
    import torch
    import transformers

    from .._version import __version__

    return {
        "xlspt": __version__,
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "python": platform.python_version(),
    }


def device_info(device, dtype) -> dict[str, str]:
    import torch

    device = str(device)
    if device.startswith("cuda") and torch.cuda.is_available():
        name = torch.cuda.get_device_name(torch.device(device))
    else:
        name = _cpu_name()
    return {"device": device, "dtype": str(dtype).removeprefix("torch."), "name": name,
            "threads": torch.get_num_threads() if device == "cpu" else None}


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()
