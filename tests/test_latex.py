"""LaTeX leaderboards a paper can include: table floats, booktabs, aligned numbers, the best value
in bold, mean ± std, typeset metric names, a compact default and chosen columns; compiled with
pdflatex when a TeX toolchain is present."""

from __future__ import annotations

import dataclasses
import shutil
import subprocess

import pytest

from abawbench.boards import render
from abawbench.boards.ablation import ABLATION_FORMATS, build_ablation
from abawbench.boards.latex import escape, render_latex
from abawbench.cli import main
from abawbench.errors import ConfigError

from test_leaderboard import EVIL, REFERENCES, board, make_result

MTL_SUBS = {"ccc_valence": 0.5, "ccc_arousal": 0.4, "ccc_mean": 0.45, "f1_expr": 0.3, "f1_au": 0.6}


def mtl_board():
    results = [make_result("hog__linear-probe-linear__multitask", 1.2, seed=0, track="mtl", subs=MTL_SUBS),
               make_result("hog__linear-probe-linear__multitask", 1.4, seed=1, track="mtl", subs=MTL_SUBS),
               make_result("vit__finetune-linear__multitask", 1.1, track="mtl",
                           subs=MTL_SUBS | {"ccc_valence": 0.7, "f1_au": 0.55}),
               make_result("broken", None, track="mtl", status="failed")]
    return board(results, track="mtl")


def test_a_section_is_a_captioned_labelled_booktabs_float():
    text = render(mtl_board(), "latex")
    for part in (r"\begin{table}", r"\caption{Track mtl", r"\label{tab:abawbench-mtl-1}", r"\toprule",
                 r"\midrule", r"\bottomrule", r"\end{table}"):
        assert part in text, part
    assert r"\paragraph" not in text and "fingerprint" in text  # the data is named in the caption


def test_compact_columns_typeset_headers_mean_std_and_the_best_in_bold():
    text = render(mtl_board(), "latex")
    header = next(line for line in text.splitlines() if line.startswith("entry &"))
    assert header == (r"entry & $P_\mathrm{MTL}$ (mean $\pm$ std) & $\mathrm{CCC}_V$ & $\mathrm{CCC}_A$ & "
                      r"$\mathrm{F1}_\mathrm{expr}$ & $\mathrm{F1}_\mathrm{AU}$ \\")
    hog = next(line for line in text.splitlines() if line.startswith(r"hog\_\_"))
    # rank 1 (mean 1.3 over two seeds): bold mean, plain spread; the other row has the best CCC_V
    assert r"\textbf{1.300} $\pm$ 0.141" in hog and r"& 0.500 &" in hog and r"\textbf{0.600}" in hog
    vit = next(line for line in text.splitlines() if line.startswith(r"vit\_\_"))
    assert r"\textbf{0.700}" in vit and r"& 1.100 &" in vit
    failed = next(line for line in text.splitlines() if line.startswith("broken"))
    assert "failed" in failed and r"\textbf" not in failed
    for left_out in ("date", "abawbench", "note", "backbone"):
        assert left_out not in header


def test_columns_choose_more_and_an_unknown_one_is_refused():
    text = render_latex(mtl_board(), ["rank", "label", "backbone", "score", "ci", "ccc_mean", "seeds"])
    assert r"rank & entry & backbone &" in text and r"$\overline{\mathrm{CCC}}$" in text and "2 \\\\" in text
    with pytest.raises(ConfigError, match="unknown LaTeX column 'nope'"):
        render_latex(mtl_board(), ["label", "nope"])


def test_columns_flag_is_for_latex_only(tmp_path):
    write = ["--track", "lsd", "--runs", str(tmp_path)]
    assert main(["leaderboard", *write, "--format", "markdown", "--columns", "label"]) == 2


TEX_DOCUMENT = r"""\documentclass{article}
\usepackage{booktabs,array}
\begin{document}
\input{table.tex}
\end{document}
"""


@pytest.mark.skipif(shutil.which("pdflatex") is None, reason="needs pdflatex (a TeX toolchain with booktabs)")
def test_the_tables_compile_with_pdflatex(tmp_path):
    hostile = [make_result(EVIL + " & 50% #1 $x$ {y} ~^\\", 0.5), make_result("res_net & 50%", 0.4),
               make_result("dead", None, status="failed")]
    tables = render(board(hostile, REFERENCES), "latex") + render(mtl_board(), "latex")
    (tmp_path / "table.tex").write_text(tables, encoding="utf-8")
    (tmp_path / "doc.tex").write_text(TEX_DOCUMENT, encoding="utf-8")
    done = subprocess.run(["pdflatex", "-halt-on-error", "-interaction=nonstopmode", "doc.tex"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout[-2000:]
    assert (tmp_path / "doc.pdf").stat().st_size > 1000


@pytest.mark.skipif(shutil.which("pdflatex") is None, reason="needs pdflatex (a TeX toolchain with booktabs)")
def test_the_compact_tables_fit_the_page(tmp_path):
    long_labels = [make_result(f"{name}__linear-probe-linear__multitask", 1.0 + i / 10, track="mtl", subs=MTL_SUBS)
                   for i, name in enumerate(("hog+mobilenetv3_small_100", "ensemble:mean-prob(a__x,b__y)"))]
    (tmp_path / "table.tex").write_text(render(board(long_labels, track="mtl"), "latex"), encoding="utf-8")
    (tmp_path / "doc.tex").write_text(TEX_DOCUMENT, encoding="utf-8")
    subprocess.run(["pdflatex", "-halt-on-error", "-interaction=nonstopmode", "doc.tex"], cwd=tmp_path,
                   capture_output=True, timeout=120, check=True)
    assert "Overfull \\hbox" not in (tmp_path / "doc.log").read_text(errors="replace")


def test_labels_are_valid_label_keys_whatever_the_track_is_called():
    table = board([make_result("a", 0.5, track="mtl"), make_result("b", 0.6, track="mtl")], track="mtl")
    text = render(dataclasses.replace(table, track="my_track"), "latex")
    assert r"\label{tab:abawbench-my-track-1}" in text
    assert "\\_" not in "".join(line for line in text.splitlines() if line.startswith(r"\label"))


def test_escape_typesets_greek_and_maths_and_never_passes_an_untypesettable_character():
    assert escape("Δ ± σ") == r"$\Delta$ $\pm$ $\sigma$"
    assert escape("café") == "café"  # Latin-1 letters: T1 has them
    assert escape("模型 ✓") == "?? ?"
    assert all(ord(ch) < 128 or "\u00c0" <= ch <= "\u00ff" for ch in escape("a—b…c 模 ✓ Δ"))


def test_ablation_latex_headers_typeset_delta():
    results = [make_result("base", 0.5, track="mtl", subs=MTL_SUBS), make_result("x", 0.6, track="mtl", subs=MTL_SUBS)]
    text = ABLATION_FORMATS.render(build_ablation(board(results, track="mtl"), "base"), "latex")
    assert r"$\Delta$ vs reference" in text and r"$\Delta$ $\mathrm{CCC}_V$" in text
    assert "Δ" not in text and "±" not in text
