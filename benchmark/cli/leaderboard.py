"""`python -m benchmark leaderboard`: both protocols on a results folder, a board or published accuracies."""
from __future__ import annotations

import argparse
import sys
import textwrap
from pathlib import Path

from benchmark.cli.options import plugin_option
from estimators import InvalidInput


def add_parser(sub) -> None:
    board = sub.add_parser(
        "leaderboard", help="rank the estimators from a results folder or published accuracies (markdown, CSV, plots)",
        description=textwrap.fill(
                    "Evaluate how well each estimator's scores predict fine-tuning, by two protocols. `tasks` (the "
                    "IIMM paper's): per encoder, across tasks, do scores predict the measured deltas? `models` (model "
                    "selection, the LogME line): per task, does the score put the encoder that fine-tunes best on "
                    "top? Writes leaderboard.md, stats.csv (every number), summary.csv, stability.csv, noise.csv "
                    "(seed noise beside task spread), selection*.csv (the models protocol), scores.csv, outcomes.csv "
                    "and plots/. A partial results folder gives a leaderboard of what exists, marked partial. "
                    "With --accuracies, the models protocol runs on a published table of fine-tuning accuracies.", 100),
        epilog="examples:\n"
               "  python -m benchmark leaderboard --results results/mini\n"
               "  python -m benchmark leaderboard --tables leaderboard/mini --out /tmp/board\n"
               "  python -m benchmark leaderboard --accuracies ../shared/data/zoo/sfda_group1.csv \\\n"
               "      --models leaderboard/sfda_group1/models.csv --out leaderboard/sfda_group1",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    source = board.add_mutually_exclusive_group(required=True)
    source.add_argument("--results", metavar="DIR", help="a folder written by `run`")
    source.add_argument("--tables", metavar="DIR", help="a board folder: rebuild its board from its own scores.csv, "
                        "outcomes.csv (and not_scored.csv, provenance.json) without the cells")
    source.add_argument("--accuracies", metavar="ACC.csv",
                        help="published fine-tuning accuracies, columns task,model,accuracy (optional method): the "
                             "models protocol's ground truth")
    board.add_argument("--scores", metavar="SCORES.csv",
                       help="with --accuracies: estimator scores, columns task,model,estimator,score (optional "
                            "higher_is_better; default: the registered estimator's direction, else higher). Without "
                            "it only the baselines that need no embeddings are ranked")
    board.add_argument("--models", metavar="MODELS.csv",
                       help="model attributes ranked as static baselines: a column model plus numeric columns "
                            "(e.g. params, imagenet_top1)")
    board.add_argument("--protocol", choices=("all", "tasks", "models"), default="all",
                       help="which protocol(s) to evaluate (default: all; --accuracies allows only models)")
    board.add_argument("--out", metavar="DIR", help="where to write (default: the --results or --tables folder)")
    board.add_argument("--suite", help="suite name shown in the provenance (default: read from the results)")
    board.add_argument("--n-boot", type=int, default=9999, help="bootstrap resamples (default: 9999)")
    board.add_argument("--seed", type=int, default=0, help="bootstrap seed (default: 0)")
    plugin_option(board)


def command(args) -> int:
    from benchmark.cli.board import build_board, build_selection_board
    from encoders.cache import ensure_writable

    if args.accuracies is not None:
        if args.protocol == "tasks":
            raise InvalidInput("--accuracies gives model-selection ground truth: use --protocol models (or all)")
        if args.out is None:
            raise InvalidInput("--accuracies needs --out DIR")
        ensure_writable(Path(args.out), "--out")
        result = build_selection_board(Path(args.accuracies), Path(args.out), scores=args.scores and Path(args.scores),
                                 models=args.models and Path(args.models), n_boot=args.n_boot, seed=args.seed)
        _print_selection(result["selection"])
        print(f"leaderboard: {result['path']}")
        return 0
    if args.scores is not None:
        raise InvalidInput("--scores goes with --accuracies; a results folder carries its own scores")
    source = Path(args.results or args.tables)
    if source.is_dir():
        ensure_writable(Path(args.out or source), "--out")
    result = build_board(source, Path(args.out or source), suite=args.suite, n_boot=args.n_boot, seed=args.seed,
                   from_tables=args.tables is not None, protocol=args.protocol,
                   models=args.models and Path(args.models))
    if result["missing"]:
        print(f"partial results: missing {'; '.join(result['missing'])}", file=sys.stderr)
    print(f"leaderboard: {result['path']}")
    return 0


def _print_selection(selection) -> None:
    """One line per (method, row): mean weighted tau with its interval, best first."""
    for r in selection.summary.itertuples():
        method = f"{r.method}: " if r.method else ""
        print(f"{method}{r.rank:>2}. {r.estimator:<24} mean weighted tau {r.weighted_tau:+.4f} "
              f"[{r.weighted_tau_lo:+.3f}, {r.weighted_tau_hi:+.3f}] over {r.tasks} tasks")
    for r in selection.skipped.itertuples():
        print(f"skipped {r.task} ({r.estimator}): {r.reason}", file=sys.stderr)
