"""The fusion check's views (`effkit profile --fused`): its two tables and its answer to "what would make it faster".

The check itself is measured by `effkit.profiling.fusion_check` and saved as fusion_check.json in the run folder,
one row per batch; these functions read those rows only, so `effkit report` rebuilds them without measuring.
"""
from __future__ import annotations

import json
from pathlib import Path

MODEL_COLS = ["batch", "eager (ms)", "torch.compile (ms)", "block-fused (ms)", "block-fused + compile (ms)", "selective (ms)",
              "selective vs compile", "predicted fused waterline (ms)"]
UNIT_COLS = ["batch", "block shape", "modules", "fused kernel (ms)", "IQR (ms)", "compiled (ms)", "IQR (ms) ", "compiled / fused", "decision"]


def load_rows(folder: Path) -> list[dict]:
    """fusion_check.json's rows, or none where the run has no fusion check (or its file cannot be read)."""
    try:
        rows = json.loads((Path(folder) / "fusion_check.json").read_text())
    except (OSError, ValueError):
        return []
    return rows if isinstance(rows, list) else []


def _timed(r: dict, name: str) -> str:
    v, iqr = r.get(f"{name}_ms"), r.get(f"{name}_iqr_ms")
    if v is None:
        return "–"
    return f"{v:.3f}" if iqr is None else f"{v:.3f} (IQR {iqr:.3f})" if iqr >= 0.001 else f"{v:.4f} (IQR {iqr:.4f})"


def _ms4(v) -> str:
    return "–" if v is None else f"{v:.4f}"


def _versus(v, c) -> str:
    if not (v and c):
        return "–"
    return f"{c / v:.2f}x faster" if v <= c else f"{v / c:.2f}x slower"


def model_table(rows: list[dict]) -> list[dict]:
    """One row per batch: the whole model in each configuration, medians with their IQR."""
    out = []
    for r in rows:
        same = {"compile": " (= torch.compile: no block won)", "fused_compile": " (= block-fused + compile: every block won)"}
        sel = (_timed(r, "selective") + same.get(r.get("selective_same_as"), "") if "selective_ms" in r else
               "–" if r.get("incomplete") else "not checked")
        out.append({"batch": f"{r['batch']} (incomplete: interrupted)" if r.get("incomplete") else r["batch"], "eager (ms)": _timed(r, "eager"), "torch.compile (ms)": _timed(r, "compile"),
                    "block-fused (ms)": _timed(r, "fused"), "block-fused + compile (ms)": _timed(r, "fused_compile"), "selective (ms)": sel,
                    "selective vs compile": (_versus(r.get("selective_ms"), r.get("compile_ms"))
                                             if "selective_ms" in r and r.get("selective_same_as") != "compile" else "–"),
                    "predicted fused waterline (ms)": "–" if r.get("fused_waterline_ms") is None else f"{r['fused_waterline_ms']:.3f}"})
    return out


def unit_table(rows: list[dict]) -> list[dict]:
    """One row per distinct block (and stem) per batch: timed alone, its fused kernel against torch.compile of it."""
    out = []
    for r in rows:
        for u in r.get("units") or []:
            f, c = u.get("fused_ms"), u.get("compile_ms")
            tie = not u["fused_chosen"] and f and c and f < c
            out.append({"batch": r["batch"], "block shape": u["name"], "modules": ", ".join(u["paths"]),
                        "fused kernel (ms)": _ms4(f), "IQR (ms)": _ms4(u.get("fused_iqr_ms")), "compiled (ms)": _ms4(c),
                        "IQR (ms) ": _ms4(u.get("compile_iqr_ms")),
                        "compiled / fused": f"{c / f:.2f}" if f and c else "–",
                        "decision": "fused" if u["fused_chosen"] else "a tie within the spread: compile" if tie else "compile"})
    return out


def fusion_sentences(rows: list[dict]) -> list[str]:
    """What the fusion check measured, as answers to "what would make it faster" (one a batch)."""
    out = []
    for r in rows:
        c, sel, units = r.get("compile_ms"), r.get("selective_ms"), r.get("units")
        if not c or r.get("incomplete"):
            continue
        if units and r.get("selective_same_as") == "compile":
            out.append(f"Measured (fusion check, batch {r['batch']}): none of the {len(units)} fusable block shapes ran faster as its fused "
                       f"kernel than compiled; torch.compile ({_timed(r, 'compile')} ms) is the faster configuration here.")
        elif units and sel:
            won = [u["name"] for u in units if u["fused_chosen"]]
            lost = [u["name"] for u in units if not u["fused_chosen"]]
            which = f"all but {'; '.join(lost)}" if len(won) > len(lost) else "; ".join(won)
            verdict = (f"{c / sel:.2f}x faster than torch.compile's {c:.3f} ms" if sel <= c else
                       f"{sel / c:.2f}x slower than torch.compile's {c:.3f} ms: the blocks' wins did not carry over, so compile stays the faster")
            out.append(f"Measured (fusion check, batch {r['batch']}): fusing the {len(won)} of {len(units)} block shapes whose kernel beat "
                       f"torch.compile alone ({which}) and compiling the rest ran {_timed(r, 'selective')} ms, {verdict}.")
        elif r.get("fused_ms"):
            best = min(v for v in (r.get("fused_ms"), r.get("fused_compile_ms")) if v)
            out.append(f"Measured (fusion check, batch {r['batch']}): the block-fused model ran {best:.3f} ms, {_versus(best, c)} than "
                       f"torch.compile ({c:.3f} ms).")
    return out
