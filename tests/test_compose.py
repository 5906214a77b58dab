"""TRE composition: the contract the broker codes against, checked against the calculus and simulation."""

from __future__ import annotations

import dataclasses
import importlib
import json
import math
import pkgutil
import subprocess
import sys

import numpy as np
import pytest

import federation
import federation.calculus.compose as compose_mod
import federation.calculus.plan as plan_mod
from federation.calculus.arrivals import MMOO, PoissonArrival, TokenBucket, arrival_from_spec
from federation.calculus.compose import (
    DomainBudget,
    DomainSlice,
    EndToEndEnvelope,
    compose_path,
    path_violation_probability,
)
from federation.calculus.plan import plan_rates
from federation.calculus.reference import exceedance, packet_tandem_departures
from federation.errors import InputError, NoFiniteBound
from federation.specs import parse_arrival

PATH = (
    DomainSlice("access", 2e6, latency=1e-3, propagation_delay=2e-3),
    DomainSlice("transport", 5e6, propagation_delay=5e-3, loss_probability=1e-4),
    DomainSlice("edge-gpu", 1.5e6, latency=2e-3, service="exp", loss_probability=2e-4, error_probability=0.02),
)


def _check_envelope(env: EndToEndEnvelope, eps: float, path=PATH) -> None:
    assert env.epsilon_delay == eps
    assert len(env.per_domain) == len(path)
    assert [b.domain_id for b in env.per_domain] == [s.domain_id for s in path]
    assert all(isinstance(b, DomainBudget) for b in env.per_domain)
    assert sum(b.delay for b in env.per_domain) <= env.delay * (1 + 1e-9)
    assert sum(b.epsilon for b in env.per_domain) <= env.epsilon_delay * (1 + 1e-9)
    lat = sum(s.latency + s.propagation_delay for s in path)
    assert env.delay >= lat
    assert env.loss_probability == pytest.approx(1 - math.prod(1 - s.loss_probability for s in path))
    assert env.error_probability == pytest.approx(sum(s.error_probability for s in path))
    assert env.epsilon_total == pytest.approx(env.epsilon_delay + env.loss_probability + env.error_probability)


def test_contract_names_and_frozen():
    for name in ("DomainSlice", "DomainBudget", "EndToEndEnvelope", "compose_path", "path_violation_probability"):
        assert name in compose_mod.__all__
    assert "plan_rates" in plan_mod.__all__
    s = DomainSlice("a", 1.0)
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.rate = 2.0  # type: ignore[misc]
    assert [f.name for f in dataclasses.fields(EndToEndEnvelope)] == [
        "delay", "epsilon_delay", "theta", "method", "per_domain", "loss_probability", "error_probability",
        "epsilon_total",
    ]
    # the broker's constructors
    TokenBucket(sigma=1e4, rho=1e6)
    PoissonArrival(rate=100.0, mean_size=8000.0, size="exp")
    MMOO(2e6, 0.1, 0.3, n=4)
    arrival_from_spec(parse_arrival("poisson:rate=100,mean_size=8000"))


def test_deterministic_path():
    tb = TokenBucket(1.2e5, 1e6)
    path = PATH[:2]
    env = compose_path(path, tb, epsilon=1e-3)
    assert env.method == "deterministic" and math.isnan(env.theta)
    assert env.delay == pytest.approx(1.2e5 / 2e6 + 1e-3 + 2e-3 + 5e-3)
    _check_envelope(env, 1e-3, path)
    assert path_violation_probability(path, tb, delay=env.delay) == 0.0
    assert path_violation_probability(path, tb, delay=env.delay * 0.9) == 1.0


def test_stochastic_path_is_consistent_and_valid():
    flow = PoissonArrival(150.0, 8000.0, "det")  # 1.2 Mb/s of 1 kB packets
    env = compose_path(PATH, flow, epsilon=1e-3)
    _check_envelope(env, 1e-3)
    assert env.method in ("mgf-tandem", "martingale", "mgf-maxplus")
    assert np.isfinite(env.theta)
    p = path_violation_probability(PATH, flow, delay=env.delay)
    assert p <= 1e-3 * (1 + 1e-3)
    assert path_violation_probability(PATH, flow, delay=env.delay * 0.8) > 1e-3
    # tighter epsilon, larger delay
    assert compose_path(PATH, flow, epsilon=1e-5).delay > env.delay


def test_compute_domain_only_matches_mm1_and_simulation():
    lam, size, rate = 100.0, 8000.0, 1.6e6  # mu = 200 /s
    path = [DomainSlice("gpu", rate, service="exp", propagation_delay=1e-3)]
    flow = PoissonArrival(lam, size, "det")
    env = compose_path(path, flow, epsilon=1e-3)
    mu = rate / size
    assert env.method == "martingale"
    # a packet's M/M/1 sojourn, its own service included: P(S > d) = exp(-(mu - lambda) d)
    assert env.delay == pytest.approx(1e-3 + math.log(1 / 1e-3) / (mu - lam), rel=1e-6)
    rng = np.random.default_rng(4)
    n = 100_000
    at = np.cumsum(rng.exponential(1 / lam, n))
    fin = packet_tandem_departures(at, [rng.exponential(1 / mu, n)]) + 1e-3
    for d in (0.01, 0.03):
        est = exceedance(fin - at, d)
        assert abs(est.p - math.exp(-(mu - lam) * (d - 1e-3))) < 4 * est.stderr + 1e-3
        assert path_violation_probability(path, flow, delay=d) >= est.lower_limit(0.99)


def test_no_finite_bound_names_the_domain():
    with pytest.raises(NoFiniteBound, match="edge-gpu"):
        compose_path(PATH, TokenBucket(1e4, 1.6e6), epsilon=1e-3)
    with pytest.raises(NoFiniteBound, match="access"):
        path_violation_probability(PATH, PoissonArrival(300.0, 8000.0), delay=1.0)


def test_bad_input():
    with pytest.raises(InputError):
        compose_path(PATH, TokenBucket(1.0, 1.0), epsilon=0.0)
    with pytest.raises(InputError):
        compose_path([], TokenBucket(1.0, 1.0), epsilon=1e-3)
    with pytest.raises(InputError, match="discrete"):
        compose_path(PATH, TokenBucket(1.0, 1.0), epsilon=1e-3, time="discrete")


def test_plan_rates_deterministic_closed_form():
    tb = TokenBucket(1e5, 1e6)
    path = PATH[:2]
    rates = plan_rates(path, tb, delay=0.06, epsilon=1e-3)
    lat = 1e-3 + 2e-3 + 5e-3
    assert rates == pytest.approx((1e5 / (0.06 - lat),) * 2)
    env = compose_path([dataclasses.replace(s, rate=r) for s, r in zip(path, rates)], tb, epsilon=1e-3)
    assert env.delay == pytest.approx(0.06)
    with pytest.raises(NoFiniteBound, match="access"):
        plan_rates(path, tb, delay=0.06, epsilon=1e-3, max_rates=[1.5e6, 1e7])


def test_plan_rates_stochastic_meets_target_and_follows_costs():
    flow = PoissonArrival(150.0, 8000.0, "det")
    target = 0.05
    cheap = plan_rates(PATH, flow, delay=target, epsilon=1e-3)
    planned = [dataclasses.replace(s, rate=r) for s, r in zip(PATH, cheap)]
    assert path_violation_probability(planned, flow, delay=target) <= 1e-3 * (1 + 1e-6)
    assert all(r > flow.mean_rate for r in cheap)
    # an expensive compute domain gets a smaller share than with equal costs
    costly = plan_rates(PATH, flow, delay=target, epsilon=1e-3, costs=[1.0, 1.0, 10.0])
    planned2 = [dataclasses.replace(s, rate=r) for s, r in zip(PATH, costly)]
    assert path_violation_probability(planned2, flow, delay=target) <= 1e-3 * (1 + 1e-6)
    assert costly[2] <= cheap[2] * (1 + 1e-6)
    assert 1 * costly[0] + costly[1] + 10 * costly[2] <= cheap[0] + cheap[1] + 10 * cheap[2] + 1e-6
    with pytest.raises(NoFiniteBound):
        plan_rates(PATH, flow, delay=target, epsilon=1e-3, max_rates=[1.3e6, 1.3e6, 1.3e6])


#: Every module and package of the pure core.
CORE_MODULES = ["federation"] + sorted(
    m.name for m in pkgutil.walk_packages(federation.__path__, prefix="federation.") if not m.name.endswith("__main__")
)
#: What the core must never load, even through a third-party library.
NEVER_LOADED = ("ray", "grpc", "grpc_health", "grpc_reflection", "agents")
#: The core never imports argparse, but scipy does at import time (scipy.optimize, .signal,
#: .linalg, .stats -> numpy.testing -> unittest -> unittest.main -> argparse; and numpy.f2py),
#: as does matplotlib (via unittest): these, and only these, may bring it in.
ARGPARSE_IMPORTERS_ALLOWED = {"unittest.main", "numpy.f2py.f2py2e"}

# Imports the module in a fresh interpreter and reports which forbidden top-level packages ended
# up in sys.modules and which modules executed an ``import`` of each (the ``__name__`` of the
# importing module, seen by a wrapper of builtins.__import__).
_PROBE = """
import builtins, importlib, json, sys
WATCHED = ("ray", "grpc", "grpc_health", "grpc_reflection", "agents", "argparse")
importers = {}
real = builtins.__import__
def spy(name, globals=None, locals=None, fromlist=(), level=0):
    top = name.partition(".")[0]
    if level == 0 and top in WATCHED:
        importers.setdefault(top, set()).add((globals or {}).get("__name__", "?"))
    return real(name, globals, locals, fromlist, level)
builtins.__import__ = spy
importlib.import_module(sys.argv[1])
builtins.__import__ = real
print(json.dumps({"loaded": sorted(t for t in WATCHED if t in sys.modules),
                  "importers": {k: sorted(v) for k, v in importers.items()}}))
"""


def _probe(module: str) -> tuple[set[str], dict[str, list[str]]]:
    """(forbidden packages in sys.modules after importing ``module`` alone, their importers)."""
    res = subprocess.run([sys.executable, "-c", _PROBE, module], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout.strip().splitlines()[-1])
    return set(out["loaded"]), out["importers"]


@pytest.mark.parametrize("module", CORE_MODULES)
def test_core_module_is_pure(module):
    """Imported alone in a subprocess, no core module loads Ray, gRPC or agents, nor imports argparse."""
    loaded, importers = _probe(module)
    assert not loaded & set(NEVER_LOADED), (loaded, importers)
    if "argparse" in loaded:
        assert importers.get("argparse"), "argparse was loaded by no import statement seen"
        assert set(importers["argparse"]) <= ARGPARSE_IMPORTERS_ALLOWED, importers["argparse"]


def test_purity_probe_sees_an_impure_import(tmp_path):
    """The probe itself: a module that imports argparse (directly) and agents is reported."""
    (tmp_path / "impure_probe_mod.py").write_text("import argparse\nimport agents.errors\n")
    res = subprocess.run([sys.executable, "-c", f"import sys; sys.path.insert(0, {str(tmp_path)!r})\n" + _PROBE,
                          "impure_probe_mod"], capture_output=True, text=True, timeout=120)
    out = json.loads(res.stdout.strip().splitlines()[-1])
    assert {"argparse", "agents"} <= set(out["loaded"])
    assert "impure_probe_mod" in out["importers"]["argparse"]


@pytest.mark.parametrize(
    "module",
    [*(m.name for m in pkgutil.walk_packages(federation.__path__, prefix="federation.") if not m.ispkg),
     "agents.cli.bound"],
)
def test_public_names_exist(module):
    mod = importlib.import_module(module)
    assert mod.__all__
    for name in mod.__all__:
        assert hasattr(mod, name), name


def test_cli_bound_loads_no_ray_or_grpc():
    loaded, importers = _probe("agents.cli.bound")
    assert not loaded & {"ray", "grpc", "grpc_health", "grpc_reflection"}, (loaded, importers)


def test_backed_split_budgets_are_met_by_honest_domains_in_simulation():
    """Poisson requests through two links of one rate and a compute domain: every domain's budget
    of backed_split is met by that domain's own sojourn in a packet simulation (the first fed the
    declared traffic, the others what the domains before them let out), and each is backed by the
    domain's own bound."""
    from federation.calculus.compose import backed_split

    lam, size, work = 800.0, 10e3, 100e3
    path = [DomainSlice("access", 16.4e6, 0.002, 0.001), DomainSlice("transport", 16.4e6, 0.0005, 0.004),
            DomainSlice("edge", 115.5e6, 0.007, service="exp", work_bits=work)]
    flow = PoissonArrival(lam, size, "det")
    per = backed_split(path, flow, 0.05, 0.009)
    assert per is not None
    assert sum(p.delay for p in per) <= 0.05 * (1 + 1e-12) and sum(p.epsilon for p in per) <= 0.009 * (1 + 1e-12)
    for s, p in zip(path, per):
        assert path_violation_probability([s], flow, delay=p.delay) <= p.epsilon * (1 + 1e-9)
    rng = np.random.default_rng(12)
    n = 400_000
    t = np.cumsum(rng.exponential(1 / lam, n))
    for s, p in zip(path, per):
        if s.service == "exp":
            service = rng.exponential(work / s.rate, n)
        else:
            service = np.full(n, size / s.rate)
        out = packet_tandem_departures(t, [service])
        own = out - t + s.latency + s.propagation_delay  # the domain's own sojourn
        est = exceedance(own, p.delay)
        assert est.lower_limit(0.99) <= p.epsilon, (s.domain_id, est.p, p)
        t = out + s.latency + s.propagation_delay  # what the next domain is fed
    # out of room: the tenant's deadline below the sum of the domains' own delays (then compose_path
    # splits its composed bound instead)
    assert backed_split(path, flow, 0.03, 0.009) is None
    env = compose_path(path, flow, epsilon=0.009, share_delay=0.06)
    assert env.per_domain == backed_split(path, flow, 0.06, 0.009)
    assert compose_path(path, flow, epsilon=0.009).per_domain != env.per_domain
