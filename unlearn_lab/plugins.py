"""Extensions from outside the package: installed distributions that declare entry points add rows to the literal
registries (methods, metrics, benchmarks) when the registry is first asked for them (docs/extending.md).

    [project.entry-points."unlearn_lab.methods"]
    GAKL = "gakl_method:GAKL"          # a MethodSpec, made with unlearn_lab.methods.method_spec

One loader for every group: each entry point is imported and checked (the object's type, its name), and a plugin
that fails (import error, wrong object, a name a built-in has) is reported in one line on stderr, once, and left
out; the built-ins always work. A loaded row records where it came from (distribution and version), which runs
carry as the `plugin` tag. `module.path:Name` loads one object from an importable module without packaging it.
"""

from __future__ import annotations

import functools
import importlib
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import metadata
from typing import Any

from unlearn_lab.errors import UsageError

GROUPS = {"methods": "unlearn_lab.methods", "metrics": "unlearn_lab.metrics", "benchmarks": "unlearn_lab.benchmarks"}
log = logging.getLogger("unlearn_lab.plugins")


@dataclass(frozen=True)
class Loaded:
    """A row a plugin adds: the object, and where it came from."""

    name: str
    obj: Any
    origin: str  # "<distribution> <version>" or "module <module:attr>"


@functools.cache
def discover(group: str) -> tuple[tuple[Any, str], ...]:
    """Every entry point of `group` installed in this environment, with its distribution's name and version
    (cached: the environment does not change while a command runs; `refresh()` forgets it for tests)."""
    found = []
    for ep in metadata.entry_points(group=GROUPS[group]):
        dist = getattr(ep, "dist", None)
        origin = f"{dist.name} {dist.version}" if dist is not None else "unknown distribution"
        found.append((ep, origin))
    return tuple(found)


def refresh() -> None:
    discover.cache_clear()
    load.cache_clear()


@functools.cache
def load(group: str, kind: type, builtins: frozenset[str]) -> tuple[Loaded, ...]:
    """The group's plugins that load and are a `kind` with a new name; the others are reported and skipped."""
    rows: list[Loaded] = []
    for ep, origin in discover(group):
        where = f"plugin {ep.name} = {ep.value} ({origin})"
        try:
            obj = ep.load()
        except Exception as exc:  # noqa: BLE001 - any failure of a third party's import is that plugin's problem
            log.warning("%s: cannot be imported (%s: %s); left out", where, type(exc).__name__, exc)
            continue
        problem = check(obj, kind, ep.name, builtins | {r.name for r in rows})
        if problem:
            log.warning("%s: %s; left out", where, problem)
            continue
        rows.append(Loaded(ep.name, obj, origin))
    return tuple(rows)


def protocol_members(kind: type) -> tuple[str, ...]:
    """The attributes and methods a typing.Protocol declares (empty for an ordinary class)."""
    if not getattr(kind, "_is_protocol", False):
        return ()
    names = set(getattr(kind, "__annotations__", {}))
    names |= {n for n, v in vars(kind).items() if callable(v) and not n.startswith("_")}
    return tuple(sorted(names))


def check(obj: Any, kind: type, name: str, taken: frozenset[str] | set[str]) -> str | None:
    """Why `obj` cannot be a row named `name`, or None. A Protocol `kind` (the Benchmark interface) is checked by
    its members: the object must have every attribute and method it declares."""
    members = protocol_members(kind)
    if members:
        missing = [m for m in members if not hasattr(obj, m)]
        if missing:
            return f"is a {type(obj).__name__} without the {kind.__name__} interface's {', '.join(missing)}"
    elif not isinstance(obj, kind):
        return f"is a {type(obj).__name__}, not a {kind.__name__}"
    own = getattr(obj, "name", name)
    if own != name:
        return f"names itself {own!r} but its entry point is {name!r}; they must be the same"
    if name in taken:
        return f"{name!r} is already registered (a built-in or another plugin)"
    return None


def registry(group: str, kind: type, builtins: Mapping[str, Any]) -> dict[str, Any]:
    """The built-in rows, then the plugins' (a plugin never replaces a built-in)."""
    return {**builtins, **{row.name: row.obj for row in load(group, kind, frozenset(builtins))}}


def origin_of(group: str, kind: type, builtins: Mapping[str, Any], name: str) -> str:
    """Where a registry row comes from: "built-in", "<distribution> <version>" or "module <ref>"."""
    if name in builtins:
        return "built-in"
    if ":" in name:
        return f"module {name}"
    return next((r.origin for r in load(group, kind, frozenset(builtins)) if r.name == name), "unknown")


def from_module(ref: str, kind: type, what: str) -> Any:
    """`package.module:Name` -> the object, checked to be a `kind`; one line if it cannot be."""
    module, _, attr = ref.partition(":")
    if not module or not attr:
        raise UsageError(f"{what} {ref!r}: expected package.module:Name")
    try:
        obj = getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as exc:
        raise UsageError(f"{what} {ref!r} cannot be loaded: {type(exc).__name__}: {exc}") from None
    if not isinstance(obj, kind):
        raise UsageError(f"{what} {ref!r} is a {type(obj).__name__}, not a {kind.__name__}")
    return obj
