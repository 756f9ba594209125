"""Reports: the run folder's files and columns, rebuilding, comparing, and the HTML in a real browser."""
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pandas as pd
import pytest
import torch.nn as nn

import effkit
from effkit.report.headline import headline
from effkit.report.run_dir import rebuild


class Res(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.conv = nn.Conv2d(c, c, 3, padding=1, groups=c)
        self.bn = nn.BatchNorm2d(c)
        self.pw = nn.Conv2d(c, c, 1)

    def forward(self, x):
        return x + self.pw(self.bn(self.conv(x)))


class TinyNet(nn.Module):
    def __init__(self, c=8):
        super().__init__()
        self.stem = nn.Conv2d(3, c, 3, stride=2, padding=1)
        self.blocks = nn.Sequential(Res(c), Res(c))
        self.head = nn.Linear(c, 10)

    def forward(self, x):
        return self.head(self.blocks(self.stem(x)).mean((2, 3)))


FAST = dict(input_shape=(3, 32, 32), min_time_s=0.0)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return effkit.profile(TinyNet(), batch=[1, 4], out=tmp_path_factory.mktemp("r") / "run", **FAST)


def test_run_folder_files(run):
    names = {p.name for p in run.folder.iterdir()}
    for f in ("index.html", "layers.csv", "summary.csv", "summary.json", "provenance.json", "run.json",
              "efficiency_gap.png", "efficiency_gap.svg", "roofline.png", "roofline.svg", "waterline.png", "waterline.svg"):
        assert f in names, f


def test_summary_csv_one_row_per_batch_with_units(run):
    df = pd.read_csv(run.folder / "summary.csv")
    assert list(df["batch"]) == [1, 4]
    for col in ("model", "latency_ms", "samples_per_s", "macs", "flops", "params", "acts", "efficiency", "waterline_ms", "ideal_ms",
                "kernels_ms", "memory_gap", "kernel_gap", "overhead_gap"):
        assert col in df.columns, col
    row = df.iloc[1]
    assert row["samples_per_s"] == pytest.approx(4 / (row["latency_ms"] / 1e3))
    assert row["ideal_ms"] <= row["waterline_ms"]


def test_layers_csv_and_analysis_agree_with_the_trace(run):
    df = pd.read_csv(run.folder / "layers.csv")
    tr = effkit.trace(TinyNet(), (3, 32, 32), batch=4)
    assert list(df["path"]) == [l.path for l in tr.layers]
    assert df["flops"].sum() == tr.totals.flops
    assert {"blocks.0.conv": "depthwise conv", "blocks.0.pw": "pointwise conv", "head": "linear", "blocks.0.bn": "norm"}.items() <= \
        dict(zip(df["path"], df["kind"])).items()
    a = run.analyses[-1]
    assert a.fusion is not None and a.fusion.blocks == ("blocks.0", "blocks.1")


def test_summary_json_headline_and_provenance(run):
    d = json.loads((run.folder / "summary.json").read_text())
    assert d["headline"][0].startswith("TinyNet at batch 4, fp32 on ")
    assert any(h.startswith("Gap ladder: ideal") for h in d["headline"])
    p = json.loads((run.folder / "provenance.json").read_text())
    assert p["batch"] == 4 and p["torch"] and p["host"]


def test_html_is_self_contained(run):
    html = (run.folder / "index.html").read_text()
    # nothing to fetch: no links, scripts or images from the network (XML namespace URIs are names, not fetches)
    assert not re.search(r"""(src|href)\s*=\s*["']https?:|<link|url\(\s*["']?https?:|<script[^>]+src""", html)
    # the efficiency gap and the roofline inline as SVG (label boxes and hover names live in the page), the waterline and the
    # predicted memory over the step as PNGs
    assert html.count("data:image/png;base64,") == 2 and html.count("<svg") == 2 and 'id="fig-memory"' in html
    assert "<title>blocks.0.conv (depthwise conv" in html  # hover names the layer
    assert "Conventions and definitions" in html and "Provenance" in html


def test_report_rebuild_in_place_and_as_comparison(run, tmp_path):
    (run.folder / "index.html").unlink()
    rebuild([str(run.folder)])
    assert (run.folder / "index.html").exists()
    other = effkit.profile(TinyNet(4), out=tmp_path / "other", **FAST)
    cmp = rebuild([str(run.folder), str(other.folder)], str(tmp_path / "cmp"))
    df = pd.read_csv(cmp / "summary.csv")
    assert len(df) == 2 and (cmp / "index.html").exists() and (cmp / "efficiency_gap.png").exists()


def test_counts_only_against_a_datasheet(tmp_path):
    r = effkit.profile(TinyNet(), ceilings="h100", dtype="bf16", batch=8, out=tmp_path / "c", input_shape=(3, 32, 32))
    a = r.analyses[0]
    assert a.latency_s is None and a.roof.peak_flops == 989.5e12 and not (tmp_path / "c" / "bench.json").exists()
    assert "not measured; roofline analysis against H100 SXM (datasheet)" in headline(a)[0]


def test_compare_two_models(tmp_path):
    r = effkit.compare([TinyNet(), Res(3)], out=tmp_path / "cmp", **FAST)
    df = pd.read_csv(tmp_path / "cmp" / "summary.csv")
    assert list(df["model"]) == ["TinyNet", "Res"] and (tmp_path / "cmp" / "TinyNet" / "index.html").exists()
    assert '<a href="TinyNet/index.html">TinyNet</a>' in (tmp_path / "cmp" / "index.html").read_text()
    assert r.report.exists()


def test_cli_profile_compare_report(tmp_path):
    from typer.testing import CliRunner

    from effkit.cli import app

    (tmp_path / "m.py").write_text("import torch.nn as nn\ndef net():\n    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU())\n")
    spec = f"{tmp_path / 'm.py'}:net"
    res = CliRunner().invoke(app, ["profile", spec, "--input-shape", "3,16,16", "--min-time", "0", "--out", str(tmp_path / "p")])
    assert res.exit_code == 0, res.output
    assert "report:" in res.output and (tmp_path / "p" / "index.html").exists()
    res = CliRunner().invoke(app, ["report", str(tmp_path / "p")])
    assert res.exit_code == 0 and "index.html" in res.output
    res = CliRunner().invoke(app, ["report", str(tmp_path)])
    assert res.exit_code == 2 and "is not an effkit run folder (no run.json)" in res.output
    res = CliRunner().invoke(app, ["compare", "resnet18"])
    assert res.exit_code == 2 and "compare needs at least two models" in res.output
    res = CliRunner().invoke(app, ["profile", "resnet18", "--ceilings", "h900"])
    assert res.exit_code == 2 and "unknown ceilings 'h900'" in res.output


_SELFTEST = """
<script>
window.addEventListener('load', () => {
  const out = {};
  out.imgs = Array.from(document.images).map(i => i.complete && i.naturalWidth > 0);
  const svg = document.querySelector('#fig-roofline svg');
  out.svg_width = svg ? svg.getBoundingClientRect().width : 0;
  out.points = document.querySelectorAll('#fig-roofline svg g[id^="layer-"]').length;
  const t = document.getElementById('layers');
  const ths = Array.from(t.tHead.rows[0].cells);
  const idx = ths.findIndex(th => th.textContent.trim() === 'flops');
  const col = () => Array.from(t.tBodies[0].rows).map(r => parseFloat(r.cells[idx].dataset.v));
  out.before = col();
  ths[idx].click(); out.asc = col();
  ths[idx].click(); out.desc = col();
  const pre = document.createElement('pre'); pre.id = 'selftest'; pre.textContent = JSON.stringify(out);
  document.body.appendChild(pre);
});
</script>
"""


def _chromium():
    exe = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if exe is None:
        if os.environ.get("EFFKIT_REQUIRE_BROWSER"):
            pytest.fail("EFFKIT_REQUIRE_BROWSER is set but no chromium is installed")
        pytest.skip("no chromium here (CI installs Debian's chromium and requires it)")
    return exe


def test_html_in_headless_chromium(run, tmp_path):
    page = tmp_path / "page.html"
    page.write_text((run.folder / "index.html").read_text().replace("</body>", _SELFTEST + "</body>"))
    cmd = [_chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
           "--disable-component-update", "--disable-sync", f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=5000",
           "--dump-dom", page.as_uri()]
    dom = subprocess.run(cmd, capture_output=True, text=True, timeout=120).stdout
    m = re.search(r'<pre id="selftest">(.*?)</pre>', dom, re.S)
    assert m, dom[-2000:]
    out = json.loads(m.group(1).replace("&quot;", '"'))
    assert out["imgs"] == [True, True]  # the waterline and memory PNGs decoded (the efficiency gap and the roofline are inline SVG)
    assert out["svg_width"] > 100 and out["points"] > 5  # the inline roofline SVG laid out, one group per layer
    assert out["asc"] == sorted(out["before"]) and out["desc"] == sorted(out["before"], reverse=True)
    assert out["asc"] != out["before"]  # the click really reordered the rows


def test_accuracy_file_errors(tmp_path):
    from effkit.errors import UserInputError
    from effkit.profiling import read_accuracy

    with pytest.raises(UserInputError, match="accuracy file 'nope.csv' does not exist"):
        read_accuracy("nope.csv")
    (tmp_path / "a.csv").write_text("name,acc\nx,1\n")
    with pytest.raises(UserInputError, match="needs the columns model,top1"):
        read_accuracy(str(tmp_path / "a.csv"))
    (tmp_path / "b.csv").write_text("model,top1\nTinyNet,71.5\n")
    assert read_accuracy(str(tmp_path / "b.csv")) == {"TinyNet": 71.5}
