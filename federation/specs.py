"""The ``--arrival`` / ``--hop`` / ``--cross`` grammar shared by ``trefed bound`` and ``trefed simulate``.

A spec is ``KIND:key=value,...`` (arrivals) or ``key=value,...`` (hops). Parsing only checks the
grammar, the keys and the ranges, and returns frozen dataclasses; the calculus
(``federation.calculus.arrivals`` / ``federation.calculus.services``, and
:func:`federation.calculus.model.build_model` for a whole tandem) and the data plane
(``federation.dataplane.traffic``, ``federation.dataplane.path``) each turn them into their own
models.

Units. Continuous time (``time="continuous"``): seconds, and one consistent unit of work
("bits"): ``rate`` of a Poisson flow is packets per second, ``mean_size`` bits, a hop's ``rate``
bits per second. Discrete time (``time="discrete"``): the same with "slot" in place of "second".

Arrival kinds and their keys (``*`` = required)::

    token-bucket     sigma* (bits, >= 0), rho* (bits/s, > 0)
    poisson          rate* (packets/s, > 0), size=det|exp (default det), mean_size (bits, default 1)
    exp-increments   lamb* (1/bits, > 0): i.i.d. exponential work per slot, mean 1/lamb   [discrete]
    mmoo             discrete:   stay_on*, stay_off* (probabilities in (0,1)), peak* (bits/slot), n (default 1)
                     continuous: on*, off* (mean sojourn times, s), peak* (bits/s), n (default 1)
    correlated-mmoo  as mmoo, but the n sources share one modulating chain; corr in [0,1]
                     (default 1: fully correlated) is the data plane's knob between independent
                     and fully correlated sources
    pareto-onoff     on*, off* (mean on/off times, s), peak* (bits/s), alpha* (> 1, Pareto shape),
                     n (default 1): heavy-tailed; the data plane only (no MGF exists)   [continuous]

Hop keys::

    rate*     service rate (bits/s), > 0
    latency   rate-latency latency T (s), >= 0, default 0
    service   size (default: a packet's service time is its size / rate) | exp (i.i.d.
              exponential service times of mean size/rate, size the flow of interest's mean
              packet size: one packet per completion, e.g. an inference server)
    prop      propagation delay (s), >= 0, default 0
    buffer    buffer size (bits), > 0, default unlimited                    [data plane]
    ceiling   hard latency ceiling (s): later packets are dropped, > 0      [data plane]
    loss      Bernoulli loss probability in [0, 1), default 0               [data plane]

Cross traffic: ``HOP=SPEC`` with ``HOP`` an integer counted from 1; the cross flow enters at that
hop and leaves after it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, cast

from federation.errors import SpecError

__all__ = [
    "TimeModel",
    "ArrivalSpec",
    "HopSpec",
    "CrossSpec",
    "ARRIVAL_KINDS",
    "parse_arrival",
    "parse_hop",
    "parse_cross",
]

TimeModel = Literal["continuous", "discrete"]

# (required keys, optional keys with defaults) per kind and time model.
_Keys = tuple[tuple[str, ...], dict[str, float | str]]
_MMOO_DISCRETE: _Keys = (("stay_on", "stay_off", "peak"), {"n": 1.0})
_MMOO_CONT: _Keys = (("on", "off", "peak"), {"n": 1.0})
ARRIVAL_KINDS: dict[str, dict[str, _Keys]] = {
    "token-bucket": {t: (("sigma", "rho"), {}) for t in ("continuous", "discrete")},
    "poisson": {t: (("rate",), {"size": "det", "mean_size": 1.0}) for t in ("continuous", "discrete")},
    "exp-increments": {"discrete": (("lamb",), {})},
    "mmoo": {"discrete": _MMOO_DISCRETE, "continuous": _MMOO_CONT},
    "correlated-mmoo": {
        "discrete": (_MMOO_DISCRETE[0], {"n": 1.0, "corr": 1.0}),
        "continuous": (_MMOO_CONT[0], {"n": 1.0, "corr": 1.0}),
    },
    "pareto-onoff": {"continuous": (("on", "off", "peak", "alpha"), {"n": 1.0})},
}

_HOP_KEYS: dict[str, float | str] = {
    "rate": math.nan,
    "latency": 0.0,
    "service": "size",
    "prop": 0.0,
    "buffer": math.inf,
    "ceiling": math.inf,
    "loss": 0.0,
}

_STRING_KEYS = {"size": ("det", "exp"), "service": ("size", "exp")}


@dataclass(frozen=True)
class ArrivalSpec:
    """A parsed arrival spec: ``kind`` and its numeric/string parameters (defaults filled in)."""

    kind: str
    params: Mapping[str, float | str]
    time: TimeModel = "continuous"
    text: str = ""

    def __getitem__(self, key: str) -> float | str:
        return self.params[key]

    def num(self, key: str) -> float:
        """A numeric parameter."""
        return float(self.params[key])


@dataclass(frozen=True)
class HopSpec:
    """A parsed hop: rate (bits/s), latency T (s), service kind, propagation delay (s), data-plane extras."""

    rate: float
    latency: float = 0.0
    service: Literal["size", "exp"] = "size"
    prop: float = 0.0
    buffer: float = math.inf
    ceiling: float = math.inf
    loss: float = 0.0
    text: str = field(default="", compare=False)


@dataclass(frozen=True)
class CrossSpec:
    """A one-hop cross flow entering at ``hop`` (1-based) and leaving after it."""

    hop: int
    arrival: ArrivalSpec


def _split_pairs(body: str, what: str) -> dict[str, str]:
    pairs: dict[str, str] = {}
    if not body.strip():
        return pairs
    for item in body.split(","):
        key, sep, value = item.partition("=")
        key, value = key.strip(), value.strip()
        if not sep or not key or not value:
            raise SpecError(f"{what}: expected key=value, got {item.strip()!r}")
        if key in pairs:
            raise SpecError(f"{what}: key {key!r} given twice")
        pairs[key] = value
    return pairs


def _number(what: str, key: str, value: str) -> float:
    try:
        x = float(value)
    except ValueError:
        raise SpecError(f"{what}: {key}(={value!r}) is not a number") from None
    if math.isnan(x):
        raise SpecError(f"{what}: {key}(={value!r}) is not a number")
    return x


def _check_range(what: str, key: str, x: float, kind: str) -> None:
    def bad(cond: str) -> SpecError:
        return SpecError(f"{what}: {key}(={x:g}) must be {cond}")

    if key in ("stay_on", "stay_off"):
        if not 0.0 < x < 1.0:
            raise bad("in (0, 1)")
    elif key in ("corr",):
        if not 0.0 <= x <= 1.0:
            raise bad("in [0, 1]")
    elif key == "loss":
        if not 0.0 <= x < 1.0:
            raise bad("in [0, 1)")
    elif key == "n":
        if x < 1 or x != int(x):
            raise bad("a whole number >= 1")
    elif key == "alpha":
        if not x > 1.0:
            raise bad("> 1")
    elif key in ("sigma", "latency", "prop"):
        if not (x >= 0.0 and math.isfinite(x)):
            raise bad(">= 0 and finite")
    elif key in ("buffer", "ceiling"):
        if not x > 0.0:
            raise bad("> 0")
    else:  # rates, sizes, times, peak, lamb
        if not (x > 0.0 and math.isfinite(x)):
            raise bad("> 0 and finite")


def parse_arrival(text: str, time: TimeModel = "continuous") -> ArrivalSpec:
    """Parse ``KIND:key=value,...`` into an :class:`ArrivalSpec` for the given time model.

    Raises :class:`SpecError` naming the unknown kind, the unknown/missing key or the
    out-of-range value.
    """
    kind, _, body = text.partition(":")
    kind = kind.strip()
    what = f"arrival {text!r}"
    if kind not in ARRIVAL_KINDS:
        raise SpecError(f"{what}: unknown kind {kind!r} (choose from {', '.join(ARRIVAL_KINDS)})")
    if time not in ARRIVAL_KINDS[kind]:
        raise SpecError(f"{what}: kind {kind!r} is not available in {time} time")
    required, optional = ARRIVAL_KINDS[kind][time]
    pairs = _split_pairs(body, what)
    params: dict[str, float | str] = dict(optional)
    for key, value in pairs.items():
        if key not in required and key not in optional:
            allowed = ", ".join((*required, *optional))
            raise SpecError(f"{what}: unknown key {key!r} for {kind} in {time} time (allowed: {allowed})")
        if key in _STRING_KEYS:
            if value not in _STRING_KEYS[key]:
                raise SpecError(f"{what}: {key}(={value!r}) must be one of {'|'.join(_STRING_KEYS[key])}")
            params[key] = value
        else:
            x = _number(what, key, value)
            _check_range(what, key, x, kind)
            params[key] = x
    missing = [k for k in required if k not in pairs]
    if missing:
        raise SpecError(f"{what}: missing key {missing[0]!r} (required: {', '.join(required)})")
    return ArrivalSpec(kind=kind, params=params, time=time, text=text)


def parse_hop(text: str) -> HopSpec:
    """Parse ``rate=R[,latency=T][,service=size|exp][,prop=..][,buffer=..][,ceiling=..][,loss=..]``."""
    what = f"hop {text!r}"
    pairs = _split_pairs(text, what)
    values: dict[str, float | str] = {}
    for key, value in pairs.items():
        if key not in _HOP_KEYS:
            raise SpecError(f"{what}: unknown key {key!r} (allowed: {', '.join(_HOP_KEYS)})")
        if key in _STRING_KEYS:
            if value not in _STRING_KEYS[key]:
                raise SpecError(f"{what}: {key}(={value!r}) must be one of {'|'.join(_STRING_KEYS[key])}")
            values[key] = value
        else:
            x = _number(what, key, value)
            _check_range(what, key, x, "hop")
            values[key] = x
    if "rate" not in values:
        raise SpecError(f"{what}: missing key 'rate'")
    return HopSpec(text=text, **cast(dict[str, Any], values))  # keys and values checked above


def parse_cross(text: str, n_hops: int, time: TimeModel = "continuous") -> CrossSpec:
    """Parse ``HOP=SPEC`` (HOP counted from 1, at most ``n_hops``)."""
    hop_text, sep, spec = text.partition("=")
    if not sep:
        raise SpecError(f"cross {text!r}: expected HOP=SPEC, e.g. 2=poisson:rate=0.3")
    try:
        hop = int(hop_text.strip())
    except ValueError:
        raise SpecError(f"cross {text!r}: HOP(={hop_text.strip()!r}) is not a whole number") from None
    if not 1 <= hop <= n_hops:
        raise SpecError(f"cross {text!r}: HOP(={hop}) must be between 1 and the number of hops ({n_hops})")
    return CrossSpec(hop=hop, arrival=parse_arrival(spec, time))
