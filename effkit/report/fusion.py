"""The fusion check's views (`effkit profile --fused`): its two tables and its answer to "what would make it faster".

The check itself is measured by `effkit.profiling.fusion_check` and saved as fusion_check.json in the run folder,
one row per batch; these functions read those rows only, so `effkit report` rebuilds them without measuring.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

MODEL_COLS = ["batch", "eager (ms)", "torch.compile (ms)", "block-fused (ms)", "block-fused + compile (ms)", "selective (ms)",
              "selective vs compile", "predicted fused waterline (ms)", "block-fused vs fp32 (max rel. diff)"]
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


def decision(u: dict) -> str:
    """A unit's outcome: 'fused' (chosen), 'tie' (fused was faster, but by less than the spread: left to compile) or 'compile'."""
    if u["fused_chosen"]:
        return "fused"
    f, c = u.get("fused_ms"), u.get("compile_ms")
    return "tie" if f and c and f < c else "compile"


def selective_lost(r: dict) -> bool:
    """The selective model measured slower than torch.compile by more than the larger of their IQRs: the blocks' wins
    alone did not carry over to the model."""
    v, c = r.get("selective_ms"), r.get("compile_ms")
    return bool(v and c and v > c + max(r.get("selective_iqr_ms") or 0.0, r.get("compile_iqr_ms") or 0.0))


_TABLE_DECISION = {"fused": "fused", "tie": "a tie within the spread: compile", "compile": "compile"}
_NOTE_DECISION = {"fused": "fused", "tie": "a tie within the spread, left to compile", "compile": "left to compile"}


def model_table(rows: list[dict]) -> list[dict]:
    """One row per batch: the whole model in each configuration, medians with their IQR."""
    out = []
    for r in rows:
        same = {"compile": " (= torch.compile: no block won)", "fused_compile": " (= block-fused + compile: every block won)"}
        sel = (_timed(r, "selective") + same.get(r.get("selective_same_as"), "") if "selective_ms" in r else
               "–" if r.get("incomplete") else "not checked")
        batch = f"{r['batch']} (incomplete: interrupted)" if r.get("incomplete") else r["batch"]
        if r.get("timing_problems"):
            batch = f"{batch} ⚠ timing in doubt (see the notes)"
        out.append({"batch": batch, "eager (ms)": _timed(r, "eager"), "torch.compile (ms)": _timed(r, "compile"),
                    "block-fused (ms)": _timed(r, "fused"), "block-fused + compile (ms)": _timed(r, "fused_compile"), "selective (ms)": sel,
                    "selective vs compile": (_versus(r.get("selective_ms"), r.get("compile_ms"))
                                             if "selective_ms" in r and r.get("selective_same_as") != "compile" else "–"),
                    "predicted fused waterline (ms)": "–" if r.get("fused_waterline_ms") is None else f"{r['fused_waterline_ms']:.3f}",
                    # max |fused − unfused fp32| over the fp32 outputs' max |value|, in the precision and layout timed
                    "block-fused vs fp32 (max rel. diff)": ("–" if r.get("fused_max_rel_diff") is None else
                                                            f"{r['fused_max_rel_diff']:.1e}" + (" ⚠" if r.get("fused_numerical_note") else ""))})
    return out


def unit_table(rows: list[dict]) -> list[dict]:
    """One row per distinct block (and stem) per batch: timed alone, its fused kernel against torch.compile of it."""
    out = []
    for r in rows:
        for u in r.get("units") or []:
            f, c = u.get("fused_ms"), u.get("compile_ms")
            out.append({"batch": r["batch"], "block shape": u["name"], "modules": ", ".join(u["paths"]),
                        "fused kernel (ms)": _ms4(f), "IQR (ms)": _ms4(u.get("fused_iqr_ms")), "compiled (ms)": _ms4(c),
                        "IQR (ms) ": _ms4(u.get("compile_iqr_ms")),
                        "compiled / fused": f"{c / f:.2f}" if f and c else "–",
                        "decision": _TABLE_DECISION[decision(u)]})
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
            verdict = f"{_versus(sel, c)} than torch.compile's {c:.3f} ms" + (
                ": the blocks' wins did not carry over, so compile stays the faster" if selective_lost(r) else "")
            out.append(f"Measured (fusion check, batch {r['batch']}): fusing the {len(won)} of {len(units)} block shapes whose kernel beat "
                       f"torch.compile alone ({which}) and compiling the rest ran {_timed(r, 'selective')} ms, {verdict}.")
        elif r.get("fused_ms"):
            best = min(v for v in (r.get("fused_ms"), r.get("fused_compile_ms")) if v)
            out.append(f"Measured (fusion check, batch {r['batch']}): the block-fused model ran {best:.3f} ms, {_versus(best, c)} than "
                       f"torch.compile ({c:.3f} ms).")
        if r.get("fused_numerical_note") and r.get("fused_max_rel_diff") is not None and out and out[-1].startswith(f"Measured (fusion check, batch {r['batch']})"):
            out[-1] += (f" ⚠ But {r['fused_numerical_note']}: a kernel that does not compute the block is not a speed-up; "
                        "check the outputs before acting on it.")
        if r.get("timing_problems") and out and out[-1].startswith(f"Measured (fusion check, batch {r['batch']})"):
            out[-1] += (f" ⚠ But this batch's timing is in doubt ({len(r['timing_problems'])} problem"
                        f"{'s' if len(r['timing_problems']) != 1 else ''}, in the notes): measure again on an idle machine before acting on it.")
    return out


def fusion_note(r: dict) -> str:
    """One line of the fusion check for a report's notes."""
    f = lambda v: "–" if v is None else f"{v:.3f} ms"  # noqa: E731

    def timed(name: str) -> str:  # a measured figure with its spread
        v, iqr = r[f"{name}_ms"], r.get(f"{name}_iqr_ms")
        return f(v) if v is None or iqr is None else f"{v:.3f} ms (IQR {_spread(iqr)} ms)"

    against = [f"x{r['fused_over_fused_waterline']:.2f} the prediction"] if r.get("fused_over_fused_waterline") else []
    if r.get("fused_ms") and r.get("compile_ms"):  # the question a user asks first: does it beat torch.compile?
        against.append(f"{_versus(r['fused_ms'], r['compile_ms'])} than torch.compile")
    ratio = f" ({', '.join(against)})" if against else ""
    stem = {0: "", 1: " and the stem"}.get(r.get("fused_stems", 0), f" and {r.get('fused_stems')} stems")
    line = (f"fusion what-if against reality, batch {r['batch']} ({r['fused_blocks']} blocks{stem} fused, {r['unfused_blocks']} left unfused; "
            f"{r['fused_kernel']}): predicted fused waterline {f(r['fused_waterline_ms'])}; block-fused {timed('fused')}{ratio}; "
            + (f"block-fused, the rest compiled {timed('fused_compile')}; " if "fused_compile_ms" in r else "")
            + f"torch.compile {timed('compile')}; eager {timed('eager')}" + _selective_clause(r, timed))
    return line + _outputs_clause(r) + (f". ⚠ {r['problem']}" if r.get("problem") else "") + _doubts(r)


def _outputs_clause(r: dict) -> str:
    """'; outputs ...': how far the block-fused model's outputs are from the unfused model's in fp32 (max |difference| over
    the fp32 outputs' max |value|, in the precision and layout timed), with its warning; empty for rows saved before
    the check compared outputs."""
    if "fused_max_rel_diff" not in r:
        return ""
    rel, note = r["fused_max_rel_diff"], r.get("fused_numerical_note") or ""
    if rel is None:
        return f". ⚠ {note}" if note else ""
    said = (f"; block-fused outputs against the unfused model's in fp32: max difference {rel:.1e} of the outputs' largest "
            f"magnitude (batch {r['batch']}, the precision and layout timed)")
    return said + (f". ⚠ {note}" if note else "")


def _doubts(r: dict) -> str:
    """'. ⚠ Timing in doubt at this batch: ...' where the check's own times are (a large spread, load, eager disagreeing
    with the profile's measurement of it), so that no ratio above is read without it; empty otherwise."""
    problems = r.get("timing_problems") or []
    return f". ⚠ Timing in doubt at batch {r['batch']}, so are the ratios: {'; '.join(problems)}" if problems else ""


def _spread(iqr: float) -> str:
    """An IQR in ms to three decimals, or to four below 0.001 ms (batch 1's spreads would all read 0.000)."""
    return f"{iqr:.3f}" if iqr >= 0.001 else f"{iqr:.4f}" if iqr >= 0.0001 else "< 0.0001"


def _selective_clause(r: dict, timed: Callable[[str], str]) -> str:
    """'; selective ...': what the per-block timings recommend, and what it measured (empty where not checked)."""
    units = r.get("units")
    if not units:
        return ""
    won = [u for u in units if u["fused_chosen"]]
    if r.get("selective_same_as") == "compile":
        return f"; selective: none of the {len(units)} block shapes ran faster fused than compiled alone, so torch.compile is the recommendation"
    n = len(r["selective_fused"])
    head = (f"; selective (the {len(won)} of {len(units)} block shapes that ran faster fused than compiled alone fused, "
            f"{n} module{'s' if n != 1 else ''}, the rest compiled)")
    if r.get("selective_same_as") == "fused_compile":
        return head + " is the block-fused model with the rest compiled"
    v, c = r.get("selective_ms"), r.get("compile_ms")
    versus = "" if not (v and c) else f" ({_versus(v, c)} than torch.compile)"
    lost = ": the blocks' wins alone did not carry over to the model, so torch.compile stays the faster configuration" if selective_lost(r) else ""
    return head + f" {timed('selective')}{versus}{lost}"


def fusion_units_note(r: dict) -> str | None:
    """One line of the per-block timings behind the selective configuration, or None where there are none."""
    if not r.get("units"):
        return None

    def ms(u, name):
        v, iqr = u.get(f"{name}_ms"), u.get(f"{name}_iqr_ms")
        return "–" if v is None else f"{v:.4f} ms" + (f" (IQR {iqr:.4f})" if iqr is not None else "")

    parts = [f"{u['name']}" + (f" ×{len(u['paths'])}" if len(u["paths"]) > 1 else "") + f": fused {ms(u, 'fused')} against compiled "
             f"{ms(u, 'compile')}, {_NOTE_DECISION[decision(u)]}" for u in r["units"]]
    return f"fusion check, batch {r['batch']}, each block shape alone (its fused kernel against torch.compile of the block): " + "; ".join(parts)
