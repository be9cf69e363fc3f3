"""Content-addressed, atomic, pickle-free storage of arrays (the embedding cache).

The key of an entry is the sha256 of the canonical JSON (``sort_keys=True``) of
everything that changes its bytes. An entry is one ``.safetensors`` file whose
metadata carries the spec it was made from and a sha256 of the array bytes, so a
truncated or corrupted file is detected on load (and then recomputed by the
caller). Files are written to a temporary file in the same folder and moved into
place with ``os.replace``: readers see the old state or the new one, never half a
file, and two writers of the same key leave one valid file.
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
import warnings
from pathlib import Path

import numpy as np

SCHEMA_VERSION = 1


def cache_root(explicit: str | os.PathLike | None = None) -> Path:
    """``--cache-dir``, else ``$TRANSFERBENCH_CACHE``, else ``~/.cache/transferbench``."""
    root = explicit or os.environ.get("TRANSFERBENCH_CACHE") or Path.home() / ".cache" / "transferbench"
    return Path(root).expanduser()


def canonical_json(spec: dict) -> str:
    return json.dumps(spec, sort_keys=True, separators=(",", ":"), default=str)


def spec_key(spec: dict) -> str:
    return hashlib.sha256(canonical_json(spec).encode()).hexdigest()


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temp file in the same folder and ``os.replace``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _digest(arrays: dict[str, np.ndarray]) -> str:
    h = hashlib.sha256()
    for name in sorted(arrays):
        a = np.ascontiguousarray(arrays[name])
        h.update(f"{name}:{a.dtype.str}:{a.shape}".encode())
        h.update(a.tobytes())
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
        header = {"spec": canonical_json(spec), "meta": canonical_json(meta), "sha256": _digest(arrays)}
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
            if header.get("sha256") != _digest(arrays) or header.get("spec") != canonical_json(spec):
                raise ValueError("content does not match its checksum")
            meta = json.loads(header["meta"])
        except Exception as exc:  # truncated, corrupted or foreign file: recompute
            warnings.warn(f"damaged cache file {path} ({type(exc).__name__}: {exc}); recomputing", RuntimeWarning,
                          stacklevel=2)
            path.unlink(missing_ok=True)
            return None
        return arrays, meta
