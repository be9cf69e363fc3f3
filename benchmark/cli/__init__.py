"""Command line: ``python -m benchmark {run,select,leaderboard,score,...}``, one module per
subcommand, each a thin layer (``add_parser``, ``command``) over a library function a user can call
from Python: ``benchmark.grid.run_suite``, ``benchmark.recommend.select_encoders``,
``benchmark.cli.board.build_board``, ``benchmark.scoring.score_all``, ``encoders.extract.embed``,
``benchmark.finetune.outcomes.run_outcome``, ``benchmark.preflight.check_suite``. Nothing outside
this package imports it (``tests/test_house.py``).

Bad input ends with one line on stderr naming the problem and exit status 2;
Ctrl-C ends with status 130 (SIGTERM: 143) and loses nothing already written.
"""
from __future__ import annotations

import argparse
import signal
import sys

from benchmark.cli import check, embed, finetune, leaderboard, ls, run, score, select
from estimators import InvalidInput, import_plugin

#: subcommand -> its module, in the order ``--help`` lists them
SUBCOMMANDS = {"run": run, "finetune": finetune, "leaderboard": leaderboard, "select": select, "embed": embed,
               "score": score, "check": check, "ls": ls}

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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m benchmark",
        description="transferbench: which transferability estimator best predicts what fine-tuning "
                    "does to a vision-language encoder?",
        epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module in SUBCOMMANDS.values():
        module.add_parser(sub)
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
        return SUBCOMMANDS[args.command].command(args)
    except InvalidInput as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as exc:
        what = "terminated" if isinstance(exc, Terminated) else "interrupted"
        print(f"{what}: finished results are kept; rerun to resume", file=sys.stderr)
        return 143 if isinstance(exc, Terminated) else 130
    finally:
        signal.signal(signal.SIGTERM, previous)
