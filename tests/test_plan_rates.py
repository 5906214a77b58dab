"""plan_rates: consistent with compose_path, near cost-optimal, bounded work; and the fast calculus
pieces it rests on (closed-form geometric tails, the safeguarded root finder, fixed-theta bounds).

Speed is measured in benchmarks/bench_plan.py; these tests check correctness only.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

import federation.calculus.plan as plan_mod
from federation.calculus.arrivals import MMOO, CorrelatedMMOO, PoissonArrival, TokenBucket
from federation.calculus.bound import BoundMethod, TandemDetail
from federation.calculus.compose import (
    DomainSlice,
    compose_path,
    packetized,
    path_violation_probability,
    slice_services,
)
from federation.calculus.packet import maxplus_log_at, maxplus_violation
from federation.calculus.plan import plan_rates
from federation.calculus.roots import bracket_root, invert_delay
from federation.calculus.sojourn import own_log_mgf
from federation.calculus.tandem import (
    _log_geometric_tail_recursive,
    log_geometric_tail,
    tandem_delay,
    tandem_log_at,
    tandem_violation,
)
from federation.errors import NoFiniteBound

# the quickstart federation's path (access -> transport -> edge GPU), its prices and guardrails
BROKER_PATH = (
    DomainSlice("access", 1.0, latency=0.002, propagation_delay=0.001, loss_probability=1e-4),
    DomainSlice("transport", 1.0, latency=0.0005, propagation_delay=0.004, loss_probability=1e-5),
    DomainSlice("edge", 1.0, latency=0.003, service="exp"),
)
BROKER_COSTS = (0.002e-6, 0.001e-6, 0.01e-6)
BROKER_CAPS = (200e6, 400e6, 120e6)
LINKS = (
    DomainSlice("a", 1.0, latency=0.002, propagation_delay=0.001),
    DomainSlice("b", 1.0, latency=0.0005, propagation_delay=0.004),
    DomainSlice("c", 1.0, latency=0.001),
)
TWO_GPUS = (
    DomainSlice("a", 1.0, latency=0.002),
    DomainSlice("gpu1", 1.0, latency=0.001, service="exp"),
    DomainSlice("gpu2", 1.0, latency=0.003, service="exp"),
)
TRAFFIC = {
    "token-bucket": TokenBucket(400e3, 20e6, packet_size=100e3),
    "poisson-exp": PoissonArrival(100.0, 100e3, "exp"),
    "poisson-det": PoissonArrival(200.0, 50e3, "det"),
    "mmoo": MMOO(peak=4e6, on=0.2, off=0.8, n=10),
    "correlated-mmoo": CorrelatedMMOO(peak=4e6, on=0.2, off=0.8, n=10),
}


def _with(path, rates):
    return [dataclasses.replace(s, rate=float(r)) for s, r in zip(path, rates)]


def _cost(rates, costs) -> float:
    return float(np.dot(rates, costs))


@pytest.mark.parametrize("kind", list(TRAFFIC))
@pytest.mark.parametrize(
    "path,costs,caps",
    [(BROKER_PATH, BROKER_COSTS, BROKER_CAPS), (LINKS, None, None), (TWO_GPUS, (1.0, 2.0, 1.0), None)],
    ids=["broker", "links", "two-gpus"],
)
@pytest.mark.parametrize("slack", [1.0, 2.0])
def test_plan_meets_the_composed_bound(kind, path, costs, caps, slack):
    """The planned rates give compose_path(...).delay <= delay at epsilon (the broker's contract)."""
    traffic = TRAFFIC[kind]
    delay, eps = 0.04 * slack, 0.0159
    rates = plan_rates(path, traffic, delay=delay, epsilon=eps, costs=costs, max_rates=caps)
    assert len(rates) == len(path)
    assert all(r > traffic.mean_rate for r in rates)
    if caps is not None:
        assert all(r <= c * (1 + 1e-12) for r, c in zip(rates, caps))
    planned = _with(path, rates)
    env = compose_path(planned, traffic, epsilon=eps)
    assert env.delay <= delay
    assert path_violation_probability(planned, traffic, delay=delay) <= eps * (1 + 1e-9)


def _reference_plan(path, traffic, delay, eps, costs, caps, n_dir=41):
    """Slow reference: every direction of a fine grid (deterministic domains share a rate, as
    only their bottleneck enters the bound), the cheapest scale of each by bisection on the
    optimised violation bound at ``delay``; returns the cheapest cost."""
    rho = traffic.mean_rate
    det = [i for i, s in enumerate(path) if s.service != "exp"]
    exp = [i for i, s in enumerate(path) if s.service == "exp"]
    assert len(exp) == 1 and det  # two groups
    best = math.inf
    for u in np.linspace(-3.0, 3.0, n_dir):
        w = np.ones(len(path))
        w[exp[0]] = math.exp(u)
        smax = min((c - rho) / wi for c, wi in zip(caps, w))

        def ok(sc, w=w):
            try:
                return path_violation_probability(_with(path, rho + sc * w), traffic, delay=delay) <= eps
            except NoFiniteBound:
                return False

        if not ok(smax):
            continue
        lo, hi = 0.0, smax
        while hi - lo > 1e-4 * hi:
            mid = 0.5 * (lo + hi)
            lo, hi = (lo, mid) if ok(mid) else (mid, hi)
        best = min(best, _cost(rho + hi * w, costs))
    return best


@pytest.mark.parametrize("kind", ["token-bucket", "poisson-exp", "poisson-det", "mmoo"])
def test_plan_is_near_cost_optimal(kind):
    """Within 3 % of a fine-grid reference optimisation (which ignores the packetizer-consistent
    composed delay and uses the violation bound at the deadline: the same target)."""
    traffic = TRAFFIC[kind]
    delay, eps = 0.04, 0.0159
    rates = plan_rates(BROKER_PATH, traffic, delay=delay, epsilon=eps, costs=BROKER_COSTS, max_rates=BROKER_CAPS)
    ref = _reference_plan(BROKER_PATH, traffic, delay, eps, BROKER_COSTS, BROKER_CAPS, n_dir=25)
    assert math.isfinite(ref)
    assert _cost(rates, BROKER_COSTS) <= ref * 1.03


def test_expensive_domain_gets_less():
    traffic = TRAFFIC["poisson-exp"]
    cheap = plan_rates(BROKER_PATH, traffic, delay=0.05, epsilon=1e-3)
    costly = plan_rates(BROKER_PATH, traffic, delay=0.05, epsilon=1e-3, costs=(1.0, 1.0, 10.0))
    assert costly[2] <= cheap[2]
    assert _cost(costly, (1, 1, 10)) <= _cost(cheap, (1, 1, 10))


def test_deterministic_closed_form_pays_the_packetizer():
    """Token bucket with packets of L bits through H rate-latency hops: r = (sigma + (H-1) L)/(d - sum T)."""
    tb = TokenBucket(400e3, 20e6, packet_size=100e3)
    delay = 0.02
    rates = plan_rates(LINKS, tb, delay=delay, epsilon=1e-3)
    lat = sum(s.latency + s.propagation_delay for s in LINKS)
    assert rates == pytest.approx(((400e3 + 2 * 100e3) / (delay - lat),) * 3, rel=1e-12)
    env = compose_path(_with(LINKS, rates), tb, epsilon=1e-3)
    assert env.method == "deterministic"
    assert env.delay <= delay and env.delay == pytest.approx(delay, rel=1e-12)
    # a generous deadline: the rate must still exceed the token rate (stability)
    loose = plan_rates(LINKS, tb, delay=10.0, epsilon=1e-3)
    assert all(r > tb.mean_rate for r in loose)
    compose_path(_with(LINKS, loose), tb, epsilon=1e-3)


def test_infeasible_and_work_caps_raise_with_reason(monkeypatch):
    traffic = TRAFFIC["mmoo"]
    with pytest.raises(NoFiniteBound, match="access.*edge"):
        plan_rates(BROKER_PATH, traffic, delay=0.04, epsilon=1e-3, max_rates=(9e6, 9e6, 9e6))
    with pytest.raises(NoFiniteBound, match="latencies"):
        plan_rates(BROKER_PATH, traffic, delay=0.005, epsilon=1e-3)
    monkeypatch.setattr(plan_mod, "PLAN_MAX_SURROGATE", 5)
    monkeypatch.setattr(plan_mod, "PLAN_MAX_BOUNDS", 5)
    with pytest.raises(NoFiniteBound, match="evaluations"):
        plan_rates(BROKER_PATH, traffic, delay=0.04, epsilon=0.0159, costs=BROKER_COSTS, max_rates=BROKER_CAPS)


# ----------------------------------------------------------------------------- calculus pieces


def test_geometric_tail_closed_forms_match_the_recursion():
    rng = np.random.default_rng(7)
    for _ in range(2000):
        h = int(rng.integers(1, 3))
        la = -(10 ** rng.uniform(-5, 1.5, h))
        if h == 2 and rng.uniform() < 0.5:  # equal and nearly equal rates (the cancellation case)
            la[1] = la[0] * (1 + float(rng.choice([0.0, 1e-14, 1e-9, 1e-5, 1e-3])))
        j = int(rng.integers(0, 300))
        ref = _log_geometric_tail_recursive(la, j)
        if np.isfinite(ref):
            assert log_geometric_tail(la, j) == pytest.approx(ref, rel=1e-11, abs=1e-11)


def test_bracket_root_is_bracketed_and_quick():
    rtol = 1e-4
    root = 0.37
    cases = {
        "linear": lambda x: 5.0 * (root - x),
        "concave": lambda x: math.log(1 + root) - math.log(1 + x) if x < 10 else -1.0,
        "convex": lambda x: math.exp(-30 * x) - math.exp(-30 * root),
        "step": lambda x: 4.0 if x < root else -50.0,
    }
    for name, g in cases.items():
        calls = []

        def gg(x, g=g, calls=calls):
            calls.append(x)
            return g(x)

        b = bracket_root(gg, 0.0, 10.0, g(0.0), g(10.0), rtol)
        assert g(b) <= 0, name
        assert b <= root * (1 + 2 * rtol) and b >= root, name
        # never much slower than bisection (log2(10/(rtol*root)) ~ 18 steps)
        assert len(calls) <= 40, (name, len(calls))


def test_invert_delay_brackets_the_answer():
    for decay in (0.3, 3.0, 300.0):
        def p(d, decay=decay):
            return min(1.0, 7.0 * math.exp(-decay * d))

        d = invert_delay(p, 1e-3, 0.0, 1e-3, discrete=False)
        exact = math.log(7e3) / decay
        assert p(d) <= 1e-3
        assert exact <= d <= exact * (1 + 2e-4)


@pytest.mark.parametrize("kind", list(TRAFFIC))
def test_tandem_delay_is_the_inverse_of_the_violation_bound(kind):
    traffic = TRAFFIC[kind]
    svc = packetized(traffic, slice_services(_with(BROKER_PATH, (60e6, 80e6, 70e6)), traffic))
    b = tandem_delay(traffic, svc, 1e-3)
    assert tandem_violation(traffic, svc, b.delay).epsilon <= 1e-3 * (1 + 1e-9)
    lat = sum(s.latency for s in svc)
    assert tandem_violation(traffic, svc, lat + (b.delay - lat) * (1 - 1e-3)).epsilon > 1e-3


@pytest.mark.parametrize("kind", ["token-bucket", "poisson-exp", "mmoo"])
def test_fixed_theta_bounds_agree_with_the_optimised_ones(kind):
    traffic = TRAFFIC[kind]
    svc = packetized(traffic, slice_services(_with(BROKER_PATH, (60e6, 80e6, 70e6)), traffic))
    b = tandem_violation(traffic, svc, 0.03)
    assert isinstance(b.detail, TandemDetail)
    assert tandem_log_at(traffic, svc, 0.03, b.theta) == pytest.approx(b.detail.log_epsilon, rel=1e-12)
    for th in (b.theta * 0.5, b.theta * 0.9):  # any theta is a valid, larger bound
        assert tandem_log_at(traffic, svc, 0.03, th) >= b.detail.log_epsilon - 1e-9
    assert tandem_log_at(traffic, svc, 0.001, b.theta) == 0.0  # below the latencies


def test_maxplus_at_theta_agrees():
    traffic = TRAFFIC["poisson-det"]
    svc = slice_services(_with(BROKER_PATH, (30e6, 30e6, 30e6)), traffic)
    b = maxplus_violation(traffic, svc, 0.03)
    assert b is not None and 0 < b.epsilon < 1
    assert maxplus_log_at(traffic, svc, 0.03, b.theta) == pytest.approx(math.log(b.epsilon), rel=1e-9)
    assert maxplus_log_at(TRAFFIC["mmoo"], svc, 0.03, b.theta) is None


@pytest.mark.parametrize("traffic", [MMOO.discrete(0.9, 0.9, 1.0, n=5), PoissonArrival(0.5, 1.0, "exp", time="discrete")])
def test_plan_in_discrete_time(traffic):
    path = (DomainSlice("a", 1.0, latency=1.0), DomainSlice("gpu", 1.0, service="exp"), DomainSlice("c", 1.0, latency=2.0))
    rates = plan_rates(path, traffic, delay=30.0, epsilon=1e-3, costs=(1.0, 3.0, 1.0))
    env = compose_path(_with(path, rates), traffic, epsilon=1e-3, time="discrete")
    assert env.delay <= 30.0
    assert rates[0] == rates[2]  # the deterministic domains share the bottleneck rate


@pytest.mark.parametrize("kind", ["poisson-det", "poisson-exp", "mmoo", "token-bucket"])
def test_plan_fixed_theta_bounds_are_the_calculus_bounds(kind):
    """What plan_rates searches on, at a fixed theta from the group rates, is the calculus' own bound
    at that theta on the services of those rates (tandem on the packetized services; max-plus)."""
    traffic = TRAFFIC[kind]
    delay = 0.04
    planner = plan_mod._Planner(BROKER_PATH, traffic, delay, 0.0159, np.asarray(BROKER_COSTS), np.asarray(BROKER_CAPS))
    assert (BoundMethod.MGF_MAXPLUS in planner.methods) == kind.startswith("poisson")
    # random packet sizes through three store-and-forward hops: no fluid bound holds
    assert (BoundMethod.MGF_TANDEM in planner.methods) == (kind != "poisson-exp")
    v = np.array([60e6, 70e6])  # the access+transport rate, the edge rate
    svc = planner.services_of(v)
    for method in planner.methods:
        th_hi = planner.ranges[method]
        assert th_hi is not None
        finite = 0
        for theta in th_hi * np.array([1e-3, 0.01, 0.1, 0.3, 0.6, 0.9]):
            got = planner.surrogate(method, theta)(v)
            if method == BoundMethod.MGF_TANDEM:
                # + a Poisson packet's own size (federation.calculus.sojourn)
                want = tandem_log_at(traffic, packetized(traffic, svc), delay, theta) + own_log_mgf(traffic, theta)
            else:
                want = maxplus_log_at(traffic, svc, delay, theta)
            assert got == pytest.approx(want, rel=1e-9, abs=1e-12), (method, theta)
            finite += math.isfinite(got)
        assert finite >= 3


def test_plan_calls_the_one_maxplus_and_tandem_bound(monkeypatch):
    calls = {"maxplus": 0, "tandem": 0}

    def counted(name, real):
        def f(*args, **kw):
            calls[name] += 1
            return real(*args, **kw)
        return f

    monkeypatch.setattr(plan_mod, "maxplus_log_bound", counted("maxplus", plan_mod.maxplus_log_bound))
    monkeypatch.setattr(plan_mod, "tandem_log_bound", counted("tandem", plan_mod.tandem_log_bound))
    plan_rates(BROKER_PATH, TRAFFIC["poisson-det"], delay=0.04, epsilon=0.0159, costs=BROKER_COSTS,
               max_rates=BROKER_CAPS)
    assert calls["maxplus"] > 0 and calls["tandem"] > 0
