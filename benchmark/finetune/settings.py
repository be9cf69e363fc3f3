"""Fine-tuning settings: ``FinetuneConfig``, a suite's ``finetune`` preset, and how it resolves per method.

The generic settings are the dataclass fields (``GENERIC``). A method's own hyper-parameters
(LoRA's rank, the adapter's reduction) and their defaults live with the method
(``Method.hyperparameters``); ``for_method`` gives the settings one method runs with, its
hyper-parameters in ``method_args``. Torch-free, so a suite file is checked before any model
code loads. A bad value is one line naming the setting (``BadSetting``).
"""
from __future__ import annotations

import dataclasses
import difflib
import itertools
from dataclasses import dataclass, field
from numbers import Real
from typing import Any, Mapping, Sequence

from encoders.extract import PROMPT_MODES
from estimators.errors import InvalidInput
from estimators.registry import did_you_mean

OPTIMIZERS = ("adamw", "sgd")


class BadSetting(InvalidInput):
    """A fine-tuning setting with an unknown name or a value it cannot take."""

    def __init__(self, key: str, problem: str):
        super().__init__(f"fine-tuning setting {key!r}: {problem}")
        self.key, self.problem = key, problem


def _number(low: float, high: float = float("inf"), low_open: bool = False):
    def ok(v):
        return isinstance(v, Real) and not isinstance(v, bool) and (low < v if low_open else low <= v) and v <= high
    return ok


def _integer(low: int, optional: bool = False):
    return lambda v: (optional and v is None) or (isinstance(v, int) and not isinstance(v, bool) and v >= low)


#: setting -> (accepts the value, what it must be)
CHECKS = {
    "optimizer": (lambda v: v in OPTIMIZERS, f"one of {', '.join(OPTIMIZERS)}"),
    "lr": (_number(0, low_open=True), "a number > 0"),
    "weight_decay": (_number(0), "a number >= 0"),
    "momentum": (_number(0, 1), "a number in [0, 1]"),
    "epochs": (_integer(1), "an integer >= 1"),
    "max_steps": (_integer(1, optional=True), "null or an integer >= 1"),
    "batch_size": (_integer(1), "an integer >= 1"),
    "val_fraction": (lambda v: _number(0, low_open=True)(v) and v < 1, "a number in (0, 1)"),
    "max_val": (_integer(1), "an integer >= 1"),
    "prompts": (lambda v: v in PROMPT_MODES, f"one of {', '.join(PROMPT_MODES)}"),
    "templates_per_step": (_integer(1, optional=True), "null or an integer >= 1"),
    "n_train": (_integer(1, optional=True), "null (all) or an integer >= 1"),
    "n_test": (_integer(1, optional=True), "null (all) or an integer >= 1"),
    "n_ood": (_integer(1, optional=True), "null (all) or an integer >= 1"),
    "sample_seed": (_integer(0), "an integer >= 0"),
}


@dataclass(frozen=True)
class FinetuneConfig:
    """Every setting of one fine-tuning run; ``overrides`` and ``sweep`` adapt it per method.

    ``overrides[method]`` replaces settings (generic ones or the method's hyper-parameters) for
    that method only (PEFT methods want other learning rates than full fine-tuning); ``sweep``
    maps settings to values searched by validation accuracy (the paper's grid). ``n_test``:
    test images of every task (None: the whole split); ``n_ood``: the class-balanced part of
    them used for the tasks other than the target (None or more than ``n_test``: all);
    ``sample_seed`` draws those samples and the training sample (the estimators' ``seeds[0]``,
    so caches are shared). ``method_args``: the hyper-parameters of the method a resolved
    config (``for_method``) is for.
    """

    optimizer: str = "adamw"
    lr: float = 1e-4
    weight_decay: float = 0.01
    momentum: float = 0.9
    epochs: int = 2
    max_steps: int | None = None
    batch_size: int = 32
    val_fraction: float = 0.1
    max_val: int = 5000
    prompts: str = "ensemble"
    templates_per_step: int | None = None
    n_train: int | None = 500
    n_test: int | None = 500
    n_ood: int | None = 200
    sample_seed: int = 0
    method_args: Mapping[str, Any] = field(default_factory=dict)
    overrides: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    sweep: Mapping[str, Sequence] = field(default_factory=dict)

    def __post_init__(self):
        for key, (ok, expected) in CHECKS.items():
            if not ok(getattr(self, key)):
                raise BadSetting(key, f"must be {expected}, got {getattr(self, key)!r}")
        methods = _method_hyperparameters()
        everywhere = set(GENERIC).union(*methods.values())
        for name, settings in self.overrides.items():
            if name not in methods:
                raise BadSetting(f"overrides.{name}", did_you_mean("method", name, methods))
            for key in settings:
                if key not in GENERIC and key not in methods[name]:
                    raise BadSetting(f"overrides.{name}.{key}", _unknown(key, methods, name))
        for key, values in self.sweep.items():
            if key not in everywhere:
                raise BadSetting(f"sweep.{key}", _unknown(key, methods))
            if isinstance(values, (str, bytes)) or not isinstance(values, Sequence) or len(values) == 0:
                raise BadSetting(f"sweep.{key}", f"must be a non-empty list of values, got {values!r}")
            for value in values if key in CHECKS else ():
                if not CHECKS[key][0](value):
                    raise BadSetting(f"sweep.{key}", f"every value must be {CHECKS[key][1]}, got {value!r}")

    def for_method(self, method) -> "FinetuneConfig":
        """The settings ``method`` runs with: its overrides applied, its hyper-parameters (defaults,
        then ``method_args``, then its overrides) in ``method_args``, the sweep cut to what it reads.
        Idempotent. A value the method cannot use raises ``BadSetting``."""
        override = dict(self.overrides.get(method.name, {}))
        mine = set(method.hyperparameters)
        args = {**method.hyperparameters, **{k: v for k, v in self.method_args.items() if k in mine},
                **{k: v for k, v in override.items() if k in mine}}
        sweep = {k: tuple(v) for k, v in self.sweep.items() if k in GENERIC or k in mine}
        for key, values in [(k, [args[k]]) for k in args] + [(k, v) for k, v in sweep.items() if k in mine]:
            for value in values:
                try:
                    method.check({**args, key: value})
                except InvalidInput as exc:
                    raise BadSetting(key, f"method {method.name!r}: {exc}") from None
        generic = {k: v for k, v in override.items() if k not in mine}
        return dataclasses.replace(self, **generic, method_args=args, overrides={}, sweep=sweep)

    def setting(self, key: str):
        """A generic setting or one of the resolved method's hyper-parameters."""
        return self.method_args[key] if key in self.method_args else getattr(self, key)

    def grid(self) -> list["FinetuneConfig"]:
        """One config per point of the sweep (itself when there is no sweep)."""
        names = sorted(self.sweep)
        out = []
        for values in itertools.product(*(self.sweep[n] for n in names)):
            point = dict(zip(names, values))
            generic = {k: v for k, v in point.items() if k in GENERIC}
            own = {k: v for k, v in point.items() if k not in GENERIC}
            out.append(dataclasses.replace(self, sweep={}, **generic, method_args={**self.method_args, **own}))
        return out

    def spec(self, method) -> dict:
        """JSON-able settings that change ``method``'s results (for content-addressed specs): the
        generic ones, the method's hyper-parameters and the sweep."""
        resolved = self.for_method(method)
        out = {k: getattr(resolved, k) for k in GENERIC}
        out.update(resolved.method_args)
        out["sweep"] = {k: list(v) for k, v in sorted(resolved.sweep.items())}
        return out


GENERIC = tuple(f.name for f in dataclasses.fields(FinetuneConfig)
                if f.name not in ("method_args", "overrides", "sweep"))


def _method_hyperparameters() -> dict[str, tuple[str, ...]]:
    from benchmark.finetune.methods import METHODS

    return {name: tuple(METHODS.get(name).hyperparameters) for name in METHODS.names("*")}


def _unknown(key: str, methods: dict, method: str | None = None) -> str:
    owners = [m for m, keys in methods.items() if key in keys]
    if owners:
        return f"is a hyper-parameter of method {owners[0]!r}, not of {method!r}"
    known = sorted(set(GENERIC).union(*methods.values()) if method is None else set(GENERIC) | set(methods[method]))
    close = difflib.get_close_matches(key, known, n=1)
    return f"unknown setting ({f'did you mean {close[0]!r}? ' if close else ''}known: {', '.join(known)})"
