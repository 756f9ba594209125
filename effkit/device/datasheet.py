"""Datasheet figures of common GPUs, shown beside measured ceilings.

Dense tensor-core rates (no structured sparsity) in FLOP/s and memory bandwidth in
bytes/s, each row with its source. fp32 is the non-tensor-core rate. Figures are
matched to a device by substrings of its name (first match wins, most specific first).
"""
from __future__ import annotations

from dataclasses import dataclass

T = 1e12
GBs = 1e9


@dataclass(frozen=True)
class Datasheet:
    name: str
    match: tuple[str, ...]  # all must occur in the device name (case-insensitive)
    flops: dict  # dtype -> FLOP/s (dense); None where the part has no such mode
    bandwidth: float  # bytes/s
    source: str


DATASHEETS = (
    Datasheet("H200 SXM", ("h200",), {"fp32": 67 * T, "tf32": 494.5 * T, "fp16": 989.5 * T, "bf16": 989.5 * T}, 4800 * GBs,
              "NVIDIA H200 Tensor Core GPU datasheet (2024), SXM column, dense = half the sparse figures"),
    Datasheet("H100 PCIe", ("h100", "pcie"), {"fp32": 51 * T, "tf32": 378 * T, "fp16": 756 * T, "bf16": 756 * T}, 2000 * GBs,
              "NVIDIA H100 Tensor Core GPU datasheet (2023), PCIe column, dense"),
    Datasheet("H100 SXM", ("h100",), {"fp32": 67 * T, "tf32": 494.5 * T, "fp16": 989.5 * T, "bf16": 989.5 * T}, 3350 * GBs,
              "NVIDIA H100 Tensor Core GPU datasheet (2023), SXM column, dense"),
    Datasheet("A100 80GB", ("a100", "80gb"), {"fp32": 19.5 * T, "tf32": 156 * T, "fp16": 312 * T, "bf16": 312 * T}, 2039 * GBs,
              "NVIDIA A100 Tensor Core GPU datasheet (2021), 80GB SXM column, dense"),
    Datasheet("A100 40GB", ("a100",), {"fp32": 19.5 * T, "tf32": 156 * T, "fp16": 312 * T, "bf16": 312 * T}, 1555 * GBs,
              "NVIDIA A100 Tensor Core GPU datasheet (2021), 40GB column, dense"),
    Datasheet("L40S", ("l40s",), {"fp32": 91.6 * T, "tf32": 183 * T, "fp16": 362 * T, "bf16": 362 * T}, 864 * GBs,
              "NVIDIA L40S datasheet (2023), dense"),
    Datasheet("L4", ("l4",), {"fp32": 30.3 * T, "tf32": 60 * T, "fp16": 121 * T, "bf16": 121 * T}, 300 * GBs,
              "NVIDIA L4 Tensor Core GPU datasheet (2023), dense"),
    Datasheet("A10", ("a10",), {"fp32": 31.2 * T, "tf32": 62.5 * T, "fp16": 125 * T, "bf16": 125 * T}, 600 * GBs,
              "NVIDIA A10 Tensor Core GPU datasheet (2021), dense"),
    Datasheet("T4", ("t4",), {"fp32": 8.1 * T, "tf32": None, "fp16": 65 * T, "bf16": None}, 320 * GBs,
              "NVIDIA T4 Tensor Core GPU datasheet (2019)"),
    Datasheet("V100", ("v100",), {"fp32": 15.7 * T, "tf32": None, "fp16": 125 * T, "bf16": None}, 900 * GBs,
              "NVIDIA V100 Tensor Core GPU datasheet (2020), SXM2 column"),
    Datasheet("RTX 4090", ("4090",), {"fp32": 82.6 * T, "tf32": 82.6 * T, "fp16": 165.2 * T, "bf16": 165.2 * T}, 1008 * GBs,
              "NVIDIA Ada GPU architecture whitepaper v2.1, GeForce RTX 4090, FP32 accumulate, dense"),
    Datasheet("RTX 3090", ("3090",), {"fp32": 35.6 * T, "tf32": 35.6 * T, "fp16": 71 * T, "bf16": 71 * T}, 936 * GBs,
              "NVIDIA Ampere GA102 GPU architecture whitepaper v2, GeForce RTX 3090, FP32 accumulate, dense"),
)


def lookup(device_name: str) -> Datasheet | None:
    n = device_name.lower()
    for d in DATASHEETS:
        if all(m in n for m in d.match):
            return d
    return None
