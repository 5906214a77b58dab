"""The --arrival/--hop/--cross grammar: good specs parse with defaults, bad ones name the key."""

from __future__ import annotations

import math

import pytest

from federation.errors import InputError, SpecError
from federation.specs import ARRIVAL_KINDS, parse_arrival, parse_cross, parse_hop


def test_arrival_defaults_filled_in() -> None:
    spec = parse_arrival("poisson:rate=0.8", "continuous")
    assert spec.kind == "poisson"
    assert spec.num("rate") == 0.8
    assert spec["size"] == "det" and spec.num("mean_size") == 1.0


def test_every_kind_parses_in_its_time_models() -> None:
    examples = {
        "token-bucket": "sigma=2,rho=0.5",
        "poisson": "rate=0.5,size=exp,mean_size=2",
        "exp-increments": "lamb=2",
        "mmoo": {"discrete": "stay_on=0.9,stay_off=0.8,peak=1,n=4", "continuous": "on=1,off=2,peak=1,n=4"},
        "correlated-mmoo": {"discrete": "stay_on=0.9,stay_off=0.8,peak=1,n=4,corr=0.5",
                            "continuous": "on=1,off=2,peak=1,n=4"},
        "pareto-onoff": "on=1,off=2,peak=1,alpha=1.5",
    }
    for kind, times in ARRIVAL_KINDS.items():
        for time in times:
            body = examples[kind]
            body = body[time] if isinstance(body, dict) else body
            assert parse_arrival(f"{kind}:{body}", time).kind == kind


@pytest.mark.parametrize(
    ("text", "time", "needle"),
    [
        ("poisson:rate=-1", "continuous", "rate(=-1) must be > 0"),
        ("poisson:rate=abc", "continuous", "rate(='abc') is not a number"),
        ("poisson:rate=1,foo=2", "continuous", "unknown key 'foo'"),
        ("poisson:rate=1,size=pareto", "continuous", "size(='pareto') must be one of det|exp"),
        ("poisson:mean_size=2", "continuous", "missing key 'rate'"),
        ("mmoo:stay_on=1.2,stay_off=0.5,peak=1", "discrete", "stay_on(=1.2) must be in (0, 1)"),
        ("mmoo:stay_on=0.5,stay_off=0.5,peak=1,n=2.5", "discrete", "n(=2.5) must be a whole number"),
        ("exp-increments:lamb=1", "continuous", "not available in continuous time"),
        ("bogus:x=1", "continuous", "unknown kind 'bogus'"),
        ("poisson:rate", "continuous", "expected key=value"),
        ("poisson:rate=1,rate=2", "continuous", "given twice"),
    ],
)
def test_bad_arrivals_name_the_key(text: str, time: str, needle: str) -> None:
    with pytest.raises(SpecError) as err:
        parse_arrival(text, time)  # type: ignore[arg-type]
    assert needle in str(err.value)
    assert isinstance(err.value, InputError)


def test_hop_parses_with_defaults_and_rejects_bad_keys() -> None:
    hop = parse_hop("rate=2,latency=0.1,service=exp")
    assert (hop.rate, hop.latency, hop.service, hop.prop, hop.loss) == (2.0, 0.1, "exp", 0.0, 0.0)
    assert math.isinf(hop.buffer) and math.isinf(hop.ceiling)
    with pytest.raises(SpecError, match="missing key 'rate'"):
        parse_hop("latency=1")
    with pytest.raises(SpecError, match="unknown key 'speed'"):
        parse_hop("rate=1,speed=2")
    with pytest.raises(SpecError, match=r"loss\(=1\) must be in \[0, 1\)"):
        parse_hop("rate=1,loss=1")


def test_cross_checks_the_hop_number() -> None:
    cross = parse_cross("2=poisson:rate=0.3", n_hops=3)
    assert cross.hop == 2 and cross.arrival.num("rate") == 0.3
    with pytest.raises(SpecError, match=r"HOP\(=4\) must be between 1 and"):
        parse_cross("4=poisson:rate=0.3", n_hops=3)
    with pytest.raises(SpecError, match="expected HOP=SPEC"):
        parse_cross("poisson:rate", n_hops=3)
