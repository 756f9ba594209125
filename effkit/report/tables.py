"""CSV and JSON files of trace results."""
from __future__ import annotations

import json
from pathlib import Path

from effkit.files import atomic_write_text
from effkit.trace.result import TraceResult


def write_csv(result: TraceResult, path: str | Path, depth: int | None = None) -> Path:
    return atomic_write_text(path, result.to_frame(depth).to_csv(index=False))


def write_json(result: TraceResult, path: str | Path, depth: int | None = None) -> Path:
    return atomic_write_text(path, json.dumps(result.to_dict(depth), indent=2))
