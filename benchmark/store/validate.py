"""Command-line values checked before any work starts, each failing with one line (exit 2)."""
from __future__ import annotations

from estimators import InvalidInput


def at_least(option: str, value: int | None, minimum: int) -> int | None:
    """``value`` unless it is below ``minimum`` (None, an option left out, passes)."""
    if value is not None and value < minimum:
        raise InvalidInput(f"{option} must be at least {minimum}, got {value}")
    return value


def check_device(name: str) -> str:
    """``name`` if torch can use it here: ``auto``, ``cpu``, an available ``cuda[:N]`` or ``mps``."""
    if name == "auto":
        return name
    import torch

    try:
        device = torch.device(name)
    except (RuntimeError, ValueError):
        raise InvalidInput(f"--device {name!r} is not a device; use auto, cpu, cuda, cuda:N or mps") from None
    if device.type == "cpu":
        return name
    if device.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            build = "a CPU-only build" if torch.version.cuda is None else f"built for CUDA {torch.version.cuda}"
            raise InvalidInput(f"--device {name}: no CUDA device is available (torch {torch.__version__}, {build}); "
                               f"use --device cpu or auto")
        if device.index is not None and device.index >= count:
            raise InvalidInput(f"--device {name}: this machine has {count} CUDA device(s), cuda:0..cuda:{count - 1}")
        return name
    backend = getattr(torch.backends, device.type, None) or getattr(torch, device.type, None)
    if backend is None or not backend.is_available():
        raise InvalidInput(f"--device {name}: no {device.type} device is available; use --device cpu or auto")
    return name
