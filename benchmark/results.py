"""The results store: one JSON file per grid cell, content-addressed and written atomically.

A cell's file name is readable and ends with the first 12 hex digits of the sha256
of its spec (everything that changes the result), so a changed configuration never
reuses a stale file, and a rerun skips every cell whose file exists (resume).
"""
from __future__ import annotations

import datetime as _dt
import json
import re
from pathlib import Path

from encoders.cache import atomic_write_bytes, spec_key

RESULT_SCHEMA = 1


def cell_path(out: Path, kind: str, name: str, spec: dict) -> Path:
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "-", name)
    return Path(out) / kind / f"{safe}__{spec_key({'schema': RESULT_SCHEMA, **spec})[:12]}.json"


def read_cell(path: Path) -> dict | None:
    """The stored result, or None if absent or unreadable (then the cell is rerun)."""
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def write_cell(path: Path, spec: dict, result: dict) -> None:
    record = {"schema": RESULT_SCHEMA, "spec": spec, "date": _dt.datetime.now(_dt.timezone.utc).isoformat(
        timespec="seconds"), **result}
    atomic_write_bytes(path, (json.dumps(record, indent=1, sort_keys=True) + "\n").encode())


def read_all(out: Path, kind: str) -> list[dict]:
    return [r for p in sorted((Path(out) / kind).glob("*.json")) if (r := read_cell(p)) is not None]
