"""`python -m benchmark ls`: list the registries."""
from __future__ import annotations

import json
import sys

from benchmark.cli.options import plugin_option
from benchmark.finetune.methods import METHODS
from benchmark.suites import SUITES
from estimators import ESTIMATORS, estimator_info


def add_parser(sub) -> None:
    ls = sub.add_parser("ls", help="list estimators, encoders, tasks or suites",
                        description="List what the harness knows about.")
    ls.add_argument("what", choices=["estimators", "encoders", "tasks", "suites", "methods"],
                    help="which registry to list")
    ls.add_argument("pattern", nargs="?", default="*", help="fnmatch filter, e.g. 'iimm*'")
    ls.add_argument("--format", choices=["table", "json"], default="table")
    plugin_option(ls)


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


def command(args) -> int:
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
