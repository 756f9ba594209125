"""Reports people read (issue 14): the data behind each figure, the HTML in headless Chromium, notebooks, every
model that traces also runs (several inputs, keyword inputs, token ids from a local transformers config), and the
scaling report's depth explanation."""
from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import matplotlib
import pytest
import torch.nn as nn
from typer.testing import CliRunner

from effkit.analysis.roofline import ModelAnalysis
from effkit.cli import app
from effkit.report import figures as F
from effkit.report.summary import display_row, faster_sentences, pct, with_spread

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "reports" / "examples"
runner = CliRunner()


def _analyses(folder: Path) -> list[ModelAnalysis]:
    from effkit.report.record import RunRecord

    return RunRecord.load(folder).analyses


# ----------------------------------------------------------------------------- figure data
def test_roofline_markers_are_sized_by_time_share_and_the_top_layers_named():
    a = _analyses(EXAMPLES / "convnext_tiny_h200_bf16-mixed_b64_nhwc_graph")[-1]
    pts = F.roofline_points(a)
    shares = [p["share"] for p in pts]
    assert sum(shares) == pytest.approx(1.0)
    # area = 12 + 400 x share: the largest share has the largest marker, and a layer with twice the share has 400 x share more area
    for p in pts:
        assert p["size"] == pytest.approx(12 + 400 * p["share"])
    labelled = [p for p in pts if p["label"]]
    assert len(labelled) == F.TOP_LABELS
    assert min(p["share"] for p in labelled) >= max(p["share"] for p in pts if not p["label"])  # the top 5 by time
    fig = F.roofline(a)
    texts = [t.get_text() for t in fig.axes[0].texts]
    for p in labelled:  # named in the PNG, not only on hover
        assert any(t.startswith(p["path"] + " (") for t in texts)
    matplotlib.pyplot.close(fig)


def test_waterline_marks_stages_and_goes_log_beyond_10x():
    assert F.waterline_scale([3.1, 8.2, 1.0]) == "linear"  # 8.2 / 1.0 = 8.2 <= 10
    assert F.waterline_scale([0.1, 1.5]) == "log"  # 15x
    # stages: one level deeper where one top-level module holds most layers (ConvNeXt's features.N)
    paths = ["features.0.0", "features.0.1", "features.1.0.block.0", "features.1.1.block.0", "features.2.0", "classifier.2"]
    assert F.stage_boundaries(paths) == [(0, "features.0"), (2, "features.1"), (4, "features.2"), (5, "classifier.2")]
    assert F.stage_boundaries(["stem.0", "layer1.0.conv1", "layer1.1.conv1", "layer2.0.conv1", "fc"]) == [
        (0, "stem"), (1, "layer1"), (3, "layer2"), (4, "fc")]
    a = _analyses(EXAMPLES / "compare_h200_bf16_b64" / "mobilenet_v2")[-1]
    fig = F.waterline(a)
    ax = fig.axes[0]
    finals = [line.get_ydata()[-1] for line in ax.get_lines() if len(line.get_ydata()) == len(a.layers)]
    assert ax.get_yscale() == F.waterline_scale(finals)
    assert sum(1 for l in ax.get_lines() if l.get_linestyle() == ":") == len(F.stage_boundaries([l.path for l in a.layers])) - 1
    matplotlib.pyplot.close(fig)


def test_efficiency_gap_labels_do_not_collide_and_show_efficiency_as_percent():
    analyses = _analyses(EXAMPLES / "compare_h200_bf16_b64_nhwc_graph")
    fig = F.efficiency_gap(analyses, accuracy=True)
    renderer = fig.canvas.get_renderer()
    for ax in fig.axes:
        labels = [t for t in ax.texts if (t.get_gid() or "").startswith(("label-", "acc-label-", "diagonal-label-"))]
        boxes = [F.text_box(t, renderer) for t in labels]
        assert len(boxes) >= 5
        for i in range(len(boxes)):
            for j in range(i + 1, len(boxes)):
                assert not F.boxes_overlap(boxes[i], boxes[j]), (labels[i].get_text(), labels[j].get_text())
    model_labels = [t.get_text() for t in fig.axes[0].texts if (t.get_gid() or "").startswith("label-")]
    assert all(re.search(r", \d+\.\d %", t) for t in model_labels), model_labels
    diag = [t.get_text() for t in fig.axes[0].texts if (t.get_gid() or "").startswith("diagonal-label-")]
    assert diag and all(t.endswith("% of peak") for t in diag)
    assert fig.axes[0].get_xscale() == "log" and fig.axes[0].get_yscale() == "log"
    assert fig.axes[1].get_ylabel() == "ImageNet top-1 (%)" and "ladder" in fig.axes[1].get_title()
    matplotlib.pyplot.close(fig)


def test_boxes_overlap_by_hand():
    assert F.boxes_overlap((0, 0, 10, 10), (5, 5, 15, 15)) and not F.boxes_overlap((0, 0, 10, 10), (10, 0, 20, 10))


# ----------------------------------------------------------------------------- numbers as people read them
def test_numbers_are_rounded_to_their_spread():
    assert with_spread(6.0916, 0.0043) == "6.092 ± 0.004"  # spread 0.0043: first significant digit at 1e-3
    assert with_spread(6.0916, 0.046) == "6.09 ± 0.05"
    assert with_spread(241.7, 12.3) == "242 ± 12"
    assert with_spread(0.76123456, None, 3) == "0.761"
    assert pct(0.09111) == "9.1 %"


def test_summary_rows_and_the_faster_section():
    a = _analyses(EXAMPLES / "compare_h200_bf16_b64_nhwc_graph")[0]
    row = display_row(a)
    assert row["efficiency (% of ideal)"].endswith(" %") and "±" in row["latency (ms, ± IQR/2)"]
    lines = faster_sentences(a)
    gaps = {"memory": a.memory_gap, "kernel": a.kernel_gap, "overhead": a.overhead_gap}
    largest = max((g for g in gaps.values() if g), default=None)
    assert lines[0].startswith(f"{a.model}, batch {a.batch}: the largest rung is ×{largest:.2f}")
    assert any(l.startswith("The layers that lose most time") for l in lines)


# ----------------------------------------------------------------------------- the HTML in a browser
_MEASURE = """<pre id="measure"></pre><script>
const t = document.getElementById('summary');
const boxes = Array.from(document.querySelectorAll('#fig-gap svg g[id^="label-"], #fig-gap svg g[id^="acc-label-"], #fig-gap svg g[id^="diagonal-label-"]'))
  .map(g => { const r = g.getBoundingClientRect(); return [r.left, r.top, r.right, r.bottom]; });
let overlaps = 0;
for (let i = 0; i < boxes.length; i++) for (let j = i + 1; j < boxes.length; j++) {
  const a = boxes[i], b = boxes[j];
  if (a[0] < b[2] - 0.5 && b[0] < a[2] - 0.5 && a[1] < b[3] - 0.5 && b[1] < a[3] - 0.5) overlaps++; }
const eff = Array.from(t.tHead.rows[0].cells).findIndex(c => c.textContent.startsWith('efficiency'));
document.getElementById('measure').textContent = JSON.stringify({
  table_right: t.getBoundingClientRect().right, viewport: window.innerWidth, labels: boxes.length, overlaps: overlaps,
  efficiency: Array.from(t.tBodies[0].rows).map(r => r.cells[eff].textContent),
  cached_details: !!document.getElementById('cached-flags'), faster: !!document.getElementById('faster')});
</script>"""


def _chromium_dom(page: Path, tmp_path: Path, width: int = 1280) -> dict:
    from tests.test_report import _chromium

    cmd = [_chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
           "--disable-component-update", "--disable-sync", f"--user-data-dir={tmp_path / 'profile'}", f"--window-size={width},900",
           "--virtual-time-budget=5000", "--dump-dom", page.as_uri()]
    dom = subprocess.run(cmd, capture_output=True, text=True, timeout=120).stdout
    m = re.search(r'<pre id="measure">(.*?)</pre>', dom, re.S)
    assert m, dom[-2000:]
    return json.loads(m.group(1).replace("&quot;", '"'))


@pytest.fixture(scope="module")
def rebuilt(tmp_path_factory):
    """The committed H200 comparison and ConvNeXt-T profile, re-rendered from their run.json by this effkit."""
    import shutil

    from effkit.report.run_dir import rebuild

    out = tmp_path_factory.mktemp("rebuilt")
    for name in ("compare_h200_bf16_b64_nhwc_graph", "convnext_tiny_h200_bf16-mixed_b64_nhwc_graph"):
        shutil.copytree(EXAMPLES / name, out / name)
        rebuild([str(out / name)])
    return out


def test_comparison_page_in_chromium(rebuilt, tmp_path):
    page = tmp_path / "page.html"
    page.write_text((rebuilt / "compare_h200_bf16_b64_nhwc_graph" / "index.html").read_text().replace("</body>", _MEASURE + "</body>"))
    out = _chromium_dom(page, tmp_path)
    assert out["table_right"] <= out["viewport"] <= 1280  # the summary table fits 1280 px
    assert out["labels"] >= 10 and out["overlaps"] == 0  # no label boxes overlap, as laid out by the browser
    assert out["efficiency"] and all(re.fullmatch(r"\d+\.\d %", e) for e in out["efficiency"])
    assert out["faster"]
    html = (rebuilt / "compare_h200_bf16_b64_nhwc_graph" / "index.html").read_text()
    assert "Provenance: what differs between models" in html or "Provenance" in html


def test_profile_page_collapses_cache_explained_flags(rebuilt, tmp_path):
    from effkit.report.run_dir import flag_rows

    folder = rebuilt / "convnext_tiny_h200_bf16-mixed_b64_nhwc_graph"
    a = _analyses(folder)[-1]
    rows = flag_rows(a)
    html = (folder / "index.html").read_text()
    explained = [r for r in rows if r["explained_by_cache"]]
    loud = [r for r in rows if not r["explained_by_cache"]]
    if explained:
        assert f"{len(explained)} layer" in html and "<details id=\"cached-flags\">" in html
    assert ("not explained by cache" in html) == bool(loud)
    page = tmp_path / "page.html"
    page.write_text(html.replace("</body>", _MEASURE.replace("#fig-gap", "#fig-gap") + "</body>"))
    out = _chromium_dom(page, tmp_path)
    assert out["table_right"] <= 1280 and out["faster"]


# ----------------------------------------------------------------------------- notebooks
def test_results_display_themselves_in_jupyter(tmp_path):
    import effkit

    t = effkit.trace("resnet18", device="meta")
    assert "GMACs" in t._repr_html_() and "<table" in t._repr_html_() and len(t.to_frame()) > 10
    b = effkit.bench(_two_inputs(), [1], min_time_s=0.05, layers=False)
    assert "<table" in b._repr_html_() and len(b.to_frame()) == 1
    p = effkit.profile(_two_inputs(), min_time_s=0.05, out=tmp_path / "p")
    html = p._repr_html_()
    assert "efficiency (% of ideal)" in html and "data:image/png;base64" in html and len(p.to_frame()) == 1


# ----------------------------------------------------------------------------- every model that traces also runs
class TwoInputs(nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Linear(16, 8), nn.Linear(4, 8)
        self.input_shapes = [(16,), (4,)]

    def forward(self, x, y):
        return self.a(x) + self.b(y)


def _two_inputs():
    return TwoInputs()


MODEL_FILE = '''
import torch.nn as nn


class Two(nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Linear(16, 8), nn.Linear(4, 8)
        self.input_shapes = [(16,), (4,)]

    def forward(self, x, y):
        return self.a(x) + self.b(y)


class Named(Two):
    def __init__(self):
        super().__init__()
        self.input_shapes = {"image": (16,), "extra": (4,)}

    def forward(self, extra, image):  # called by name: the order of the arguments does not matter
        return self.a(image) + self.b(extra)


def two():
    return Two()


def named():
    return Named()
'''


def test_bench_and_profile_a_two_input_and_a_keyword_input_model(tmp_path):
    f = tmp_path / "m.py"
    f.write_text(MODEL_FILE)
    for spec in (f"{f}:two", f"{f}:named"):
        r = runner.invoke(app, ["bench", spec, "--min-time", "0.05", "--top", "2"])
        assert r.exit_code == 0, r.output
        r = runner.invoke(app, ["profile", spec, "--min-time", "0.05", "--out", str(tmp_path / spec.rpartition(":")[2])])
        assert r.exit_code == 0, r.output
    # Linear(16, 8) + Linear(4, 8) at batch 1: 16 x 8 + 4 x 8 = 160 MACs, whichever way the inputs are passed
    from effkit.report.record import RunRecord

    for name in ("two", "named"):
        assert RunRecord.load(tmp_path / name).analyses[-1].macs == 160
    # several --input-shape options replace the declared shapes: Linear(16, 8) needs 16 features, so 3 is an error
    r = runner.invoke(app, ["bench", f"{f}:two", "--input-shape", "16", "--input-shape", "3", "--min-time", "0.05"])
    assert r.exit_code != 0


@pytest.fixture(scope="module")
def tiny_gpt2(tmp_path_factory):
    transformers = pytest.importorskip("transformers")  # in the test extra: CI has it
    folder = tmp_path_factory.mktemp("tiny-gpt2")
    transformers.GPT2Config(n_layer=2, n_embd=32, n_head=2, vocab_size=100, n_positions=64, bos_token_id=0, eos_token_id=0,
                            architectures=["GPT2LMHeadModel"]).save_pretrained(folder)
    return folder


def test_bench_and_profile_a_token_id_model_from_a_local_transformers_config(tiny_gpt2, tmp_path):
    spec = f"hf:{tiny_gpt2}"
    r = runner.invoke(app, ["bench", spec, "--seq-len", "16", "--min-time", "0.05", "--top", "2"])
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["profile", spec, "--seq-len", "16", "--min-time", "0.05", "--out", str(tmp_path / "p")])
    assert r.exit_code == 0, r.output
    from effkit.report.record import RunRecord

    a = RunRecord.load(tmp_path / "p").analyses[-1]
    # the model a user would run: GPT2LMHeadModel (its architectures), so the LM head is there, a bias-free Linear(32, 100)
    # over 16 tokens: 16 x 32 x 100 = 51,200 MACs = 102,400 FLOPs
    assert next(l for l in a.layers if l.path == "lm_head").flops == 2 * 16 * 32 * 100
    base = runner.invoke(app, ["trace", spec, "--seq-len", "16", "--task", "base", "--format", "csv", "--device", "meta"])
    assert base.exit_code == 0 and "lm_head" not in base.stdout
    bad = runner.invoke(app, ["trace", spec, "--task", "translate", "--device", "meta"])
    assert bad.exit_code == 2 and "unknown --task 'translate'" in bad.stderr and "causal-lm" in bad.stderr


def test_cli_py_says_what_it_needs_without_torch(tmp_path):
    """`python cli.py` on a Python without effkit's dependencies: one line naming the missing package, exit 2."""
    import shutil

    shutil.copy(ROOT / "cli.py", tmp_path / "cli.py")
    code = "import sys, builtins; real = builtins.__import__\n" \
           "def fake(name, *a, **k):\n    if name == 'torch': raise ImportError(\"No module named 'torch'\", name='torch')\n    return real(name, *a, **k)\n" \
           "builtins.__import__ = fake; sys.argv = ['cli.py', 'trace', 'resnet50']\n" \
           f"import runpy; runpy.run_path({str(tmp_path / 'cli.py')!r}, run_name='__main__')\n"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 2 and "'torch' is missing" in r.stderr and "Traceback" not in r.stderr


# ----------------------------------------------------------------------------- scaling explains depth
def test_depth_unscaled_share_by_hand():
    from effkit.analysis.scaling import depth_unscaled_share

    # base: stem (acts 100, flops 10), stage s1 with blocks b1 (transition: 50, 40) and b2 (copied type: 20, 50), head (10, 0)
    base = [{"path": "stem", "acts": 100, "flops": 10}, {"path": "s1.b1", "acts": 50, "flops": 40}, {"path": "s1.b2", "acts": 20, "flops": 50},
            {"path": "head", "acts": 10, "flops": 0}]
    deeper = base + [{"path": "s1.b3", "acts": 20, "flops": 50}]
    r = depth_unscaled_share(base, deeper)
    assert r["stages"] == ["s1"]
    # not copied: stem + s1.b1 + head = 160 of 180 acts (0.889) and 50 of 100 FLOPs (0.5); e ≈ (1 - 0.889) / (1 - 0.5) = 0.222
    assert r["acts_share"] == pytest.approx(160 / 180) and r["flops_share"] == pytest.approx(0.5)
    assert r["exponent_near_base"] == pytest.approx((20 / 180) / 0.5)
    assert depth_unscaled_share(base, base) is None  # nothing deepened


def test_scale_report_explains_depth(tmp_path):
    import effkit

    r = effkit.scale("regnety_400mf", ["d"], [1, 4], out=tmp_path / "s")
    d = r.fits["d"]
    assert d["acts"][1] == 1.0 and d["acts"][0] < 1.0  # per-layer theory 1, the network below it
    u = d["unscaled"]
    assert u["acts_share"] > u["flops_share"] and u["predicted_exponent"] < 1.0
    summary = json.loads((tmp_path / "s" / "summary.json").read_text())
    line = next(h for h in summary["headline"] if h.startswith("Depth:"))
    assert f"{100 * u['acts_share']:.0f} % of the activations" in line and "per-layer theory of 1.00" in line
