"""`python -m benchmark select`: which of these encoders should I fine-tune on my task?."""
from __future__ import annotations

import argparse
import json
import sys
import textwrap
from pathlib import Path

from benchmark.cli.options import (
    data_options,
    embedding_options,
    plugin_option,
    select_estimators,
    task_id,
    writable_cache,
)


def add_parser(sub) -> None:
    select = sub.add_parser(
        "select", help="which of these encoders should I fine-tune on my task? (rank candidates by estimator)",
        description=textwrap.fill(
                    "Embed a class-balanced sample of your task's training split with each candidate encoder "
                    "(cached), score it with every estimator, and rank the candidates by each. With --board, also "
                    "by the estimator that board found most reliable for model selection (its mean weighted tau "
                    "and interval), saying plainly when the board cannot tell estimators apart or the candidates are "
                    "too few for a ranking to mean much. Writes the whole report as JSON.", 100),
        epilog="examples:\n"
               "  python -m benchmark select --task my_images/ --encoders conse-lite0,conse-lite1,conse-lite2 \\\n"
               "      --board leaderboard/mini\n"
               "  python -m benchmark select --task mytask.json --encoders open_clip:ViT-B-32/openai,"
               "open_clip:hf-hub:timm/ViT-B-16-SigLIP --estimators 'logme,leep,iimm*'",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    select.add_argument("--task", required=True,
                        help="a registered task, a task file (.json) or an image folder (DIR/{train,test}/<class>/*)")
    select.add_argument("--encoders", required=True, metavar="ID,ID,...",
                        help="the candidate encoders, comma-separated: registered names (`ls encoders`) or ids such "
                             "as open_clip:ARCH/TAG")
    select.add_argument("--estimators", default="all", metavar="PATTERNS", help="which estimators (default: all)")
    select.add_argument("--board", metavar="DIR",
                        help="a board with the models protocol (e.g. leaderboard/mini): recommend by its most "
                             "reliable estimator")
    select.add_argument("--method", help="the board's fine-tuning method to trust (default: full, if it has it)")
    select.add_argument("--n", type=int, default=500, metavar="N",
                        help="class-balanced training sample per encoder (default: 500)")
    embedding_options(select)
    select.add_argument("--json", metavar="FILE", help="where to write the report (default: select_TASK.json)")
    select.add_argument("--random-state", type=int, default=0, help="seed for stochastic estimators")
    data_options(select)
    plugin_option(select)


def command(args) -> int:
    from benchmark.recommend import format_report, select_encoders
    from benchmark.store.validate import at_least, check_device
    from encoders import check_encoder_id
    from encoders.cache import atomic_write_bytes
    from tasks import get_task

    task = get_task(task_id(args.task))
    encoders = [e.strip() for e in args.encoders.split(",") if e.strip()]
    for name in encoders:
        check_encoder_id(name)
    at_least("--n", args.n, 1)
    at_least("--seed", args.seed, 0)
    at_least("--random-state", args.random_state, 0)
    check_device(args.device)
    writable_cache(args.cache_dir)
    report = select_encoders(task, encoders, select_estimators(args.estimators), n=args.n, seed=args.seed,
                             prompts=args.prompts, board=args.board and Path(args.board), method=args.method,
                             data_root=args.data_root, cache_dir=args.cache_dir, device=args.device,
                             batch_size=args.batch_size, download=args.download, random_state=args.random_state,
                             log=lambda line: print(line, file=sys.stderr))
    path = Path(args.json or f"select_{task.id}.json")
    atomic_write_bytes(path, (json.dumps(report, indent=1) + "\n").encode())
    print(format_report(report))
    print(f"report: {path}")
    return 0
