"""Content-addressed, atomic, pickle-free storage of arrays (the embedding cache).

The key of an entry is the sha256 of the canonical JSON (``sort_keys=True``) of
everything that changes its bytes. An entry is one ``.safetensors`` file whose
metadata carries the spec it was made from, the meta the scores depend on
(``logit_scale``, ``logit_bias``, provenance) and a sha256 over the array bytes and
that meta, so a truncated, corrupted or edited file is detected on load (and then
recomputed by the caller). Files are written to a hidden temporary file in the same
folder (created with the user's umask, like any other file) and moved into place with
``os.replace``: readers see the old state or the new one, never half a file, and two
writers of the same key leave one valid file. A temporary file left by a killed
writer is swept by ``sweep_stale_temp`` when a command starts.
"""
from __future__ import annotations

import errno
import hashlib
import json
import os
import re
import secrets
import time
from pathlib import Path

import numpy as np

from estimators.errors import InvalidInput, warn

SCHEMA_VERSION = 2          # 2: the checksum covers the meta as well as the arrays
STALE_AFTER_S = 600         # a temp file untouched this long belongs to a killed writer
_TEMP = re.compile(r"^\..+\.[A-Za-z0-9_]{8}\.tmp$")   # ".NAME.XXXXXXXX.tmp", see atomic_write_bytes


def cache_root(explicit: str | os.PathLike | None = None) -> Path:
    """``--cache-dir``, else ``$TRANSFERBENCH_CACHE``, else ``~/.cache/transferbench``."""
    root = explicit or os.environ.get("TRANSFERBENCH_CACHE") or Path.home() / ".cache" / "transferbench"
    return Path(root).expanduser()


def canonical_json(spec: dict) -> str:
    return json.dumps(spec, sort_keys=True, separators=(",", ":"), default=str)


def spec_key(spec: dict) -> str:
    return hashlib.sha256(canonical_json(spec).encode()).hexdigest()


class WriteError(InvalidInput):
    """A file or folder the harness needs to write cannot be written (full disk, read-only, ...)."""


def write_error(path: Path, exc: OSError) -> WriteError:
    """One line naming the path, the system's reason and what to do about it."""
    if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
        hint = "free some space or choose another folder; finished results are kept, rerun to resume"
    else:
        hint = "choose a folder you can write to"
    return WriteError(f"cannot write {path}: {exc.strerror or exc} ({hint})")


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` via a hidden temp file in the same folder and ``os.replace``.
    The file gets the umask's permissions; an OSError becomes a one-line ``WriteError``. A file that
    already holds exactly ``data`` is left alone (a rerun that changes nothing touches nothing)."""
    path = Path(path)
    try:
        if path.is_file() and path.stat().st_size == len(data) and path.read_bytes() == data:
            return
    except OSError:
        pass  # unreadable: write it anew
    tmp = path.parent / f".{path.name}.{secrets.token_hex(4)}.tmp"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    except OSError as exc:
        raise write_error(path, exc) from None
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        tmp.unlink(missing_ok=True)
        if isinstance(exc, OSError):
            raise write_error(path, exc) from None
        raise


def ensure_writable(folder: Path, what: str) -> Path:
    """Create ``folder`` if needed and prove it takes a file (so a read-only or mistyped folder
    fails before any work), then sweep the stale temp files of killed writers in it."""
    folder = Path(folder)
    probe = folder / f".probe.{secrets.token_hex(4)}.tmp"
    if folder.exists() and not folder.is_dir():
        raise WriteError(f"{what} {folder} is a file, not a folder")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        os.close(os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
        probe.unlink()
    except OSError as exc:
        raise WriteError(f"{what} {folder} is not writable: {exc.strerror or exc}") from None
    sweep_stale_temp(folder)
    return folder


def sweep_stale_temp(folder: Path, older_than: float = STALE_AFTER_S) -> list[Path]:
    """Remove the harness's own temp files (``.NAME.XXXXXXXX.tmp``) in ``folder`` and its
    direct subfolders that nobody has touched for ``older_than`` seconds (a live writer's
    file is younger, so concurrent runs are safe); returns what was removed."""
    cutoff, removed = time.time() - older_than, []
    for path in [*Path(folder).glob(".*.tmp"), *Path(folder).glob("*/.*.tmp")]:
        try:
            if _TEMP.match(path.name) and path.is_file() and path.stat().st_mtime < cutoff:
                path.unlink()
                removed.append(path)
        except OSError:
            continue
    return removed


def _digest(arrays: dict[str, np.ndarray], *texts: str) -> str:
    """sha256 over the arrays (name, dtype, shape, bytes) and the given header strings."""
    h = hashlib.sha256()
    for name in sorted(arrays):
        a = np.ascontiguousarray(arrays[name])
        h.update(f"{name}:{a.dtype.str}:{a.shape}".encode())
        h.update(a.tobytes())
    for text in texts:
        h.update(f"{len(text)}:{text}".encode())
    return h.hexdigest()


class ArrayCache:
    """``put(spec, arrays, meta)`` / ``get(spec) -> (arrays, meta) | None`` under ``root/kind``."""

    def __init__(self, root: str | os.PathLike | None = None, kind: str = "embeddings"):
        self.folder = cache_root(root) / kind

    def path(self, spec: dict) -> Path:
        key = spec_key({"schema": SCHEMA_VERSION, **spec})
        return self.folder / key[:2] / f"{key}.safetensors"

    def put(self, spec: dict, arrays: dict[str, np.ndarray], meta: dict) -> Path:
        from safetensors.numpy import save

        arrays = {k: np.ascontiguousarray(v) for k, v in arrays.items()}
        header = {"spec": canonical_json(spec), "meta": canonical_json(meta)}
        header["sha256"] = _digest(arrays, header["spec"], header["meta"])
        path = self.path(spec)
        atomic_write_bytes(path, save(arrays, metadata=header))
        return path

    def get(self, spec: dict) -> tuple[dict[str, np.ndarray], dict] | None:
        """The stored arrays and meta, or None when absent or damaged (a damaged file is
        reported, removed and treated as a miss, so the caller recomputes it)."""
        from safetensors import safe_open

        path = self.path(spec)
        if not path.is_file():
            return None
        try:
            with safe_open(str(path), framework="numpy") as f:
                header = f.metadata() or {}
                arrays = {k: f.get_tensor(k) for k in f.keys()}
            if header.get("spec") != canonical_json(spec) or \
                    header.get("sha256") != _digest(arrays, header["spec"], header.get("meta", "")):
                raise ValueError("content does not match its checksum")
            meta = json.loads(header["meta"])
        except Exception as exc:  # truncated, corrupted or foreign file: recompute
            warn(f"damaged cache file {path} ({type(exc).__name__}: {exc}); recomputing")
            path.unlink(missing_ok=True)
            return None
        return arrays, meta
