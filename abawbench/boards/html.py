"""Leaderboards as standalone HTML pages: a doctype, a charset, inline CSS and a small inline
script that makes every table sortable by clicking its header. No CDN and no external fetch,
so a page opens offline and renders the same anywhere.

The page skeleton (:func:`page`) and the leaderboard tables (:func:`leaderboard_tables`) are
shared by ``leaderboard --format html`` and the report (:mod:`abawbench.boards.report`). Every
table is sortable and every field goes through :func:`html.escape`; confidence intervals are drawn as small inline SVGs on
one scale per section, so overlapping intervals are visible at a glance.
"""

from __future__ import annotations

import html
from urllib.parse import urlparse
from typing import Callable, Sequence

from abawbench.boards.build import REPORTED, Leaderboard, Row, Section
from abawbench.boards.formats import cells, headers, intro

esc = html.escape

STYLE = """
:root { --ink: #1a202c; --muted: #5a6474; --line: #d9dee7; --accent: #2b6cb0; --band: #f5f7fa; }
* { box-sizing: border-box; }
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif;
       color: var(--ink); margin: 0 auto; padding: 24px 32px 64px; max-width: 1400px; background: #fff; }
h1 { font-size: 24px; margin: 0 0 4px; } h2 { font-size: 19px; margin: 32px 0 8px; }
h3 { font-size: 16px; margin: 24px 0 6px; } h4 { font-size: 14px; margin: 16px 0 4px; color: var(--muted); }
p.lead, p.note { color: var(--muted); margin: 4px 0 12px; }
.origin { display: inline-block; background: #fff4e5; color: #8a4b00; border: 1px solid #f3c98b;
          border-radius: 4px; padding: 0 6px; font-size: 12px; }
.scroll { overflow-x: auto; }
table { border-collapse: collapse; margin: 6px 0 16px; font-size: 13px; }
th, td { padding: 4px 8px; border-bottom: 1px solid var(--line); text-align: left; vertical-align: middle; }
th { background: var(--band); position: sticky; top: 0; cursor: pointer; user-select: none; white-space: nowrap; }
th.sorted-asc::after { content: " \\25B2"; font-size: 10px; } th.sorted-desc::after { content: " \\25BC"; font-size: 10px; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
td.label { min-width: 16em; max-width: 30em; overflow-wrap: anywhere; }
tr.failed td, tr.partial td { color: var(--muted); }
tr:hover td { background: #eef4fb; }
a { color: var(--accent); }
.entry { border-top: 2px solid var(--line); margin-top: 28px; }
.figures { display: flex; flex-wrap: wrap; gap: 12px 28px; align-items: flex-start; }
.figures figure { margin: 0; } .figures figcaption { color: var(--muted); font-size: 12px; }
dl.provenance { display: grid; grid-template-columns: max-content 1fr; gap: 2px 16px; font-size: 13px; }
dl.provenance dt { color: var(--muted); } dl.provenance dd { margin: 0; overflow-wrap: anywhere; }
.pos { color: #276749; } .neg { color: #9b2c2c; }
"""

SCRIPT = """
(function () {
  function key(cell) {
    var sort = cell.getAttribute("data-sort");
    if (sort !== null && sort !== "" && !isNaN(Number(sort))) { return {n: Number(sort)}; }
    return {t: cell.textContent.trim().toLowerCase()};
  }
  function compare(a, b) {
    if ("n" in a && "n" in b) { return a.n - b.n; }
    if ("n" in a) { return -1; }
    if ("n" in b) { return 1; }
    return a.t < b.t ? -1 : (a.t > b.t ? 1 : 0);
  }
  document.querySelectorAll("table").forEach(function (table) {
    var heads = table.querySelectorAll("thead th");
    heads.forEach(function (th, column) {
      th.addEventListener("click", function () {
        var body = table.tBodies[0];
        var descending = !th.classList.contains("sorted-desc");
        heads.forEach(function (other) { other.classList.remove("sorted-asc", "sorted-desc"); });
        th.classList.add(descending ? "sorted-desc" : "sorted-asc");
        var rows = Array.prototype.slice.call(body.rows);
        rows.sort(function (a, b) {
          var order = compare(key(a.cells[column]), key(b.cells[column]));
          return descending ? -order : order;
        });
        rows.forEach(function (row) { body.appendChild(row); });
      });
    });
  });
  document.body.setAttribute("data-ready", "1");
})();
"""


def page(title: str, body: str) -> str:
    """A complete HTML document around ``body`` (already escaped markup)."""
    return (f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">\n'
            f"<title>{esc(title)}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n{body}\n"
            f"<script>{SCRIPT}</script>\n</body>\n</html>\n")


def safe_url(url: str | None) -> bool:
    """Whether ``url`` may become a link: http(s) only, since a reference file is text anyone
    can edit and a ``javascript:`` or ``data:`` href runs when the reader clicks it."""
    if not url:
        return False
    try:
        return urlparse(url.strip()).scheme.lower() in ("http", "https")
    except ValueError:
        return False


def interval_svg(row: Row, low: float, high: float, width: int = 120) -> str:
    """The row's 95% interval as a bar and its mean as a dot, on the section's scale."""
    if row.mean is None or high <= low:
        return ""

    def x(value: float) -> float:
        return round(4 + (width - 8) * (value - low) / (high - low), 1)

    parts = [f'<svg width="{width}" height="14" viewBox="0 0 {width} 14" role="img" '
             f'aria-label="interval"><line x1="4" y1="7" x2="{width - 4}" y2="7" stroke="#e2e8f0"/>']
    if row.ci_low is not None and row.ci_high is not None:
        parts.append(f'<line x1="{x(row.ci_low)}" y1="7" x2="{x(row.ci_high)}" y2="7" stroke="#2b6cb0" '
                     f'stroke-width="3" stroke-linecap="round"/>')
    parts.append(f'<circle cx="{x(row.mean)}" cy="7" r="3.2" fill="#1a365d"/></svg>')
    return "".join(parts)


def _scale(rows: Sequence[Row]) -> tuple[float, float]:
    values = [v for r in rows for v in (r.mean, r.ci_low, r.ci_high) if v is not None]
    if not values:
        return 0.0, 0.0
    low, high = min(values), max(values)
    pad = (high - low) * 0.05 or 0.01
    return low - pad, high + pad


def _numbers(board: Leaderboard, section: Section) -> dict[str, Callable[[Row], float | None]]:
    """The number behind each numeric column: what it sorts by (display strings do not sort)."""
    numbers: dict[str, Callable[[Row], float | None]] = {
        "rank": lambda r: float(r.rank) if r.rank.isdigit() else None,
        board.primary_metric: lambda r: r.mean,
        f"{board.primary_metric} (mean ± std)": lambda r: r.mean,
        "95% CI": lambda r: r.ci_low,
    }
    for name in section.sub_score_names:
        numbers[name] = lambda r, name=name: r.sub_scores.get(name)
    return numbers


def section_table(board: Leaderboard, section: Section,
                  label_cell: Callable[[Row], str] | None = None) -> str:
    """One section as a sortable table; ``label_cell`` may turn a label into a link."""
    names = headers(board, section)
    numbers = _numbers(board, section)
    low, high = _scale(section.rows)
    drawn = section.kind != REPORTED and high > low
    head = "".join(f"<th>{esc(h)}</th>" for h in names) + ("<th>interval</th>" if drawn else "")
    body = []
    for row in section.rows:
        tds = []
        for header, text in zip(names, cells(section, row)):
            value = numbers[header](row) if header in numbers else None
            kind = ' class="num"' if header in numbers and header != "rank" else (
                ' class="label"' if header == "label" else "")
            attribute = f' data-sort="{value!r}"' if value is not None else ""
            if header == "label" and label_cell is not None:
                content = label_cell(row)
            elif header == "source" and safe_url(row.url):
                content = f'<a href="{esc(row.url)}">{esc(text)}</a>'
            else:
                content = esc(text)
            tds.append(f"<td{kind}{attribute}>{content}</td>")
        if drawn:
            tds.append(f'<td data-sort="{esc(repr(row.mean)) if row.mean is not None else ""}">'
                       f"{interval_svg(row, low, high)}</td>")
        body.append(f'<tr class="{esc(row.status)}">' + "".join(tds) + "</tr>")
    origin = f' <span class="origin">{esc(section.origin)}</span>' if section.origin else ""
    return (f'<section class="{esc(section.kind)}">\n<h3>{esc(section.title)}</h3>{origin}\n'
            f'<div class="scroll"><table>\n<thead><tr>{head}</tr></thead>\n<tbody>\n'
            + "\n".join(body) + "\n</tbody>\n</table></div>\n</section>")


def leaderboard_tables(board: Leaderboard, label_cell: Callable[[Row], str] | None = None) -> str:
    """Every section of ``board``; a note when there is none."""
    parts = [f'<p class="lead">{esc(intro(board))}</p>']
    if not board.sections:
        parts.append('<p class="note">No results.</p>')
    parts += [section_table(board, section, label_cell) for section in board.sections]
    return "\n".join(parts)


def render_html(board: Leaderboard) -> str:
    """The leaderboard as a standalone page."""
    return page(f"Leaderboard: {board.track}",
                f"<h1>Leaderboard: {esc(board.track)}</h1>\n{leaderboard_tables(board)}")

