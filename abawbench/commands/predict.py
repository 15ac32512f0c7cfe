"""``abawbench predict``: the official submission file of a trained entry."""

from __future__ import annotations

from pathlib import Path

from abawbench.commands import output_file


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "predict",
        help="write the official submission file for a trained entry",
        description=(
            "Write the challenge's submission file (header kept, one line per test image) from a "
            "result file written by 'abawbench run' (runs/<track>/<entry>/seed<k>.json). Uses the "
            "test predictions stored with the run, or reloads the trained weights and predicts the "
            "test split of --data."
        ),
    )
    parser.add_argument("result", type=Path,
                        help="a result JSON, an entry folder, or an entry's label or an unambiguous "
                             "prefix of it (looked up under --runs)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the run, when RESULT is not a JSON file")
    parser.add_argument("--runs", type=Path, default=Path("runs"), help="the runs folder to look a label up in")
    parser.add_argument("--track", help="the track to look a label up in (default: every track under --runs)")
    parser.add_argument("--out", type=Path, required=True, help="submission file to write")
    parser.add_argument("--data", type=Path, help="dataset root whose test split to predict (default: stored predictions)")
    parser.add_argument("--tuned-thresholds", action="store_true",
                        help="use the decision thresholds of the multilabel task tuned on validation instead of 0.5 (tracks with a multilabel task)")
    parser.set_defaults(handler=handle)


def handle(args) -> int:
    from abawbench.errors import ConfigError
    from abawbench.predict import predict_entry
    from abawbench.results import find_entry_result

    output_file(args.out, "--out", "predictions.txt")
    if args.result.is_file():
        result = args.result
    elif (args.result / f"seed{args.seed}.json").is_file():
        result = args.result / f"seed{args.seed}.json"
    elif args.result.suffix == ".json":
        raise ConfigError(f"{args.result}: no such result file")
    else:
        result = find_entry_result(args.runs, args.track, str(args.result), args.seed)
    rows = predict_entry(result, args.out, data=args.data, tuned_thresholds=args.tuned_thresholds)
    print(f"wrote {rows} predictions to {args.out}")
    return 0
