"""Device names effkit accepts, validated in one place for every stage."""
from __future__ import annotations

import torch

from effkit.errors import UserInputError


def parse_device(device: str, allow_meta: bool = True) -> str:
    """Validate cpu, meta (if allowed), cuda or cuda:N (the last two only where CUDA is)."""
    choices = "cpu, meta, cuda, cuda:N" if allow_meta else "cpu, cuda, cuda:N"
    if device == "cpu" or (allow_meta and device == "meta"):
        return device
    if device == "cuda" or device.startswith("cuda:"):
        if not torch.cuda.is_available():
            raise UserInputError(f"device {device!r}: CUDA is not available on this machine; choose {'cpu or meta' if allow_meta else 'cpu'}")
        idx = device.partition(":")[2]
        n = torch.cuda.device_count()
        if idx and (not idx.isdigit() or int(idx) >= n):
            raise UserInputError(f"device {device!r}: this machine has {n} CUDA device(s): {', '.join(f'cuda:{i}' for i in range(n))}")
        return device if idx else "cuda:0"
    raise UserInputError(f"unknown device {device!r}; choose one of: {choices}")
