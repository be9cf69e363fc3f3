"""Name -> class registries with wildcard listing, did-you-mean errors and plugins.

One ``Registry`` serves estimators, encoders, tasks and fine-tuning methods alike
(timm / lm-evaluation-harness style): a decorator registers a class under a short
name, ``list(pattern)`` filters with fnmatch, ``get(name)`` raises ``UnknownName``
with the closest known names. A registry may find its built-in entries by importing
every module of its package on first use (``package``: no hand-kept import list, and
importing the package stays cheap). Third-party entries arrive through an entry-point
group; a plugin that fails to import is reported and skipped, never fatal.
"""
from __future__ import annotations

import contextlib
import difflib
import fnmatch
import importlib
import importlib.util
import pkgutil
import re
import sys
from importlib.metadata import entry_points
from pathlib import Path

from .errors import InvalidInput, warn

NAME = re.compile(r"^[a-z][a-z0-9_.\-]*$")


class UnknownName(InvalidInput):
    """A name that no registry entry has; the message suggests close matches."""


def did_you_mean(kind: str, name: str, known) -> str:
    close = difflib.get_close_matches(name, list(known), n=3, cutoff=0.5)
    hint = f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
    return f"unknown {kind} {name!r}{hint} (see `python -m benchmark ls {kind}s`)"


def import_modules(package: str, skip=()) -> None:
    """Import every module of ``package`` but ``skip`` and private ones (each registers what it defines)."""
    for info in pkgutil.iter_modules(importlib.import_module(package).__path__):
        if info.name not in skip and not info.name.startswith("_"):
            importlib.import_module(f"{package}.{info.name}")


class Registry:
    def __init__(self, kind: str, entry_point_group: str | None = None, package: str | None = None,
                 infrastructure=()):
        """``package``: import its modules (``import_modules``, ``infrastructure`` aside) on first use."""
        self.kind = kind
        self.entry_point_group = entry_point_group
        self.package, self.infrastructure = package, tuple(infrastructure)
        self._entries: dict[str, object] = {}
        self._plugins_loaded = entry_point_group is None and package is None
        self.plugin_errors: list[str] = []

    def register(self, name: str, replace: bool = False):
        """Class or function decorator: ``@REGISTRY.register("short_name")``; ``replace`` lets an
        entry take the place of another one of that name."""
        if not NAME.match(name):
            raise ValueError(f"{self.kind} name {name!r} must be lowercase letters, digits, '_', '.' or '-'")

        def decorator(obj):
            if self.package and not getattr(obj, "__module__", "").startswith(f"{self.package}."):
                self.load_plugins()  # a third-party entry registers after the built-ins, as it always has
            previous = self._entries.get(name)
            if previous is not None and not replace and _qualname(previous) != _qualname(obj):
                raise ValueError(f"{self.kind} {name!r} is already registered by {_qualname(previous)}")
            if isinstance(obj, type):
                obj.name = name
            self._entries[name] = obj
            return obj

        return decorator

    def load_plugins(self) -> None:
        """Import the package's modules, then every module advertised in the entry-point group (once)."""
        if self._plugins_loaded:
            return
        self._plugins_loaded = True
        if self.package:
            import_modules(self.package, self.infrastructure)
        for ep in entry_points(group=self.entry_point_group) if self.entry_point_group else ():
            try:
                ep.load()
            except (Exception, SystemExit) as exc:  # a broken plugin must never break the harness
                msg = f"skipped {self.kind} plugin {ep.name!r} ({ep.value}): {type(exc).__name__}: {exc}"
                self.plugin_errors.append(msg)
                warn(msg)

    def names(self, pattern: str | list[str] = "*") -> list[str]:
        """Registered names matching one or more fnmatch patterns (comma-separated allowed), sorted."""
        self.load_plugins()
        patterns = split_patterns(pattern)
        return sorted(n for n in self._entries if any(fnmatch.fnmatchcase(n, p) for p in patterns))

    def select(self, pattern: str | list[str]) -> list[str]:
        """Like ``names`` but every pattern must match something (typos are errors, not silence)."""
        self.load_plugins()
        chosen = []
        for p in split_patterns(pattern):
            hits = self.names(p)
            if not hits:
                raise UnknownName(did_you_mean(self.kind, p, self._entries))
            chosen += [h for h in hits if h not in chosen]
        return chosen

    def get(self, name: str):
        self.load_plugins()
        try:
            return self._entries[name]
        except KeyError:
            raise UnknownName(did_you_mean(self.kind, name, self._entries)) from None

    def __contains__(self, name: str) -> bool:
        self.load_plugins()
        return name in self._entries

    @contextlib.contextmanager
    def scoped(self):
        """``with REGISTRY.scoped():`` entries registered inside leave at the end (tests, a plugin tried
        once); the built-ins are loaded first, so they stay."""
        self.load_plugins()
        before = dict(self._entries)
        try:
            yield self
        finally:
            self._entries = before


def split_patterns(pattern: str | list[str]) -> list[str]:
    items = pattern if isinstance(pattern, (list, tuple)) else str(pattern).split(",")
    return [p.strip() for p in items if p.strip()] or ["*"]


def import_plugin(spec: str) -> None:
    """Import a plugin given as a module name (``my_pkg.estimators``) or a ``.py`` file path."""
    path = Path(spec)
    if spec.endswith(".py"):
        if not path.is_file():
            raise InvalidInput(f"plugin file {spec} does not exist")
        module_name = f"transferbench_plugin_{path.stem}"
        loader_spec = importlib.util.spec_from_file_location(module_name, path)
        module = importlib.util.module_from_spec(loader_spec)
        sys.modules[module_name] = module
        try:
            loader_spec.loader.exec_module(module)
        except (Exception, SystemExit) as exc:
            del sys.modules[module_name]
            raise InvalidInput(f"plugin {spec} failed to import: {type(exc).__name__}: {exc}") from None
        return
    try:
        importlib.import_module(spec)
    except (Exception, SystemExit) as exc:
        raise InvalidInput(f"plugin module {spec!r} failed to import: {type(exc).__name__}: {exc}") from None


def _qualname(obj) -> str:
    return f"{getattr(obj, '__module__', '?')}.{getattr(obj, '__qualname__', repr(obj))}"
