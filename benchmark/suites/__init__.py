"""Suites: what a run covers, one JSON file each (DESIGN.md, "Suites").

The built-in suites are the files of this folder (``mini``, ``paper``, ``smoke``), the only
place that says which tasks belong to them; ``get_suite`` reads a user's file from any path
as well. Keys (``KEYS``) and defaults:

* ``encoders`` (required): encoder ids: registered names (``ls encoders``), ``open_clip:ARCH/TAG``,
  ``open_clip:hf-hub:ORG/NAME``, ``open_clip:ARCH/CHECKPOINT_FILE``, ``open_clip:local-dir:FOLDER``;
* ``tasks`` (required): registered task names (``ls tasks``) or paths of task files
  (``tasks.task_file``; relative to the suite file);
* ``methods``: fine-tuning methods (default: every registered one);
* ``seeds``: fine-tuning seeds (default ``[0]``); the first one also draws every sample;
* ``n_train``, ``n_test``: class-balanced train images scored and fine-tuned on, and test images
  of every task (default 500 each; null: the whole split);
* ``prompts``: ``"ensemble"`` (every template of a task, averaged; the default) or ``"single"``
  (its canonical template);
* ``finetune``: the fine-tuning preset: ``FinetuneConfig`` settings (defaults there), ``overrides``
  per method and ``sweep`` (a method's own hyper-parameters go in those two);
* ``name``: the suite's name in results and on its board (default: the file name without ``.json``);
* ``description``, ``notes``: text for people (``ls suites`` shows the description);
* ``pipeline_check``: true for a suite whose encoders have random weights (``smoke``): its board says
  it checks the pipeline and ranks nothing (default false).

Every problem is one line naming the file, the key and what is wrong (``InvalidInput``).
"""
from __future__ import annotations

import dataclasses
import functools
import json
from dataclasses import dataclass
from pathlib import Path

from benchmark.finetune.methods import METHODS
from benchmark.finetune.settings import GENERIC, BadSetting, FinetuneConfig
from encoders.extract import PROMPT_MODES
from estimators.errors import InvalidInput
from estimators.registry import NAME, Registry, UnknownName
from tasks import Task, get_task, read_task_file, register_task, user_file

KEYS = ("name", "description", "notes", "pipeline_check", "encoders", "tasks", "methods", "seeds", "n_train",
        "n_test", "prompts",
        "finetune")
SAMPLING = ("n_train", "n_test", "prompts", "sample_seed")  # set by the suite's own keys, not in ``finetune``
FINETUNE_KEYS = tuple(k for k in GENERIC if k not in SAMPLING) + ("overrides", "sweep")
DEFAULTS = {"seeds": [0], "n_train": 500, "n_test": 500, "prompts": "ensemble", "finetune": {}, "pipeline_check": False}
KIND = "suite file"
_fail = functools.partial(user_file.fail, KIND)
_expect = functools.partial(user_file.expect, KIND)
_is_int = user_file.is_int

SUITES = Registry("suite")  # name -> path of a built-in suite file
for _path in sorted(Path(__file__).parent.glob("*.json")):
    SUITES.register(_path.stem)(_path)


@dataclass(frozen=True)
class Suite:
    """A suite file, read: task ids (``local_tasks``: those read from task files, registered by
    ``register_tasks`` in every process that runs a cell) and the fine-tuning preset, sampled
    like the score cells (``n_train``, ``n_test``, ``prompts``, ``seeds[0]``: caches are shared)."""

    name: str
    description: str
    encoders: tuple[str, ...]
    tasks: tuple[str, ...]
    methods: tuple[str, ...]
    seeds: tuple[int, ...]
    n_train: int | None
    n_test: int | None
    prompts: str
    finetune: FinetuneConfig
    local_tasks: tuple[Task, ...] = ()
    pipeline_check: bool = False

    def register_tasks(self) -> None:
        for task in self.local_tasks:
            register_task(task)


def get_suite(name_or_path: str) -> Suite:
    """The built-in suite ``name_or_path``, or the suite of a ``.json`` file anywhere."""
    if name_or_path.endswith(".json"):
        return read_suite(Path(name_or_path))
    return read_suite(SUITES.get(name_or_path))


def builtin_suites() -> dict[str, Suite]:
    """Name -> built-in suite."""
    return {name: get_suite(name) for name in SUITES.names("*")}


def read_suite(path: Path) -> Suite:
    """Read and check a suite file; register the tasks of its task files."""
    path = Path(path).expanduser().absolute()
    spec = user_file.read_object(KIND, path)
    _known(path, spec, KEYS)
    for key in ("encoders", "tasks"):
        if key not in spec:
            _fail(path, key, "missing (every suite names its encoders and tasks)")
    spec = {**DEFAULTS, "name": path.stem, "description": f"from {path}", "methods": METHODS.names("*"), **spec}
    _expect(path, spec, "name", isinstance(spec["name"], str) and NAME.match(spec["name"]),
            "a suite name (lowercase letters, digits, '_', '.', '-')")
    _expect(path, spec, "encoders", _names(spec["encoders"]), "a non-empty list of distinct encoder ids")
    _expect(path, spec, "tasks", _names(spec["tasks"]), "a non-empty list of distinct task names or task files")
    _expect(path, spec, "methods", _names(spec["methods"]), "a non-empty list of distinct method names")
    _expect(path, spec, "seeds", isinstance(spec["seeds"], list) and spec["seeds"] and all(
        _is_int(s) and 0 <= s < 2**32 for s in spec["seeds"]) and len(set(spec["seeds"])) == len(spec["seeds"]),
            "a non-empty list of distinct integers in 0..2**32-1 (numpy and torch seeds)")
    for key in ("n_train", "n_test"):
        _expect(path, spec, key, spec[key] is None or (_is_int(spec[key]) and spec[key] >= 1),
                "null (the whole split) or an integer >= 1")
    _expect(path, spec, "prompts", spec["prompts"] in PROMPT_MODES, f"one of {', '.join(PROMPT_MODES)}")
    for key in ("description", "notes"):
        _expect(path, spec, key, isinstance(spec.get(key, ""), str), "a string")
    _expect(path, spec, "pipeline_check", isinstance(spec["pipeline_check"], bool), "true or false")
    for method in spec["methods"]:
        try:
            METHODS.get(method)
        except UnknownName as exc:
            _fail(path, "methods", str(exc))
    task_ids, local = _tasks(path, spec["tasks"])
    return Suite(name=spec["name"], description=spec["description"], encoders=tuple(spec["encoders"]),
                 tasks=task_ids, methods=tuple(spec["methods"]), seeds=tuple(spec["seeds"]), n_train=spec["n_train"],
                 n_test=spec["n_test"], prompts=spec["prompts"], finetune=_finetune(path, spec), local_tasks=local,
                 pipeline_check=spec["pipeline_check"])


def _tasks(path: Path, entries: list[str]) -> tuple[tuple[str, ...], tuple[Task, ...]]:
    """Task ids of the ``tasks`` entries (a ``.json`` entry is a task file, relative to the suite's folder)."""
    ids, local = [], []
    for entry in entries:
        if entry.endswith(".json"):
            try:
                task = read_task_file(path.parent / Path(entry).expanduser())
                register_task(task)
            except InvalidInput as exc:
                _fail(path, "tasks", str(exc) if str(exc).startswith("task file") else f"task file {entry}: {exc}")
            ids.append(task.id)
            local.append(task)
        else:
            try:
                ids.append(get_task(entry).id)
            except UnknownName as exc:
                _fail(path, "tasks", f"{exc}; a task file's name ends in .json")
    if len(set(ids)) != len(ids):
        _fail(path, "tasks", f"names a task twice: {', '.join(ids)}")
    return tuple(ids), tuple(local)


def _finetune(path: Path, spec: dict) -> FinetuneConfig:
    """The preset with the suite's sampling, every method's settings checked."""
    preset = spec["finetune"]
    if not isinstance(preset, dict):
        _fail(path, "finetune", f"must be an object of fine-tuning settings, got {json.dumps(preset)[:80]}")
    for key in preset:
        if key in SAMPLING:
            _fail(path, f"finetune.{key}", f"set by the suite's own {'seeds' if key == 'sample_seed' else key!r}")
        owners = [m for m in METHODS.names("*") if key in METHODS.get(m).hyperparameters]
        if owners:
            _fail(path, f"finetune.{key}", f"a hyper-parameter of method {owners[0]!r}: set it in "
                                           f"\"overrides\": {{\"{owners[0]}\": {{...}}}} or in \"sweep\"")
    _known(path, preset, FINETUNE_KEYS, "finetune.")
    try:
        config = FinetuneConfig(**preset, n_train=spec["n_train"], n_test=spec["n_test"], prompts=spec["prompts"],
                                sample_seed=spec["seeds"][0])
        for method in spec["methods"]:
            config.for_method(METHODS.get(method)())
    except BadSetting as exc:
        _fail(path, f"finetune.{exc.key}", exc.problem)
    except TypeError as exc:  # overrides / sweep of the wrong shape
        _fail(path, "finetune", f"overrides and sweep must be objects ({exc})")
    return config


def with_entries(suite: Suite, **entries) -> Suite:
    """``suite`` with other ``encoders``, ``tasks`` (ids) or ``methods``."""
    return dataclasses.replace(suite, **{k: tuple(v) for k, v in entries.items()})


def _known(path: Path, spec: dict, keys: tuple[str, ...], prefix: str = "") -> None:
    for key in spec:
        user_file.check_key(KIND, path, key, keys, prefix)


def _names(value) -> bool:
    return (isinstance(value, list) and bool(value) and all(isinstance(v, str) and v for v in value)
            and len(set(value)) == len(value))
