"""Task files: one JSON object per task, the registered ones in ``definitions/``, a user's anywhere.

Keys: ``loader`` and ``loader_args`` (how the images are read: a name registered in
``tasks.LOADERS``, e.g. ``imagefolder``, and its keyword arguments), ``classnames``,
``templates`` (``{c}`` stands for the class name; the first is the canonical one, all of
them form the prompt ensemble), ``splits`` (declared sizes
of ``train`` and ``test``), ``id``, ``version`` (raise it when the data or names change),
``source``, ``description``, ``how_to_get``, ``fallback`` (another ``{"loader", "args"}`` to
try), and in ``definitions/`` ``parent`` + ``class_subset`` for class-subset variants.

A user's file needs only ``loader`` (and its ``loader_args``): ``id`` defaults to the file
name, ``version`` to 1, ``templates`` to ``DEFAULT_TEMPLATES``, ``classnames`` and ``splits``
to what the loader finds (``imagefolder``), the texts to "". A loader argument named ``path``
is relative to the task file's folder. Every problem is one line naming the file, the key and
what is wrong (``InvalidInput``).
"""
from __future__ import annotations

import functools
import inspect
import json
import os
import re
from pathlib import Path

from estimators.errors import InvalidInput
from estimators.registry import NAME, UnknownName

from . import user_file
from .loaders import LOADERS
from .task import Task

KEYS = ("id", "version", "classnames", "templates", "source", "loader", "loader_args", "splits", "description",
        "how_to_get", "fallback")
SUBSET_KEYS = ("parent", "class_subset")
DEFAULT_TEMPLATES = ("a photo of a {c}.",)
KIND = "task file"
_fail = functools.partial(user_file.fail, KIND)
_expect = functools.partial(user_file.expect, KIND)
_is_int = user_file.is_int
SPLITS = ("train", "test")


def read_definitions(folder: Path) -> list[Task]:
    """Every ``*.json`` of ``folder`` (the registered tasks): complete files whose ``id`` is the file
    name; one with ``parent`` inherits the parent's keys and keeps the ``class_subset`` it names."""
    specs = {}
    for path in sorted(Path(folder).glob("*.json")):
        spec = _read(path, KEYS + SUBSET_KEYS)
        if spec.get("id") != path.stem:
            _fail(path, "id", f"must be the file name {path.stem!r}")
        specs[path.stem] = (path, spec)
    return [_task(path, _resolve(path, spec, specs)) for path, spec in specs.values()]


def read_task_file(path: str | os.PathLike) -> Task:
    """The task of a user's task file (defaults as the module docstring says)."""
    path = Path(path).expanduser().absolute()
    return _user_task(path, _read(path, KEYS))


def read_image_folder(path: str | os.PathLike) -> Task:
    """The task of an image folder (``DIR/{train,test}/<class>/*``) given without a task file: as a
    task file ``{"loader": "imagefolder", "loader_args": {"path": DIR}}`` whose id is the folder's name
    (lowercased, other characters than letters, digits, '_', '.', '-' made '_')."""
    folder = Path(path).expanduser().absolute()
    name = re.sub(r"[^a-z0-9_.-]", "_", folder.name.lower()).lstrip("_.-") or "images"
    return _user_task(folder, {"id": name, "loader": "imagefolder", "loader_args": {"path": str(folder)}})


def _user_task(path: Path, spec: dict) -> Task:
    if "id" not in spec and not NAME.match(path.stem):
        _fail(path, "id", f"missing, and the file name {path.stem!r} is no task id (lowercase letters, digits, "
                          f"'_', '.', '-'): add an \"id\"")
    spec = {"id": path.stem, "version": 1, "templates": list(DEFAULT_TEMPLATES), "source": "", **spec}
    args = spec.get("loader_args")
    if isinstance(args, dict) and isinstance(args.get("path"), str):
        spec["loader_args"] = {**args, "path": str(path.parent / Path(args["path"]).expanduser())}
    return _task(path, {**_described(path, spec), **spec})


def _read(path: Path, keys: tuple[str, ...]) -> dict:
    spec = user_file.read_object(KIND, path)
    for key in spec:
        if key in SUBSET_KEYS and key not in keys:
            _fail(path, key, "class-subset variants are defined in tasks/definitions only")
        user_file.check_key(KIND, path, key, keys)
    return spec


def _described(path: Path, spec: dict) -> dict:
    """``classnames``, ``splits`` and ``data_digest`` from the loader, where it can tell them."""
    loader = _loader(path, spec)
    describe = getattr(loader, "describe", None)
    if describe is None or not isinstance(spec.get("loader_args"), dict):
        return {}
    _bind(path, loader, spec["loader_args"])
    try:
        found = describe(**spec["loader_args"])
    except InvalidInput as exc:
        raise InvalidInput(f"task file {path}: key 'loader_args': {exc}") from None
    names = spec.get("classnames")
    if isinstance(names, list) and len(names) != len(found["classnames"]):
        _fail(path, "classnames", f"{len(names)} names for the {len(found['classnames'])} class folders "
                                  f"({', '.join(found['classnames'])}), which they name in this order")
    return found


def _resolve(path: Path, spec: dict, specs: dict) -> dict:
    if "parent" not in spec:
        return spec
    if spec["parent"] not in specs:
        _fail(path, "parent", f"no task {spec['parent']!r} in {path.parent}")
    parent_path, parent = specs[spec["parent"]]
    parent = _resolve(parent_path, parent, specs)
    missing = [name for name in spec.get("class_subset", []) if name not in parent["classnames"]]
    if missing or not spec.get("class_subset"):
        _fail(path, "class_subset", f"must list class names of {parent['id']!r} (unknown: {missing})")
    indices = [parent["classnames"].index(name) for name in spec["class_subset"]]
    base = {k: v for k, v in parent.items() if k != "description"}
    return {**base, **{k: v for k, v in spec.items() if k != "parent"},
            "class_subset": indices, "classnames": spec["class_subset"], "dataset": parent.get("dataset", parent["id"])}


def _task(path: Path, spec: dict) -> Task:
    for key in ("id", "version", "classnames", "templates", "source", "loader", "splits"):
        if key not in spec:
            _fail(path, key, "missing")
    _expect(path, spec, "id", isinstance(spec["id"], str) and NAME.match(spec["id"]),
            "a task id (lowercase letters, digits, '_', '.', '-')")
    _expect(path, spec, "version", _is_int(spec["version"]) and spec["version"] >= 0, "an integer >= 0")
    _expect(path, spec, "classnames", _strings(spec["classnames"]) and len(set(spec["classnames"])) ==
            len(spec["classnames"]), "a non-empty list of distinct class names")
    _expect(path, spec, "templates", _strings(spec["templates"]) and all("{c}" in t for t in spec["templates"]),
            "a non-empty list of prompt templates, each with {c} where the class name goes")
    for key in ("source", "description", "how_to_get"):
        _expect(path, spec, key, isinstance(spec.get(key, ""), str), "a string")
    _expect(path, spec, "splits", isinstance(spec["splits"], dict) and set(SPLITS) <= set(spec["splits"]) and
            all(_is_int(n) and n >= 0 for n in spec["splits"].values()),
            "an object giving the number of train and test images, e.g. {\"train\": 1000, \"test\": 500}")
    _bind(path, _loader(path, spec), spec.get("loader_args", {}))
    fallback = spec.get("fallback")
    if fallback is not None:
        _expect(path, spec, "fallback", isinstance(fallback, dict) and set(fallback) == {"loader", "args"},
                'an object {"loader": NAME, "args": {...}}')
        _bind(path, _loader(path, fallback, "fallback.loader"), fallback["args"], "fallback.args")
    subset = spec.get("class_subset")
    return Task(
        id=spec["id"], version=spec["version"], classnames=tuple(spec["classnames"]),
        templates=tuple(spec["templates"]), source=spec["source"], loader=spec["loader"],
        loader_args=dict(spec.get("loader_args", {})), splits=dict(spec["splits"]),
        class_subset=tuple(subset) if subset else None, fallback=fallback, description=spec.get("description", ""),
        how_to_get=spec.get("how_to_get", ""), dataset=spec.get("dataset", spec["id"]),
        data_digest=spec.get("data_digest", ""))


def _loader(path: Path, spec: dict, key: str = "loader"):
    if not isinstance(spec.get("loader"), str):
        _fail(path, key, f"must be the name of a loader ({', '.join(LOADERS.names())}), got {spec.get('loader')!r}")
    try:
        return LOADERS.get(spec["loader"])
    except UnknownName as exc:
        raise InvalidInput(f"task file {path}: key {key!r}: {exc}") from None


def _bind(path: Path, loader, args, key: str = "loader_args") -> None:
    """Check ``args`` against the loader's signature (a typo is found here, not mid-run)."""
    if not isinstance(args, dict):
        _fail(path, key, f"must be an object, got {json.dumps(args)}")
    signature = inspect.signature(loader)
    try:
        signature.bind("train", Path("."), False, **args)
    except TypeError as exc:
        takes = [p.name for p in signature.parameters.values() if p.kind == p.KEYWORD_ONLY]
        _fail(path, key, f"{exc}; this loader takes {', '.join(takes) or 'no arguments'}")


def _strings(value) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(v, str) and v for v in value)
