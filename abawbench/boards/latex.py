"""Leaderboards as LaTeX a paper can include: one ``table`` float per section, with caption and
label, booktabs rules, right-aligned numbers at three decimals, mean ± std, the best value of each
column in bold, and a compact default column set (``--columns`` picks others).

Requires ``\\usepackage{booktabs,array}`` in the preamble (the output's first line says so).
Every text cell is escaped; long entry labels may break after ``__``, ``+`` and ``,`` so a
table fits a page.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Callable, Sequence

from abawbench.boards.build import FAILED, PARTIAL, REPORTED, Leaderboard, Row, Section
from abawbench.errors import ConfigError

DECIMALS = 3
METRIC_HEADERS = {
    "ccc_valence": r"$\mathrm{CCC}_V$",
    "ccc_arousal": r"$\mathrm{CCC}_A$",
    "ccc_mean": r"$\overline{\mathrm{CCC}}$",
    "f1_expr": r"$\mathrm{F1}_\mathrm{expr}$",
    "f1_au": r"$\mathrm{F1}_\mathrm{AU}$",
    "p_mtl": r"$P_\mathrm{MTL}$",
    "macro_f1": r"macro $\mathrm{F1}$",
}
"""How the tracks' metric names are typeset; any other name is shown escaped."""
COMPACT_SUB_SCORES = ("ccc_valence", "ccc_arousal", "f1_expr", "f1_au")
TEXT_COLUMNS = ("rank", "label", "backbone", "protocol", "loss", "seeds", "selection")
NUMBER_COLUMNS = ("score", "ci")
PREAMBLE = r"% abawbench leaderboard; needs \usepackage{booktabs,array}"

_LATEX_SPECIAL = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#",
                  "_": r"\_", "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}",
                  "^": r"\textasciicircum{}", "<": r"\textless{}", ">": r"\textgreater{}"}


_NON_ASCII = {"Δ": r"$\Delta$", "δ": r"$\delta$", "α": r"$\alpha$", "β": r"$\beta$", "γ": r"$\gamma$",
              "λ": r"$\lambda$", "μ": r"$\mu$", "σ": r"$\sigma$", "τ": r"$\tau$", "±": r"$\pm$",
              "×": r"$\times$", "÷": r"$\div$", "≤": r"$\leq$", "≥": r"$\geq$", "≈": r"$\approx$", "→": r"$\rightarrow$",
              "−": "-", "–": "--", "—": "---", "…": r"\ldots{}", "·": r"$\cdot$", "°": r"$^{\circ}$",
              "\u00a0": "~"}
"""Non-ASCII characters names and captions use, as commands every LaTeX engine typesets."""


def escape(text: str) -> str:
    """``text`` safe in LaTeX body text: every special character escaped, common Greek and
    maths symbols as commands, Latin-1 letters (é, ü, ß: T1 has them) as typed, and any other
    non-ASCII character as ``?``: pdflatex has no glyph for it and stops with an error, so one
    such character in a label would make the whole table fail to compile."""
    out = []
    for ch in str(text):
        if ch in _LATEX_SPECIAL:
            out.append(_LATEX_SPECIAL[ch])
        elif ch in _NON_ASCII:
            out.append(_NON_ASCII[ch])
        elif "\u00c0" <= ch <= "\u00ff":
            out.append(ch)
        elif ord(ch) > 127 or (ord(ch) < 32 and ch not in "\t\n"):
            out.append("?")
        else:
            out.append(ch)
    return "".join(out)


def label_key(text: str) -> str:
    """``text`` as a ``\\label`` key: escape() output (``\\_``) is not valid inside ``\\label``,
    so every run of characters outside letters, digits, ``:``, ``.`` and ``-`` becomes ``-``."""
    return re.sub(r"[^A-Za-z0-9:.-]+", "-", str(text))


def breakable(text: str) -> str:
    """Escaped ``text`` that may break after ``__``, ``+``, ``,`` and ``/`` (entry labels have
    no spaces and would run off the page)."""
    out = escape(text)
    for mark in (r"\_\_", "+", ",", "/"):
        out = out.replace(mark, mark + r"\allowbreak{}")
    return out


def metric_header(name: str) -> str:
    return METRIC_HEADERS.get(name, escape(name))


@dataclass(frozen=True)
class _Column:
    name: str
    header: str
    align: str
    value: Callable[[Row], float | None]  # what "best" compares; None for text columns
    text: Callable[[Row], str]


def _fixed(value: float | None) -> str:
    return "--" if value is None else f"{value:.{DECIMALS}f}"


def available_columns(board: Leaderboard, section: Section) -> tuple[str, ...]:
    """Every column name ``--columns`` accepts for ``section``."""
    return TEXT_COLUMNS + NUMBER_COLUMNS + tuple(section.sub_score_names)


def default_columns(board: Leaderboard, section: Section) -> tuple[str, ...]:
    """The compact set: label, the primary score, and the track's four sub-scores when present."""
    return ("label", "score") + tuple(name for name in COMPACT_SUB_SCORES if name in section.sub_score_names)


def _column(board: Leaderboard, section: Section, name: str, count: int) -> _Column:
    """Column ``name`` of a table of ``count`` columns (the label column narrows as they grow)."""
    if name == "label":
        width = max(0.25, min(0.6, 0.8 - 0.09 * (count - 1)))
        return _Column(name, "entry", f">{{\\raggedright\\arraybackslash}}p{{{width:.2f}\\linewidth}}",
                       lambda r: None, lambda r: breakable(r.label or r.entry))
    if name in TEXT_COLUMNS:
        text = {"rank": lambda r: escape(r.rank), "backbone": lambda r: breakable(r.backbone),
                "protocol": lambda r: breakable(r.protocol), "loss": lambda r: breakable(r.loss),
                "seeds": lambda r: str(r.seeds) if r.seeds == r.seeds_total else f"{r.seeds}/{r.seeds_total}",
                "selection": lambda r: escape(r.selection or "--")}[name]
        return _Column(name, escape(name), "l", lambda r: None, text)
    if name == "score":
        spread = any(r.seeds > 1 for r in section.rows)
        header = metric_header(board.primary_metric) + (r" (mean $\pm$ std)" if spread else "")
        return _Column(name, header, "r", lambda r: r.mean, _score_text)
    if name == "ci":
        return _Column(name, r"95\% CI", "r", lambda r: None,
                       lambda r: "--" if r.ci_low is None or r.ci_high is None
                       else f"[{_fixed(r.ci_low)}, {_fixed(r.ci_high)}]")
    if name in section.sub_score_names:
        return _Column(name, metric_header(name), "r", lambda r: r.sub_scores.get(name),
                       lambda r: _fixed(r.sub_scores.get(name)))
    raise ConfigError(f"unknown LaTeX column {name!r}; choose from {', '.join(available_columns(board, section))}")


def _score_text(row: Row) -> str:
    if row.status == FAILED:
        return "failed"
    mean = _fixed(row.mean)
    return f"{mean} $\\pm$ {_fixed(row.std)}" if row.seeds > 1 else mean


def _best(rows: Sequence[Row], value: Callable[[Row], float | None], higher_is_better: bool) -> float | None:
    """The best value of a column over ranked rows (partial and failed rows never win)."""
    values = [value(r) for r in rows if r.status == "completed" and value(r) is not None]
    if not values:
        return None
    return max(values) if higher_is_better else min(values)


def _bold_best(text: str, row: Row, column: _Column, best: float | None) -> str:
    if best is None or row.status != "completed" or column.value(row) is None:
        return text
    if round(column.value(row), DECIMALS) != round(best, DECIMALS):
        return text
    head, sep, tail = text.partition(" $\\pm$ ")  # bold the mean, not its spread
    return f"\\textbf{{{head}}}{sep}{tail}"


def measured_table(board: Leaderboard, section: Section, columns: Sequence[str] | None, number: int) -> str:
    """One ``table`` float for a measured section."""
    names = columns or default_columns(board, section)
    chosen = [_column(board, section, name, len(names)) for name in names]
    spec = "@{}" + "".join(c.align for c in chosen) + "@{}"
    lines = [" & ".join(c.header for c in chosen) + r" \\", r"\midrule"]
    bests = {c.name: _best(section.rows, c.value, board.higher_is_better if c.name == "score" else True)
             for c in chosen}
    tie_note = False
    for row in section.rows:
        cells = [_bold_best(c.text(row), row, c, bests[c.name]) for c in chosen]
        if row.not_worse_than_best and row.rank != "1":
            cells[0] += r"$^{\ast}$"
            tie_note = True
        if row.status == PARTIAL:
            cells[0] += r"$^{\dagger}$"
        lines.append(" & ".join(cells) + r" \\")
    notes = ["Best value per column in bold."]
    if any(r.seeds > 1 for r in section.rows):
        notes.append(r"Mean $\pm$ sample std over seeds.")
    if tie_note:
        notes.append(r"$^{\ast}$: a paired bootstrap cannot tell it from the best row.")
    if any(r.status == PARTIAL for r in section.rows):
        notes.append(r"$^{\dagger}$: some seeds failed; not ranked.")
    order = "higher is better" if board.higher_is_better else "lower is better"
    caption = (f"Track {escape(board.track)}, {metric_header(board.primary_metric)} on validation ({order}), "
               f"{escape(section.title)}. " + " ".join(notes))
    return _float(caption, f"tab:abawbench-{board.track}-{number}", spec, lines)


def reported_table(board: Leaderboard, section: Section, number: int) -> str:
    """Published numbers, at the precision they were published with, with their sources."""
    spec = r"@{}>{\raggedright\arraybackslash}p{0.34\linewidth}lr>{\raggedright\arraybackslash}p{0.3\linewidth}@{}"
    lines = [f"entry & split & {metric_header(board.primary_metric)} & source" + r" \\", r"\midrule"]
    for row in section.rows:
        score = row.published or _fixed(row.mean)
        lines.append(f"{escape(row.label or row.entry)} & {escape(row.split)} & {escape(score)} & "
                     f"{escape(row.source)}" + r" \\")
    caption = (f"Track {escape(board.track)}: {escape(section.title)}, on {escape(section.dataset)}. "
               "Numbers as published; not comparable with tables measured on other data.")
    return _float(caption, f"tab:abawbench-{board.track}-{number}", spec, lines)


def _float(caption: str, label: str, spec: str, body: Sequence[str]) -> str:
    return "\n".join([r"\begin{table}[tbp]", r"\centering", r"\small", f"\\caption{{{caption}}}",
                      f"\\label{{{label_key(label)}}}", r"\smallskip", f"\\begin{{tabular}}{{{spec}}}", r"\toprule", *body,
                      r"\bottomrule", r"\end{tabular}", r"\end{table}"])


def render_latex(board: Leaderboard, columns: Sequence[str] | None = None) -> str:
    """Every section of ``board`` as a table float; ``columns`` (names from
    :func:`available_columns`) replace the compact default in measured sections."""
    parts = [PREAMBLE]
    for number, section in enumerate(board.sections, start=1):
        if section.kind == REPORTED:
            parts += ["", reported_table(board, section, number)]
        else:
            parts += ["", measured_table(board, section, columns, number)]
    if not board.sections:
        parts.append(f"% no results for track {escape(board.track)}")
    return "\n".join(parts) + "\n"


def ablation_tables(ablation: Any) -> str:
    """An :class:`~abawbench.boards.ablation.Ablation` as table floats: the headline deltas, then
    one per-class table per task."""
    from abawbench.boards.ablation import headline, per_class_table

    parts = [PREAMBLE]
    header, rows = headline(ablation)
    spec = "@{}>{\\raggedright\\arraybackslash}p{0.4\\linewidth}" + "r" * (len(header) - 1) + "@{}"
    body = [" & ".join(_ablation_header(h, ablation) for h in header) + r" \\", r"\midrule"]
    body += [" & ".join([breakable(row[0])] + [escape(c) for c in row[1:]]) + r" \\"
             for row in rows]
    caption = (f"Track {escape(ablation.track)}: differences against {escape(ablation.reference)} "
               f"({escape(ablation.section)}).")
    parts += ["", _float(caption, f"tab:abawbench-{ablation.track}-ablation", spec, body)]
    for task in ablation.classes:
        header, rows = per_class_table(ablation, task)
        spec = "@{}>{\\raggedright\\arraybackslash}p{0.3\\linewidth}" + "r" * (len(header) - 1) + "@{}"
        body = [" & ".join(escape(h) for h in header) + r" \\", r"\midrule"]
        body += [" & ".join([breakable(row[0])] + [escape(c) for c in row[1:]]) + r" \\" for row in rows]
        caption = (f"Per-class $\\mathrm{{F1}}$ of task {escape(task)}, mean over seeds; difference against "
                   f"{escape(ablation.reference)} in parentheses.")
        parts += ["", _float(caption, f"tab:abawbench-{ablation.track}-ablation-{task}", spec, body)]
    return "\n".join(parts) + "\n"


def _ablation_header(header: str, ablation: Any) -> str:
    if header.startswith("Δ "):
        return r"$\Delta$ " + metric_header(header[2:])
    if header.endswith("(mean ± std)"):
        return metric_header(ablation.primary_metric) + r" (mean $\pm$ std)"
    return escape(header)
