"""Checks shared by the JSON files a user writes (task files, suite files): one JSON object,
checked key by key; every problem is one line naming the file, the key and what is wrong
(``InvalidInput``). ``kind`` ("task file", "suite file") starts each line."""
from __future__ import annotations

import difflib
import json
from pathlib import Path

from estimators.errors import InvalidInput


def read_object(kind: str, path: Path) -> dict:
    """The JSON object in ``path``."""
    try:
        spec = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InvalidInput(f"{kind} {path}: not found") from None
    except (OSError, ValueError) as exc:
        raise InvalidInput(f"{kind} {path}: cannot read it as JSON ({exc})") from None
    if not isinstance(spec, dict):
        raise InvalidInput(f"{kind} {path}: must hold one JSON object, found {type(spec).__name__}")
    return spec


def check_key(kind: str, path: Path, key: str, keys: tuple[str, ...], prefix: str = "") -> None:
    """Fail unless ``key`` is one of ``keys`` (with the closest one as a hint)."""
    if key not in keys:
        close = difflib.get_close_matches(key, keys, n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        fail(kind, path, f"{prefix}{key}", f"unknown key ({hint}known: {', '.join(keys)})")


def expect(kind: str, path: Path, spec: dict, key: str, ok, expected: str) -> None:
    if not ok:
        fail(kind, path, key, f"must be {expected}, got {json.dumps(spec.get(key))[:80]}")


def fail(kind: str, path: Path, key: str, problem: str):
    raise InvalidInput(f"{kind} {path}: key {key!r}: {problem}")


def is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
