"""Fault injection on the smoke grid (not part of the test run): interrupt `run` at a random moment
with SIGKILL, SIGTERM or Ctrl-C, check that every process of the run is gone, resume, and compare
the results with a clean run. Every other cycle starts from a cold embedding cache.

    python tests/benchmarks/fault_injection.py --work /tmp/faults --cycles 15
"""
from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

SIGNALS = ("SIGKILL", "SIGTERM", "SIGINT")


def start(out: Path, cache: Path, marker: str) -> subprocess.Popen:
    """``run`` on the smoke suite in its own process group, every process tagged with ``marker``."""
    return subprocess.Popen([sys.executable, "-m", "benchmark", "run", "--suite", "smoke", "--n-jobs", "2",
                             "--out", str(out), "--cache-dir", str(cache)], env=dict(os.environ, TB_FAULT=marker),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True)


def tagged(marker: str) -> list[int]:
    """Live (not zombie) processes whose environment carries ``marker`` (from /proc, no psutil)."""
    pids = []
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            if f"TB_FAULT={marker}".encode() in (proc / "environ").read_bytes().split(b"\0") and \
                    (proc / "stat").read_text().split()[2] != "Z":
                pids.append(int(proc.name))
        except OSError:
            continue
    return pids


def essence(out: Path) -> dict:
    """What each cell measured (scores, accuracies), without its timings."""
    cells = {}
    for path in sorted(out.glob("*/*.json")):
        r = json.loads(path.read_text())
        if path.parent.name == "outcomes":
            cells[path.name] = r["acc_zs"], r["acc_ft"]
        elif path.parent.name == "scores":
            cells[path.name] = {k: v["score"] for k, v in r["scores"].items()}, r["zero_shot_acc_test"]
        else:
            cells[path.name] = {e: {k: v["score"] for k, v in s.items()} for e, s in r["scores"].items()}
    return cells


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--cycles", type=int, default=15)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--after", type=float, nargs=2, default=(3.0, 14.0), metavar=("MIN_S", "MAX_S"),
                        help="the signal comes after a uniform random wait in this range")
    args = parser.parse_args()
    rng, cache, begin = random.Random(args.seed), args.work / "cache", time.time()
    clean = args.work / "clean"
    shutil.rmtree(clean, ignore_errors=True)
    proc = start(clean, cache, "clean")
    assert proc.wait() == 0, proc.stderr.read()[-2000:]
    reference = essence(clean)
    print(f"clean run: {time.time() - begin:.0f} s, {len(reference)} cells", flush=True)
    exits, identical = [], 0
    for i in range(args.cycles):
        name = SIGNALS[i % 3]
        out = args.work / f"cycle{i}"
        shutil.rmtree(out, ignore_errors=True)
        if i % 2 == 0:
            shutil.rmtree(cache, ignore_errors=True)
        proc = start(out, cache, f"c{i}")
        time.sleep(rng.uniform(*args.after))
        if name == "SIGINT":
            os.killpg(proc.pid, signal.SIGINT)   # Ctrl-C: the terminal signals the whole foreground group
        else:
            proc.send_signal(getattr(signal, name))
        sent = time.time()
        err = proc.communicate()[1]
        while tagged(f"c{i}") and time.time() - sent < 60:
            time.sleep(0.05)
        exits.append(time.time() - sent)
        done = len(list(out.glob("*/*.json")))
        resumed = start(out, cache, f"r{i}")
        assert resumed.wait() == 0, resumed.stderr.read()[-2000:]
        same = essence(out) == reference
        identical += same
        notes = [line[:120] for line in err.splitlines()
                 if "leak" in line or "Traceback" in line or line.startswith(("interrupted", "terminated", "error"))]
        print(f"{i}: {name} rc={proc.returncode}, {done} cells written, every process gone after {exits[-1]:.2f} s "
              f"({len(tagged(f'c{i}'))} left); resumed identical: {same}; {notes}", flush=True)
    print(f"{args.cycles} interruptions: {identical} resumed runs identical to the clean run; slowest exit of a "
          f"run's processes {max(exits):.2f} s; {time.time() - begin:.0f} s in all")


if __name__ == "__main__":
    main()
