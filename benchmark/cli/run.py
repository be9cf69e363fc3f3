"""`python -m benchmark run`: run a suite: scores, fine-tuning outcomes and the leaderboard."""
from __future__ import annotations

from benchmark.cli.options import data_options, plugin_option, suite_help


def add_parser(sub) -> None:
    from benchmark.finetune.methods import METHODS
    from benchmark.store.backends import BACKENDS

    methods = ", ".join(METHODS.names("*"))
    run = sub.add_parser(
        "run", help="run a suite: scores, fine-tuning outcomes and the leaderboard",
        description="Run a suite. Each (encoder, task) cell embeds a class-balanced sample of the task's train "
                    "and test splits (cached), measures zero-shot test accuracy and scores every estimator "
                    "on the train embeddings; each (encoder, method, task, seed) cell fine-tunes and measures "
                    "in-domain gain and out-of-domain change; then the leaderboard ranks the estimators by how "
                    "well their scores predict those deltas. One result file per cell under --out; a rerun "
                    "skips finished cells. Name filters take comma-separated fnmatch patterns.")
    run.add_argument("--suite", default="mini", help=suite_help("mini"))
    run.add_argument("--encoders", default="*", metavar="IDS",
                     help="which of the suite's encoders (patterns), and any other encoder id: a registered name, "
                          "open_clip:ARCH/TAG, open_clip:hf-hub:ORG/NAME, open_clip:ARCH/FILE, open_clip:local-dir:DIR")
    run.add_argument("--tasks", default="*", metavar="NAMES",
                     help="which of the suite's tasks (patterns), and any registered task or task file (.json)")
    run.add_argument("--estimators", default="all", metavar="PATTERNS", help="which estimators (default: all)")
    run.add_argument("--methods", default="all", metavar="PATTERNS",
                     help=f"which of the suite's fine-tuning methods, and any registered one ({methods}; "
                          f"default: the suite's)")
    run.add_argument("--seeds", metavar="S1,S2", help="fine-tuning seeds (default: the suite's, 0)")
    run.add_argument("--no-finetune", action="store_true",
                     help="stop after zero-shot accuracy and estimator scores (no fine-tuning)")
    run.add_argument("--limit", type=int, metavar="N", help="run only the first N cells (a quick look)")
    run.add_argument("--out", metavar="DIR", help="results folder (default: results/SUITE)")
    run.add_argument("--n-jobs", type=int, metavar="N",
                     help="cells run in parallel (default: one per CPU core, at most 8, on CPU; 1 on a GPU)")
    run.add_argument("--backend", default="loky", choices=BACKENDS,
                     help="joblib backend for the cells, or dask (default: loky)")
    run.add_argument("--scheduler", metavar="ADDRESS",
                     help="Dask scheduler address for --backend dask (default: a local cluster)")
    run.add_argument("--estimator-timeout", type=float, metavar="SECONDS",
                     help="record an estimator still running after SECONDS on a cell as failed and go on "
                          "(loky and sequential backends; default: no limit, a line names one running over 60 s)")
    data_options(run)
    plugin_option(run)


def command(args) -> int:
    import functools
    import sys
    from pathlib import Path

    from benchmark.cli.board import build_board
    from benchmark.evaluation.tables import NO_OUTCOMES
    from benchmark.grid import narrow, parse_seeds, run_suite
    from benchmark.suites import get_suite
    from estimators import ESTIMATORS
    from leaderboard.render import RANK_BY, TITLES

    log = functools.partial(print, file=sys.stderr)
    methods = "*" if args.methods in ("all", "") else args.methods
    suite = narrow(get_suite(args.suite), args.encoders, args.tasks, methods)
    names = ESTIMATORS.names("*") if args.estimators in ("all", "") else ESTIMATORS.select(args.estimators)
    seeds = parse_seeds(args.seeds, suite)
    out = Path(args.out or Path("results") / suite.name)
    done = run_suite(suite, names, seeds, out, limit=args.limit, finetune=not args.no_finetune, n_jobs=args.n_jobs,
                     backend=args.backend, scheduler=args.scheduler, data_root=args.data_root,
                     cache_dir=args.cache_dir, device=args.device, download=args.download, plugins=args.plugins,
                     estimator_timeout=args.estimator_timeout, log=log)
    board = build_board(out, out, suite=suite.name)
    print(done["zero_shot"])
    if board["evaluation"] is not None:
        print("\n" + top_of_board(Path(board["path"]).read_text(), TITLES[RANK_BY]))
    missing = [m for m in board["missing"] if not (args.no_finetune and m == NO_OUTCOMES)]
    if missing:
        log(f"partial results: missing {'; '.join(missing)}")
    print(f"\nleaderboard: {board['path']}  (results: {out})")
    return 0


def top_of_board(page: str, title: str, rows: int = 5) -> str:
    """The board's own ranking table under ``## title``, cut to its first ``rows`` rows (as on the page)."""
    section = page.split(f"## {title}\n", 1)[1].lstrip("\n")
    table = section.split("\n\n", 1)[0].splitlines()
    return "\n".join([title, *table[:2 + rows]] + ([f"... ({len(table) - 2 - rows} more rows on the board)"]
                                                    if len(table) > 2 + rows else []))
