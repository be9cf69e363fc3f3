"""The results store: one JSON file per grid cell, content-addressed and written atomically.

A cell's file name is readable and ends with the first 12 hex digits of the sha256
of its spec (everything that changes the result), so a changed configuration never
reuses a stale file, and a rerun skips every cell whose file exists (resume).

Every read is validated: the record must have its kind's keys with the right types
and its spec must hash to its own file name (so a file holding another cell's content
is caught). A damaged cell is reported by path and treated as absent: ``run``
recomputes it, the leaderboard leaves it out.
"""
from __future__ import annotations

import datetime as _dt
import json
import math
import re
import sys
from pathlib import Path

from encoders.cache import atomic_write_bytes, spec_key

RESULT_SCHEMA = 1

# The shape of each kind of record: a type, (SHAPE,) (SHAPE or null), {str: SHAPE} (a mapping of
# any keys), or {"key": SHAPE} (these keys; a trailing "?" marks an optional one).
_SCORE = {"score": float, "seconds": float}
_REASONS = {str: str}
SHAPES = {
    "scores": {"suite": str, "encoder": str, "task": str, "n_classes": int, "n_train": int, "n_test": int,
               "chance": float, "zero_shot_acc_test": (float,), "scores": {str: _SCORE}, "skipped": _REASONS,
               "failed?": _REASONS},
    "pool_scores": {"task": str, "scores": {str: {str: _SCORE}}, "failed?": _REASONS},
    # accuracies are null where they do not exist: an image-only encoder has no zero-shot accuracy,
    # and no classifier for the other tasks' classes after fine-tuning
    "outcomes": {"encoder": str, "method": str, "target": str, "seed": int, "acc_zs": {str: (float,)},
                 "acc_ft": {str: (float,)}},
}
_COMMON = {"schema": int, "spec": dict, "date": str}


def cell_path(out: Path, kind: str, name: str, spec: dict) -> Path:
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "-", name)
    return Path(out) / kind / f"{safe}__{spec_key({'schema': RESULT_SCHEMA, **spec})[:12]}.json"


def _problem(value, shape, where: str) -> str | None:
    """Why ``value`` does not have ``shape`` (None when it does)."""
    if isinstance(shape, tuple):
        return None if value is None else _problem(value, shape[0], where)
    if shape is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
        return None if ok else f"{where} should be a finite number, got {_shown(value)}"
    if isinstance(shape, type):
        ok = isinstance(value, shape) and not (shape is int and isinstance(value, bool))
        return None if ok else f"{where} should be {shape.__name__}, got {_shown(value)}"
    if not isinstance(value, dict):
        return f"{where} should be an object, got {_shown(value)}"
    if str in shape:
        return next((p for k, v in value.items() if (p := _problem(v, shape[str], f"{where}[{k!r}]"))), None)
    for key, sub in shape.items():
        name = key.rstrip("?")
        if name not in value:
            if not key.endswith("?"):
                return f"key {name!r} is missing"
        elif p := _problem(value[name], sub, name if where == "record" else f"{where}.{name}"):
            return p
    return None


def _shown(value) -> str:
    """A short view of a wrong value: its repr when scalar, else its type."""
    if value is None or isinstance(value, (bool, int, float, str)):
        text = repr(value)
        return text if len(text) <= 40 else text[:37] + "..."
    return type(value).__name__


def cell_problem(path: Path, record) -> str | None:
    """Why the record read from ``path`` is not a valid cell of its kind (None when it is)."""
    kind = Path(path).parent.name
    problem = _problem(record, {**_COMMON, **SHAPES.get(kind, {})}, "record")
    if problem:
        return problem
    if record["schema"] != RESULT_SCHEMA:
        return f"result schema {record['schema']}, expected {RESULT_SCHEMA}"
    if not Path(path).stem.endswith("__" + spec_key({"schema": record["schema"], **record["spec"]})[:12]):
        return "its spec does not match its file name (another cell's content?)"
    if kind == "outcomes" and not (record["target"] in record["acc_zs"] and set(record["acc_zs"]) <= set(
            record["acc_ft"])):
        return "acc_zs and acc_ft do not cover the target and the same tasks"
    return None


def read_cell(path: Path, remove_damaged: bool = False) -> dict | None:
    """The stored result, or None if absent or damaged (then the cell is rerun). A damaged file
    is reported on stderr with its path; ``remove_damaged`` deletes it (``run`` recomputes it)."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as exc:
        return _damaged(path, f"unreadable: {exc}", False)
    try:
        record = json.loads(text)
    except ValueError as exc:
        return _damaged(path, f"not valid JSON: {exc}", remove_damaged)
    problem = cell_problem(path, record)
    return record if problem is None else _damaged(path, problem, remove_damaged)


def _damaged(path: Path, reason: str, remove: bool) -> None:
    action = "removed; it will be recomputed" if remove else "left out (`run` recomputes it)"
    print(f"warning: damaged result file {path} ({reason}): {action}", file=sys.stderr)
    if remove:
        path.unlink(missing_ok=True)
    return None


def write_cell(path: Path, spec: dict, result: dict) -> None:
    record = {"schema": RESULT_SCHEMA, "spec": spec, "date": _dt.datetime.now(_dt.timezone.utc).isoformat(
        timespec="seconds"), **result}
    atomic_write_bytes(path, (json.dumps(record, indent=1, sort_keys=True) + "\n").encode())


def read_all(out: Path, kind: str) -> list[dict]:
    return [r for p in sorted((Path(out) / kind).glob("*.json")) if (r := read_cell(p)) is not None]
