"""The LSD ablation of HUST-ANT's remedies: result files -> one table (markdown + JSON).

Each row is one remedy (or combination) as a finished entry of one of the small
configurations, summarised over its seeds as mean ± sample std of the macro F1, with its
difference to the baseline (plain cross-entropy, linear probe). Rows are only comparable
because they share the validation split: the renderer refuses rows whose validation
fingerprints differ (an oversampled run changes the training split only). The table's formats
are a :class:`~abawbench.boards.formats.FormatRegistry`, like the leaderboard's: another output
is one more registered function.

    python -m abawbench_builtins.hust_ant.ablation --runs runs/hust_ant --out leaderboards/hust_ant_lsd_ablation
"""

from __future__ import annotations

import argparse
import json
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from abawbench.atomic import atomic_write_text
from abawbench.boards.formats import FormatRegistry, number
from abawbench.errors import DataFormatError
from abawbench.results import RunResult, git_commit, iter_results, without_settings_digest

CONFIGS = "plugins/abawbench_builtins/hust_ant/configs"


@dataclass(frozen=True)
class Remedy:
    """A table row: which entry of which run folder measures it, and how to reproduce it."""

    label: str
    folder: str
    entry: str
    command: str
    reference: str = "baseline: cross-entropy, linear probe"
    """The row this one is compared with (same input size and training data otherwise)."""


def _run(config: str) -> str:
    return f"abawbench run --config {CONFIGS}/{config}.toml"


SMOOTH = "cross-entropy-smooth"
LP32 = "linear probe at 32 px (+ smoothing): control for the rows below"
DLN_SEED = "smoothing + class weights [1,3,5,1,1,1], oversampled, frozen BN"
DLN_LOSS = "cross-entropy"  # with the seed's options (configs/small/lsd_dln.toml)
ROWS: tuple[Remedy, ...] = (
    Remedy("baseline: cross-entropy, linear probe", "small/lsd_linear_probe",
           "resnet10t__linear-probe-linear__cross-entropy", _run("small/lsd_linear_probe")),
    Remedy("+ label smoothing 0.2", "small/lsd_linear_probe",
           f"resnet10t__linear-probe-linear__{SMOOTH}", _run("small/lsd_linear_probe")),
    Remedy("+ class weights (inverse frequency)", "small/lsd_linear_probe",
           "resnet10t__linear-probe-linear__cross-entropy-balanced", _run("small/lsd_linear_probe")),
    Remedy("+ label smoothing + class weights", "ablation/lsd_smooth_balanced",
           "resnet10t__linear-probe-linear__cross-entropy", _run("ablation/lsd_smooth_balanced")),
    Remedy("+ RandAugment oversampling", "small/lsd_oversampled",
           "resnet10t__linear-probe-linear__cross-entropy", _run("small/lsd_oversampled")),
    Remedy("+ oversampling + label smoothing", "small/lsd_oversampled",
           f"resnet10t__linear-probe-linear__{SMOOTH}", _run("small/lsd_oversampled")),
    Remedy("cosine schedule (abawbench's default) instead of the seed's constant lr", "ablation/lsd_lp_cosine",
           "resnet10t__linear-probe-linear__cross-entropy", _run("ablation/lsd_lp_cosine")),
    Remedy("synthetic-set normalisation (the seed's) instead of the model's", "ablation/lsd_lp_synthstats",
           "synthstats-resnet10t__linear-probe-linear__cross-entropy", _run("ablation/lsd_lp_synthstats")),
    Remedy(LP32, "ablation/lsd_lp32", f"resnet10t__linear-probe-linear__{SMOOTH}", _run("ablation/lsd_lp32")),
    Remedy("fine-tuning, 32 px, 1 epoch (+ smoothing)", "small/lsd_finetune",
           f"resnet10t__finetune-linear__{SMOOTH}", _run("small/lsd_finetune"), LP32),
    Remedy(f"DLN ResNet-10-T, 32 px, 1 epoch ({DLN_SEED})", "small/lsd_dln",
           f"dln-resnet10t__finetune-linear__{DLN_LOSS}", _run("small/lsd_dln") + " --models dln:resnet10t", LP32),
    Remedy(f"DLN MobileNetV3-Small, 32 px, 1 epoch ({DLN_SEED})", "small/lsd_dln",
           f"dln-mobilenetv3_small_100__finetune-linear__{DLN_LOSS}", _run("small/lsd_dln"), LP32),
    Remedy("mean-prob ensemble of the two DLNs", "small/lsd_dln",
           f"ensemble-mean-prob-dln-resnet10t__finetune-linear__{DLN_LOSS}-dln-mobilenetv3_small_100__finetune-linear__{DLN_LOSS}",
           # members are named by their labels (unique within the run folder)
           "abawbench ensemble --method mean-prob --track lsd --runs runs/hust_ant/small/lsd_dln --seed S "
           f"--members dln-resnet10t__finetune-linear__{DLN_LOSS},dln-mobilenetv3_small_100__finetune-linear__{DLN_LOSS}",
           LP32),
    Remedy("DLN ResNet-10-T warm-started from the linear probe (+ smoothing)", "small/lsd_linear_probe",
           f"dln-resnet10t__finetune-linear__{DLN_LOSS}", _run("small/lsd_dln_warm_start"),
           f"DLN ResNet-10-T, 32 px, 1 epoch ({DLN_SEED})"),
)


def collect(runs: Path) -> dict[tuple[str, str], list[RunResult]]:
    """Completed lsd results by (run folder relative to ``runs``, entry folder)."""
    found: dict[tuple[str, str], list[RunResult]] = {}
    for path, result in iter_results(runs, track="lsd"):
        if result.status != "completed" or result.primary is None:
            continue
        folder = path.parent.parent.parent.relative_to(runs).as_posix()
        # Entry folders end in a settings digest; the table names entries by their readable part
        # (each run folder holds one configuration, so the readable part is unique within it).
        found.setdefault((folder, without_settings_digest(path.parent.name)), []).append(result)
    return found


def summarise(rows: Sequence[Remedy], found: dict[tuple[str, str], list[RunResult]]) -> list[dict[str, Any]]:
    """One dict per row with scores, seeds and provenance; rows without results are kept
    (marked missing), never silently dropped."""
    out: list[dict[str, Any]] = []
    validation: set[str] = set()
    means: dict[str, float] = {}
    for remedy in rows:
        results = sorted(found.get((remedy.folder, remedy.entry), []), key=lambda r: r.seed)
        scores = [r.primary.value for r in results]  # type: ignore[union-attr]
        row: dict[str, Any] = {"remedy": remedy.label, "entry": remedy.entry, "runs": remedy.folder,
                               "command": remedy.command, "seeds": [r.seed for r in results],
                               "per_seed": scores, "git_commits": sorted({r.git_commit or "unknown" for r in results}),
                               "settings": settings_of(results[0]) if results else None}
        if scores:
            mean = statistics.fmean(scores)
            row.update(mean=mean, std=statistics.stdev(scores) if len(scores) > 1 else None,
                       train_images=results[0].split_sizes.get("train"),
                       train_s=statistics.fmean(r.timings.get("train_s", 0.0) for r in results) if results[0].timings.get("train_s") else None,
                       per_class=_mean_per_class(results))
            validation.update(r.dataset_fingerprints.get("validation", "") for r in results)
            means[remedy.label] = mean
            reference = means.get(remedy.reference)
            row["delta"] = None if reference is None or remedy.label == remedy.reference else mean - reference
            row["compared_with"] = remedy.reference
        out.append(row)
    if len(validation) > 1:
        raise DataFormatError(f"ablation rows were scored on different validation splits: {sorted(validation)}")
    return out


def settings_of(result: RunResult) -> dict[str, Any]:
    """What a row ran with, as its result recorded it: enough to tell two tables apart."""
    config = result.config
    return {"model": result.spec.model, "loss": result.spec.loss, "loss_options": result.spec.loss_options,
            "dataset": result.dataset, "weights": config.get("weights"), "protocol": config.get("protocol"),
            "dataset_fingerprints": result.dataset_fingerprints}


def _mean_per_class(results: Sequence[RunResult]) -> dict[str, float]:
    per = [r.per_class.get("expr", {}) for r in results]
    names = per[0].keys() if per else []
    return {n: statistics.fmean(p[n] for p in per if n in p) for n in names}


ABLATION_FORMATS: FormatRegistry[list[dict[str, Any]]] = FormatRegistry("ablation table")


@ABLATION_FORMATS.register("markdown")
def render_markdown(rows: list[dict[str, Any]]) -> str:
    """The remedies table, the per-class F1 table, and the commands that reproduce the rows."""
    lines = ["| remedy | macro F1 (mean ± std) | Δ vs its reference | seeds | train images | train s/seed |",
             "|---|---|---|---|---|---|"]
    for row in rows:
        if "mean" not in row:
            score = "not run"
        else:  # one seed has no spread: say so rather than print ± 0
            score = f"{row['mean']:.4f} ± {row['std']:.4f}" if row["std"] is not None else f"{row['mean']:.4f} (1 seed)"
        train_s = f"{row['train_s']:.0f}" if row.get("train_s") else "—"
        lines.append(f"| {row['remedy']} | {score} | {number(row.get('delta'), signed=True)} | "
                     f"{','.join(map(str, row['seeds'])) or '—'} | {row.get('train_images') or '—'} | {train_s} |")
    classes = next((list(r["per_class"]) for r in rows if r.get("per_class")), [])
    if classes:
        lines += ["", "Per-class F1 (mean over seeds):", "",
                  "| remedy | " + " | ".join(classes) + " |", "|---|" + "---|" * len(classes)]
        for row in rows:
            if row.get("per_class"):
                lines.append(f"| {row['remedy']} | " + " | ".join(f"{row['per_class'][c]:.3f}" for c in classes) + " |")
    lines += ["", "Commands (from the repository root, `ABAWBENCH_CACHE` shared so the data is generated once):", ""]
    for command in dict.fromkeys(row["command"] for row in rows):
        lines.append(f"    {command}")
    return "\n".join(lines) + "\n"


@ABLATION_FORMATS.register("json")
def render_json(rows: list[dict[str, Any]]) -> str:
    """Every row with its per-seed scores, settings and commits, for scripts; ``commit`` is the
    source tree the table was rendered from, ``result_commits`` those its results were measured
    at (one commit, when the table was regenerated in one go)."""
    measured = sorted({commit for row in rows for commit in row.get("git_commits", [])})
    return json.dumps({"track": "lsd", "metric": "macro F1", "commit": git_commit(), "result_commits": measured,
                       "rows": rows}, indent=2)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m abawbench_builtins.hust_ant.ablation")
    parser.add_argument("--runs", type=Path, default=Path("runs/hust_ant"))
    parser.add_argument("--out", type=Path, default=Path("leaderboards/hust_ant_lsd_ablation"),
                        help="path without suffix; .md and .json are written")
    parser.add_argument("--preamble", type=Path, help="markdown put above the table")
    args = parser.parse_args(argv)
    rows = summarise(ROWS, collect(args.runs))
    preamble = args.preamble.read_text(encoding="utf-8") if args.preamble else ""
    markdown = ABLATION_FORMATS.render(rows, "markdown")
    atomic_write_text(args.out.with_suffix(".md"), preamble + markdown)
    atomic_write_text(args.out.with_suffix(".json"), ABLATION_FORMATS.render(rows, "json"))
    print(markdown)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
