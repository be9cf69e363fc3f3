"""`python -m benchmark finetune`: one fine-tuning cell."""
from __future__ import annotations

from pathlib import Path

from benchmark.cli.options import data_options, suite_help, task_id, writable_cache
from estimators import InvalidInput


def add_parser(sub) -> None:
    from benchmark.finetune.methods import METHODS

    methods = ", ".join(METHODS.names("*"))
    ft = sub.add_parser(
        "finetune", help="fine-tune one encoder on one task with one method and measure the deltas",
        description="Run one fine-tuning cell: zero-shot and fine-tuned accuracy on the task's test sample and on "
                    "the suite's other tasks, id_gain, id_gain_norm and ood_change, written as one result file "
                    "under --out (reused when it exists).")
    ft.add_argument("--encoder", required=True, help="an encoder id (a registered name or open_clip:...)")
    ft.add_argument("--method", required=True, help=methods)
    ft.add_argument("--task", required=True,
                    help="the target task: a registered task, a task file (.json) or an image folder")
    ft.add_argument("--seed", type=int, default=0, help="fine-tuning seed (default: 0)")
    ft.add_argument("--suite", default="mini",
                    help=f"whose settings and out-of-domain tasks to use: {suite_help('mini')}")
    ft.add_argument("--out", metavar="DIR", help="results folder (default: results/SUITE)")
    data_options(ft)


def command(args) -> int:
    from benchmark.evaluation.deltas import cell_deltas
    from benchmark.finetune.outcomes import run_outcome
    from benchmark.store.validate import at_least, check_device
    from benchmark.suites import get_suite
    from encoders import check_encoder_id
    from encoders.cache import ensure_writable

    suite = get_suite(args.suite)
    task = task_id(args.task)
    check_encoder_id(args.encoder)
    at_least("--seed", args.seed, 0)
    if args.seed >= 2**32:
        raise InvalidInput(f"--seed must be below 2**32 (numpy and torch seeds), got {args.seed}")
    check_device(args.device)
    out = ensure_writable(Path(args.out or Path("results") / suite.name), "--out")
    writable_cache(args.cache_dir)
    record = run_outcome(args.encoder, args.method, task, args.seed, suite.tasks, suite.finetune, out, args.data_root,
                         args.cache_dir, args.device)
    zs, ft = record["acc_zs"][task], record["acc_ft"][task]
    d = cell_deltas(record)
    counted = len(d["ood_changes"]) - len(d["ood_excluded"])
    shown = lambda v, fmt: "n/a" if v is None else format(v, fmt)  # noqa: E731 (image-only: no zero-shot)
    print(f"{args.encoder} {args.method} on {task} (seed {args.seed}): accuracy {shown(zs, '.3f')} -> "
          f"{shown(ft, '.3f')}, id_gain {shown(d['id_gain'], '+.3f')}, ood_change {shown(d['ood_change'], '+.3f')} "
          f"over {counted} other task(s); "
          f"trainable {record['trainable']}; {record['seconds']['wall']['total']:.1f}s")
    return 0
