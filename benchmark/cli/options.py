"""Options and argument helpers the subcommands share."""
from __future__ import annotations

import argparse
from pathlib import Path

from benchmark.suites import SUITES
from estimators import ESTIMATORS


def plugin_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--plugins", action="append", default=[], metavar="MODULE_OR_FILE",
                        help="import a module (my_pkg.estimators) or a .py file that registers extra "
                             "estimators; repeatable. Installed plugins (entry-point group "
                             "'transferbench.estimators') load automatically")


def embedding_options(parser: argparse.ArgumentParser) -> None:
    """How a task sample is drawn and embedded: ``--seed``, ``--prompts``, ``--batch-size``."""
    parser.add_argument("--seed", type=int, default=0, help="sampling seed")
    parser.add_argument("--prompts", choices=["ensemble", "single"], default="ensemble",
                        help="average the task's templates (ensemble) or use the canonical one (single)")
    parser.add_argument("--batch-size", type=int, metavar="B", help="default: 8 on CPU, 128 on GPU")


def data_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data-root", metavar="DIR",
                        help="where datasets live (default: $TRANSFERBENCH_DATA, else ~/.cache/transferbench/data; "
                             "point it at ../shared/data for the offline copies)")
    parser.add_argument("--cache-dir", metavar="DIR",
                        help="embedding cache (default: $TRANSFERBENCH_CACHE, else ~/.cache/transferbench)")
    parser.add_argument("--device", default="auto", help="cuda, mps, cpu or auto (default: auto)")
    parser.add_argument("--download", action="store_true",
                        help="allow fetching a dataset's public original (torchvision) when no local copy exists")


def suite_help(default: str | None) -> str:
    names = SUITES.names("*")
    return (f"a built-in suite ({', '.join(names)}) or a suite .json file" +
            (f" (default: {default})" if default else ""))


def select_estimators(pattern: str) -> list[str]:
    return ESTIMATORS.names("*") if pattern.strip() in ("", "all") else ESTIMATORS.select(pattern)


def task_id(name: str) -> str:
    """A registered task, or the id of a task file or image folder (read and registered)."""
    from tasks import get_task, load_task_file

    return load_task_file(name) if name.endswith(".json") or Path(name).is_dir() else get_task(name).id


def writable_cache(cache_dir) -> None:
    from encoders.cache import ArrayCache, ensure_writable

    ensure_writable(ArrayCache(cache_dir).folder, "--cache-dir (embedding cache)")
