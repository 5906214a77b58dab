"""Arms of an experiment: variants of a base config made by dotted-path overrides.

:func:`override` sets one value at a dotted path of a parsed (not yet validated) config document,
e.g. ``run.admission_control``, ``tenants[1].intent.traffic.mean_on_s`` or ``tenants[0].replicas``;
:func:`make_arm` applies several and re-validates the variant as a whole config, so an arm is
exactly a config ``trefed run`` could run on its own. Both are generic: the experiments
(:mod:`federation.experiment.kinds`) build their arms with them, and a parameter sweep
(``--grid KEY=V1,V2``) can too.

Path syntax: names separated by ``.``, list items by ``[i]`` (``0 <= i < len``). Every step but the
last must exist; the last may name a key a mapping does not have yet (``tenants[0].replicas``,
``run.liars``), and then the validation of the whole variant decides whether the field exists.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from federation.config import FederationConfig, TenantConfig, parse_config
from federation.errors import ConfigError, FieldError

__all__ = ["Arm", "parse_key", "override", "make_arm", "route"]

_STEP = re.compile(r"\.?([A-Za-z_][A-Za-z0-9_-]*)|\[(\d+)\]")


def parse_key(key: str) -> list[str | int]:
    """The steps of a dotted path: ``"tenants[1].intent"`` -> ``["tenants", 1, "intent"]``.

    Raises
    ------
    FieldError
        Naming the key, when it is empty or not of the path syntax of the module docstring.
    """
    if not isinstance(key, str) or not key:
        raise FieldError("override", f"(={key!r}) must be a dotted path such as run.scheduler")
    steps: list[str | int] = []
    pos = 0
    while pos < len(key):
        m = _STEP.match(key, pos)
        if m is None or (key[pos] == ".") != (pos > 0 and m.group(1) is not None):
            raise FieldError(key, f"is not a dotted path (bad at character {pos + 1}: {key[pos:pos + 10]!r})")
        steps.append(m.group(1) if m.group(1) is not None else int(m.group(2)))
        pos = m.end()
    return steps


def _where(steps: list[str | int]) -> str:
    out = ""
    for s in steps:
        out += f"[{s}]" if isinstance(s, int) else (f".{s}" if out else s)
    return out


def override(config_data: dict, key: str, value: Any) -> dict:
    """A deep copy of ``config_data`` with ``value`` at the dotted path ``key``.

    Parameters
    ----------
    config_data
        A parsed config document (mappings and lists, as ``yaml.safe_load`` returns it); not modified.
    key
        A dotted path (see the module docstring), e.g. ``tenants[1].intent.traffic.sources``.
    value
        Any YAML value (deep-copied).

    Returns
    -------
    dict
        The new document. It is not validated: :func:`make_arm` validates the whole variant.

    Raises
    ------
    FieldError
        Naming ``key`` and the step that does not exist (an unknown key, an index out of range, a
        step into a scalar).
    """
    steps = parse_key(key)
    out = copy.deepcopy(config_data)
    node: Any = out
    for i, step in enumerate(steps):
        last = i == len(steps) - 1
        here = _where(steps[:i + 1])
        if isinstance(step, int):
            if not isinstance(node, list):
                raise FieldError(key, f"{_where(steps[:i]) or '<root>'} is not a list, so {here} does not exist")
            if step >= len(node):
                raise FieldError(key, f"{here} does not exist ({_where(steps[:i])} has {len(node)} items)")
        else:
            if not isinstance(node, dict):
                raise FieldError(key, f"{_where(steps[:i]) or '<root>'} is not a mapping, so {here} does not exist")
            if step not in node and not last:
                raise FieldError(key, f"{here} does not exist")
        if last:
            node[step] = copy.deepcopy(value)
        else:
            node = node[step]
    return out


@dataclass(frozen=True, eq=False)
class Arm:
    """One variant of an experiment.

    Attributes
    ----------
    name
        Short, file-safe (its results go in ``arms/NAME/``).
    overrides
        ``(dotted path, value)`` applied to the base config, in order.
    config
        The variant, validated (without the base's ``experiment:`` section).
    data
        The variant's document (what ``trefed run`` could run on its own).
    params
        What the experiment's metrics need to know of the arm (e.g. ``{"load": 2.0, "control": True}``).
    mode
        ``"loop"``: the whole loop on Ray (:func:`agents.scenario.run_scenario`); ``"plane"``: the
        data plane only, in the pure core; ``"core"``: the calculus only, in the pure core.
    """

    name: str
    overrides: tuple[tuple[str, Any], ...]
    config: FederationConfig
    data: dict
    params: Mapping[str, Any] = field(default_factory=dict)
    mode: str = "loop"


def make_arm(base_data: dict, name: str, overrides: Mapping[str, Any] | tuple[tuple[str, Any], ...], *,
             params: Mapping[str, Any] | None = None, mode: str = "loop", base_dir: Path | None = None) -> Arm:
    """The arm ``name``: ``base_data`` with every override applied, validated as a whole config.

    The base's ``experiment:`` section is dropped (an arm is a plain run); a relative ``keys_dir``
    is resolved against ``base_dir`` (the config file's directory), as :func:`parse_config` does.

    Raises
    ------
    ConfigError
        ``arm NAME: ...`` naming the key of a bad override, or the field of the variant that fails
        validation.
    """
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}", name) or ".." in name:
        raise ConfigError(f"arm name {name!r} must be 1-64 letters, digits, '_', '-', '.'")
    items = tuple(overrides.items()) if isinstance(overrides, Mapping) else tuple(overrides)
    data = {k: v for k, v in base_data.items() if k != "experiment"}
    try:
        for key, value in items:
            data = override(data, key, value)
        config = parse_config(data, source=f"arm {name}", base_dir=base_dir)
    except ConfigError as exc:
        raise ConfigError(f"arm {name}: {exc}") from None
    return Arm(name, items, config, data, dict(params or {}), mode)


def route(config: FederationConfig, tenant: TenantConfig) -> tuple[str, tuple[str, ...]]:
    """``(model id, path)`` of a tenant: the first catalogue model of its task and the first path to it.

    Raises
    ------
    FieldError
        No model of its task is reachable from its access domain.
    """
    for m in config.models:
        if m.task == tenant.intent.task:
            paths = config.paths(tenant.access, m.compute_domain)
            if paths:
                return m.id, paths[0]
    raise FieldError(f"tenants[{config.tenants.index(tenant)}].intent.task",
                     f"no model of task {tenant.intent.task!r} is reachable from {tenant.access!r}")
