"""Command line: ``python -m benchmark {run,score,ls,...}``.

Bad input ends with one line on stderr naming the problem and exit status 2;
Ctrl-C ends with status 130 and loses nothing already written.
"""
from __future__ import annotations

import argparse
import json
import sys

from estimators import ESTIMATORS, InvalidInput, estimator_info, import_plugin

EXAMPLES = """\
examples:
  python -m benchmark ls estimators
  python -m benchmark score --embeddings my_task.npz
  python -m benchmark score --embeddings a.npz b.npz --estimators 'iimm*,logme' --format json
  python -m benchmark score --embeddings my_task.npz --plugins my_estimators.py
"""


def _plugin_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--plugins", action="append", default=[], metavar="MODULE_OR_FILE",
                        help="import a module (my_pkg.estimators) or a .py file that registers extra "
                             "estimators; repeatable. Installed plugins (entry-point group "
                             "'transferbench.estimators') load automatically")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m benchmark",
        description="transferbench: which transferability estimator best predicts what fine-tuning "
                    "does to a vision-language encoder?",
        epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    score = sub.add_parser(
        "score", help="score your own embeddings (.npz) with every estimator",
        description="Score user-supplied embeddings with the registered estimators and report each "
                    "score and its wall time. The .npz holds image_features (N, D) and labels (N,), "
                    "optionally text_features (C, D: one class-prompt embedding per class), "
                    "logit_scale and logit_bias. Rows are L2-normalised. Give several files (one per "
                    "encoder, same task) to also score pool-relative estimators such as NCTI.")
    score.add_argument("--embeddings", nargs="+", required=True, metavar="FILE.npz",
                       help="one .npz per encoder on the same task")
    score.add_argument("--estimators", default="all", metavar="NAMES",
                       help="comma-separated names or fnmatch patterns ('iimm*,logme'); default: all")
    score.add_argument("--format", choices=["table", "json", "csv"], default="table", help="output format")
    score.add_argument("--random-state", type=int, default=0, help="seed for stochastic estimators")
    _plugin_option(score)

    ls = sub.add_parser("ls", help="list registered estimators",
                        description="List what the harness knows about.")
    ls.add_argument("what", choices=["estimators"], help="which registry to list")
    ls.add_argument("pattern", nargs="?", default="*", help="fnmatch filter, e.g. 'iimm*'")
    ls.add_argument("--format", choices=["table", "json"], default="table")
    _plugin_option(ls)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        for plugin in args.plugins:
            import_plugin(plugin)
        return COMMANDS[args.command](args)
    except InvalidInput as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: finished results are kept; rerun to resume", file=sys.stderr)
        return 130


def _select_estimators(pattern: str) -> list[str]:
    return ESTIMATORS.names("*") if pattern.strip() in ("", "all") else ESTIMATORS.select(pattern)


def cmd_score(args) -> int:
    from tabulate import tabulate

    from .embeddings_file import load_npz
    from .scoring import score_all

    names = _select_estimators(args.estimators)
    embs = {path: load_npz(path) for path in args.embeddings}
    scores, skipped = score_all(embs, names, random_state=args.random_state)
    multi = len(embs) > 1
    if args.format == "json":
        report = []
        for path, emb in embs.items():
            report.append({
                "file": path, "n": emb.n, "dim": emb.dim, "n_classes": emb.n_classes,
                "estimators": {s.estimator: {"score": s.score, "seconds": s.seconds,
                                             "higher_is_better": ESTIMATORS.get(s.estimator).higher_is_better}
                               for s in scores if s.key == path},
                "skipped": {s.estimator: s.reason for s in skipped if s.key == path}})
        print(json.dumps(report if multi else report[0], indent=2))
        return 0
    rows = [([s.key] if multi else []) + [s.estimator, s.score, round(s.seconds, 4),
                                          "higher" if ESTIMATORS.get(s.estimator).higher_is_better else "lower"]
            for s in scores]
    header = (["file"] if multi else []) + ["estimator", "score", "seconds", "better"]
    if args.format == "csv":
        import csv

        writer = csv.writer(sys.stdout, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)
        return 0
    print(tabulate(rows, headers=header, floatfmt=".6g"))
    for s in skipped:
        print(f"skipped {s.estimator}{f' for {s.key}' if multi else ''}: {s.reason}")
    return 0


def cmd_ls(args) -> int:
    from tabulate import tabulate

    infos = [estimator_info(n) for n in ESTIMATORS.select(args.pattern)]
    if args.format == "json":
        print(json.dumps(infos, indent=2))
        return 0
    rows = [(i["name"], "higher" if i["higher_is_better"] else "lower", ",".join(i["needs"]) or "-",
             i["version"], i["description"]) for i in infos]
    print(tabulate(rows, headers=["estimator", "better", "needs", "version", "description"]))
    for error in ESTIMATORS.plugin_errors:
        print(f"warning: {error}", file=sys.stderr)
    return 0


COMMANDS = {"score": cmd_score, "ls": cmd_ls}
