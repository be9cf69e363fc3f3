"""`python -m benchmark score`: score your own embeddings (.npz)."""
from __future__ import annotations

import json
import sys

from benchmark.cli.options import plugin_option, select_estimators
from estimators import ESTIMATORS


def add_parser(sub) -> None:
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
    plugin_option(score)


def command(args) -> int:
    from tabulate import tabulate

    from benchmark.scoring import score_all
    from benchmark.store.embeddings_file import load_npz
    from benchmark.store.validate import at_least

    at_least("--random-state", args.random_state, 0)

    names = select_estimators(args.estimators)
    embs = {path: load_npz(path) for path in args.embeddings}
    scores, missed = score_all(embs, names, random_state=args.random_state)
    skipped = [s for s in missed if s.status == "skipped"]
    failed = [s for s in missed if s.status == "failed"]
    multi = len(embs) > 1
    status = 2 if failed else 0     # the other estimators' scores are still reported
    if args.format == "json":
        report = []
        for path, emb in embs.items():
            report.append({
                "file": path, "n": emb.n, "dim": emb.dim, "n_classes": emb.n_classes,
                "estimators": {s.estimator: {"score": s.score, "seconds": s.seconds,
                                             "higher_is_better": ESTIMATORS.get(s.estimator).higher_is_better}
                               for s in scores if s.key == path},
                "skipped": {s.estimator: s.reason for s in skipped if s.key == path},
                "failed": {s.estimator: s.reason for s in failed if s.key == path}})
        print(json.dumps(report if multi else report[0], indent=2))
        return status
    rows = [([s.key] if multi else []) + [s.estimator, s.score, round(s.seconds, 4),
                                          "higher" if ESTIMATORS.get(s.estimator).higher_is_better else "lower"]
            for s in scores]
    header = (["file"] if multi else []) + ["estimator", "score", "seconds", "better"]
    if args.format == "csv":
        import csv

        writer = csv.writer(sys.stdout, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)
    else:
        print(tabulate(rows, headers=header, floatfmt=".6g"))
        for s in skipped:
            print(f"skipped {s.estimator}{f' for {s.key}' if multi else ''}: {s.reason}")
    for s in failed:
        print(f"error: {s.estimator} failed{f' on {s.key}' if multi else ''}: {s.reason}", file=sys.stderr)
    return status
