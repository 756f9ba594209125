"""The self-contained HTML report: figures embedded, a sortable layer table, no network."""
from __future__ import annotations

import base64
from dataclasses import asdict, dataclass, field
from pathlib import Path

from jinja2 import Environment

from effkit._version import __version__
from effkit.analysis.roofline import DEFINITIONS
from effkit.files import atomic_write_text
from effkit.trace.formulas import CONVENTIONS

_SORT_JS = """
function sortTable(th) {
  const table = th.closest('table'), body = table.tBodies[0];
  const idx = Array.from(th.parentNode.children).indexOf(th);
  const asc = th.dataset.dir !== 'asc';
  th.parentNode.querySelectorAll('th').forEach(h => delete h.dataset.dir);
  th.dataset.dir = asc ? 'asc' : 'desc';
  const key = r => { const c = r.children[idx]; const v = c.dataset.v !== undefined ? c.dataset.v : c.textContent;
                     const n = parseFloat(v); return isNaN(n) ? v.toLowerCase() : n; };
  const rows = Array.from(body.rows);
  rows.sort((a, b) => { const x = key(a), y = key(b);
    if (typeof x === typeof y) return (x < y ? -1 : x > y ? 1 : 0) * (asc ? 1 : -1);
    return typeof x === 'number' ? -1 : 1; });
  rows.forEach(r => body.appendChild(r));
}
document.querySelectorAll('table.sortable th').forEach(th => th.addEventListener('click', () => sortTable(th)));
"""

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2em auto;max-width:1300px;color:#222;padding:0 1em}
h1{font-size:1.5em} h2{font-size:1.15em;margin-top:2em;border-bottom:1px solid #ddd}
table{border-collapse:collapse;font-size:.82em;margin:.5em 0} #summary{font-size:.78em} #summary th{white-space:normal;max-width:9em}
details summary{cursor:pointer;color:#555;margin:1em 0} th,td{padding:3px 8px;border-bottom:1px solid #eee;text-align:right}
th{background:#f5f5f5;cursor:pointer;position:sticky;top:0} td.l,th.l{text-align:left}
th[data-dir=asc]::after{content:' ▲'} th[data-dir=desc]::after{content:' ▼'}
.headline li{margin:.3em 0} .flag{color:#b00} img,svg{max-width:100%;height:auto} .fig{margin:1em 0}
.small{font-size:.8em;color:#555} .scroll{max-height:600px;overflow:auto;border:1px solid #eee}
pre{background:#f7f7f7;border:1px solid #eee;padding:.6em .8em;font-size:.85em;overflow:auto}
.banner{background:#fff4e0;border-left:4px solid #e08a00;padding:.5em .8em;margin:.5em 0;font-size:.9em}
"""

_TEMPLATE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{{ title }}</title><style>{{ css }}</style></head>
<body>
<h1>{{ title }}</h1>
<p class="small">effkit {{ version }} · {{ subtitle }}</p>
{% for b in banners %}<div class="banner">⚠ {{ b }}</div>{% endfor %}
<h2>Headline</h2>
<ul class="headline">{% for h in headline %}<li>{{ h }}</li>{% endfor %}</ul>
{% if code %}<h2>{{ code_title }}</h2>
<pre id="code">{{ code }}</pre>{% endif %}
{% if faster %}<h2>What would make it faster</h2>
<ul class="headline" id="faster">{% for h in faster %}<li>{{ h }}</li>{% endfor %}</ul>{% endif %}
{% if fusion_models %}<h2>Fusion check: the fused kernels against torch.compile, measured</h2>
<p class="small">Each configuration of the whole model measured under the run's settings; median of the timed steps with its IQR, in ms.
Selective: only the blocks whose fused kernel beat torch.compile alone (below) fused, the rest compiled. The predicted fused waterline is the
what-if for exactly the blocks the kernels fuse.</p>
<table id="fusion-models"><thead><tr>{% for c in fusion_model_cols %}<th>{{ c }}</th>{% endfor %}</tr></thead>
<tbody>{% for r in fusion_models %}<tr>{% for c in fusion_model_cols %}<td>{{ r[c] }}</td>{% endfor %}</tr>{% endfor %}</tbody></table>
{% if fusion_units %}<p class="small">Each distinct block (the same structure at the same input shape) timed alone: its fused kernel against
torch.compile of the block. A kernel faster by less than the larger IQR is a tie, left to compile.</p>
<table class="sortable" id="fusion-units"><thead><tr>{% for c in fusion_unit_cols %}<th class="{{ 'l' if c in ('block shape','modules','decision') else '' }}">{{ c }}</th>{% endfor %}</tr></thead>
<tbody>{% for r in fusion_units %}<tr>{% for c in fusion_unit_cols %}<td class="{{ 'l' if c in ('block shape','modules','decision') else '' }}">{{ r[c] }}</td>{% endfor %}</tr>{% endfor %}</tbody></table>{% endif %}
{% endif %}
{% if summary_rows %}
<h2>Summary</h2>
<table class="sortable" id="summary"><thead><tr>{% for c in summary_cols %}<th class="{{ 'l' if loop.index0 < 2 else '' }}">{{ c }}</th>{% endfor %}</tr></thead>
<tbody>{% for r in summary_rows %}<tr>{% for c in summary_cols %}<td class="{{ 'l' if loop.index0 < 2 else '' }}" data-v="{{ r[c] if r[c] is not none else '' }}">{{ fmt(r[c]) }}</td>{% endfor %}</tr>{% endfor %}</tbody></table>
{% endif %}
{% for f in figures %}
<h2>{{ f.title }}</h2><p class="small">{{ f.caption }}</p>
<div class="fig" id="fig-{{ f.id }}">{% if f.svg %}{{ f.svg | safe }}{% else %}<img alt="{{ f.title }}" src="data:image/png;base64,{{ f.png64 }}">{% endif %}</div>
{% endfor %}
{% if cached_flags %}
<details id="cached-flags"><summary>{{ cached_flags|length }} layer{{ 's' if cached_flags|length != 1 }} measured faster than the DRAM roofline,
every one explained by cache reuse (the layer before wrote its input to the last on-chip cache): click to list</summary>
<table><thead><tr><th class="l">layer</th><th class="l">kind</th><th>measured (ms)</th><th>DRAM roofline (ms)</th><th>roofline with cache allowance (ms)</th><th>bytes (MB)</th><th class="l">explanation</th></tr></thead>
<tbody>{% for f in cached_flags %}<tr><td class="l">{{ f.path }}</td><td class="l">{{ f.kind }}</td><td>{{ '%.4f' % f.measured_ms }}</td><td>{{ '%.4f' % f.roofline_ms }}</td><td>{{ '%.4f' % f.cached_roofline_ms }}</td><td>{{ '%.2f' % f.mb }}</td><td class="l">{{ f.reason }}</td></tr>{% endfor %}</tbody></table>
</details>
{% endif %}
{% if flags %}
<h2 class="flag">Layers measured faster than their roofline time, not explained by cache</h2>
<p class="small">A layer cannot beat max(FLOPs/P, bytes/B) with bytes counted as DRAM traffic, unless part of its input came from the last
on-chip cache (written there by the layer before; at most one cache's worth per call) or a count or a ceiling is wrong. Each is listed with
the roofline recomputed under that cache allowance; never silently plotted.</p>
<table><thead><tr><th class="l">layer</th><th class="l">kind</th><th>measured (ms)</th><th>DRAM roofline (ms)</th><th>roofline with cache allowance (ms)</th><th>bytes (MB)</th><th class="l">explanation</th></tr></thead>
<tbody>{% for f in flags %}<tr class="flag"><td class="l">{{ f.path }}</td><td class="l">{{ f.kind }}</td><td>{{ '%.4f' % f.measured_ms }}</td><td>{{ '%.4f' % f.roofline_ms }}</td><td>{{ '%.4f' % f.cached_roofline_ms }}</td><td>{{ '%.2f' % f.mb }}</td><td class="l">{{ f.reason }}</td></tr>{% endfor %}</tbody></table>
{% endif %}
{% if lost %}
<h2>Top layers by lost time (measured − roofline)</h2>
<table><thead><tr><th class="l">layer</th><th class="l">kind</th><th class="l">bound</th><th>measured (ms)</th><th>roofline (ms)</th><th>lost (ms)</th><th>efficiency</th></tr></thead>
<tbody>{% for l in lost %}<tr><td class="l">{{ l.path }}</td><td class="l">{{ l.kind }}</td><td class="l">{{ l.bound }}</td><td>{{ '%.4f' % l.measured_ms }}</td><td>{{ '%.4f' % l.roofline_ms }}</td><td>{{ '%.4f' % l.lost_ms }}</td><td>{{ '%.1f %%' % (100 * l.efficiency) }}</td></tr>{% endfor %}</tbody></table>
{% endif %}
{% if layer_rows %}
<h2>Layers{{ layer_caption }}</h2><p class="small">Click a column to sort. Times per batch; bytes = compulsory DRAM traffic; efficiency = roofline / measured.</p>
<div class="scroll"><table class="sortable" id="layers"><thead><tr>{% for c in layer_cols %}<th class="{{ 'l' if c in ('path','module_type','kind','bound') else '' }}">{{ c }}</th>{% endfor %}</tr></thead>
<tbody>{% for r in layer_rows %}<tr>{% for c in layer_cols %}<td class="{{ 'l' if c in ('path','module_type','kind','bound') else '' }}" data-v="{{ r[c] if r[c] is not none else '' }}">{{ fmt(r[c]) }}</td>{% endfor %}</tr>{% endfor %}</tbody></table></div>
{% endif %}
{% if uncovered %}<h2>Ops without a formula (not counted)</h2><ul>{% for u in uncovered %}<li>{{ u }}</li>{% endfor %}</ul>{% endif %}
{% if links %}<h2>Per-model reports</h2><ul>{% for label, href in links %}<li><a href="{{ href }}">{{ label }}</a></li>{% endfor %}</ul>{% endif %}
{% if notes %}<h2>Notes</h2><ul>{% for n in notes %}<li>{{ n }}</li>{% endfor %}</ul>{% endif %}
<h2>Conventions and definitions</h2>
<table><tbody>{% for k, v in conventions.items() %}<tr><td class="l"><b>{{ k }}</b></td><td class="l">{{ v }}</td></tr>{% endfor %}</tbody></table>
{% if provenance_models %}<h2>Provenance: what differs between models</h2>
<table id="provenance-models"><thead><tr><th class="l">field</th>{% for m in provenance_models %}<th class="l">{{ m }}</th>{% endfor %}</tr></thead>
<tbody>{% for k, vals in provenance_differs %}<tr><td class="l">{{ k }}</td>{% for v in vals %}<td class="l">{{ v }}</td>{% endfor %}</tr>{% endfor %}</tbody></table>
{% endif %}
{% if provenance %}<h2>Provenance{{ ': common to all models' if provenance_models else '' }}</h2>
<table><tbody>{% for k, v in provenance.items() %}<tr><td class="l">{{ k }}</td><td class="l">{{ v }}</td></tr>{% endfor %}</tbody></table>{% endif %}
<script>{{ js | safe }}</script>
</body></html>
"""


def fmt(v) -> str:
    if v is None or v == "":
        return "–"
    if isinstance(v, bool):
        return "yes" if v else ""
    if isinstance(v, int):
        return f"{v:,}"
    if isinstance(v, float):
        if v != v:
            return "–"
        a = abs(v)
        return f"{v:,.0f}" if a >= 1e4 else f"{v:.4g}"
    return str(v)


def png64(path: Path) -> str:
    return base64.b64encode(Path(path).read_bytes()).decode()


@dataclass(frozen=True)
class Page:
    """What one report page shows; every section but the title is optional."""

    title: str
    subtitle: str = ""
    headline: list = field(default_factory=list)  # sentences
    figures: list = field(default_factory=list)  # {id, title, caption, png64 | svg}
    summary_rows: list = field(default_factory=list)
    summary_cols: list = field(default_factory=list)
    layer_rows: list = field(default_factory=list)
    layer_cols: list = field(default_factory=list)
    layer_caption: str = ""
    flags: list = field(default_factory=list)
    lost: list = field(default_factory=list)
    uncovered: list = field(default_factory=list)
    notes: list = field(default_factory=list)
    provenance: dict = field(default_factory=dict)
    links: list = field(default_factory=list)  # (label, href)
    banners: list = field(default_factory=list)  # warnings every reader must see first
    faster: list = field(default_factory=list)  # "what would make it faster", sentences
    cached_flags: list = field(default_factory=list)  # flags that the cache allowance explains (collapsed)
    provenance_models: list = field(default_factory=list)  # comparison: the models, one column each
    provenance_differs: list = field(default_factory=list)  # (field, [value per model]) where models differ
    fusion_models: list = field(default_factory=list)  # the fusion check (report/fusion.py): the whole model, a row a batch
    fusion_model_cols: list = field(default_factory=list)
    fusion_units: list = field(default_factory=list)  # ... and each distinct block alone
    fusion_unit_cols: list = field(default_factory=list)
    code: str = ""  # Python that applies what the page recommends, shown as code (and saved beside it by the caller)
    code_title: str = "Apply it"


def render(path: Path, page: Page) -> Path:
    """Write `page` as one self-contained HTML file."""
    env = Environment(autoescape=True)
    html = env.from_string(_TEMPLATE).render(**asdict(page), conventions={**CONVENTIONS, **DEFINITIONS}, css=_CSS, js=_SORT_JS, fmt=fmt,
                                             version=__version__)
    return atomic_write_text(path, html)
