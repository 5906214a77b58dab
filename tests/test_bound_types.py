"""The calculus' result types tell the truth: an enum of methods, typed details, a backlog that is not a delay."""

from __future__ import annotations

import dataclasses
import json
import math

import pytest

from federation.calculus.arrivals import ExpIncrements, PoissonArrival, TokenBucket
from federation.calculus.baseline import baseline_tandem_violation
from federation.calculus.bound import (
    BacklogBound,
    Bound,
    BoundMethod,
    DeterministicDetail,
    MartingaleDetail,
    PriorityDetail,
    ProductFormDetail,
    TandemDetail,
)
from federation.calculus.compose import DomainSlice, compose_path, delay_bound, violation_bound
from federation.calculus.fifo_slotted import slotted_delay
from federation.calculus.martingale import martingale_violation
from federation.calculus.packet import maxplus_violation, product_form_violation
from federation.calculus.services import ConstantRate, ExpService, FifoLeftover, Leftover
from federation.calculus.tandem import backlog_violation, tandem_delay, tandem_violation

D = "discrete"
POISSON = PoissonArrival(0.5, 1.0, "det")


def test_every_method_value_is_an_enum_member_with_its_text():
    assert {m.value for m in BoundMethod} == {
        "deterministic", "martingale", "martingale-sp", "martingale-fifo", "mgf-tandem", "mgf-tandem-hoelder",
        "mgf-fifo", "mgf-maxplus", "product-form", "mgf-baseline", "mgf-backlog", "fifo-recursion", "fifo-slotted",
    }
    m = BoundMethod.MGF_TANDEM_HOELDER
    assert m == "mgf-tandem-hoelder" and str(m) == "mgf-tandem-hoelder" and f"[{m}]" == "[mgf-tandem-hoelder]"
    assert json.dumps({"method": m}) == '{"method": "mgf-tandem-hoelder"}'


# (bound, its method, the type of its detail) for every method that gives a delay bound
CASES = [
    (lambda: tandem_violation(TokenBucket(2.0, 0.5, time=D), [ConstantRate(1.0, time=D)], 5.0),
     BoundMethod.DETERMINISTIC, DeterministicDetail),
    (lambda: tandem_delay(TokenBucket(2.0, 0.5, time=D), [ConstantRate(1.0, time=D)], 1e-3),
     BoundMethod.DETERMINISTIC, DeterministicDetail),
    (lambda: violation_bound(PoissonArrival(0.8, 1.0, "exp"), [ConstantRate(1.0)], 10.0),
     BoundMethod.MARTINGALE, MartingaleDetail),
    (lambda: martingale_violation(PoissonArrival(0.3, 1.0), [Leftover(ConstantRate(1.0), PoissonArrival(0.2, 1.0))], 10.0),
     BoundMethod.MARTINGALE_SP, PriorityDetail),
    (lambda: tandem_violation(ExpIncrements(2.0), [ConstantRate(1.0, time=D), ConstantRate(1.2, time=D)], 20.0),
     BoundMethod.MGF_TANDEM, TandemDetail),
    (lambda: tandem_delay(ExpIncrements(2.0), [ConstantRate(1.0, time=D), ConstantRate(1.2, time=D)], 1e-3),
     BoundMethod.MGF_TANDEM, TandemDetail),
    (lambda: tandem_violation(ExpIncrements(2.0), [ConstantRate(1.0, time=D), ConstantRate(1.2, time=D)], 20.0,
                              dependent=True),
     BoundMethod.MGF_TANDEM_HOELDER, TandemDetail),
    (lambda: maxplus_violation(POISSON, [ConstantRate(1.0), ExpService(1.0, 1.0)], 20.0),
     BoundMethod.MGF_MAXPLUS, type(None)),
    (lambda: product_form_violation(POISSON, [ExpService(1.0, 1.0), ExpService(1.2, 1.0)], 20.0),
     BoundMethod.PRODUCT_FORM, ProductFormDetail),
    (lambda: baseline_tandem_violation(ExpIncrements(2.0), [ConstantRate(1.0, time=D), ConstantRate(1.2, time=D)], 20.0),
     BoundMethod.MGF_BASELINE, type(None)),
    (lambda: slotted_delay(ExpIncrements(1 / 0.3), [FifoLeftover(ConstantRate(1.0, time=D),
                                                                 PoissonArrival(0.3, 1.0, "exp", time=D))] * 2, 1e-3),
     BoundMethod.FIFO_SLOTTED, type(None)),
]


@pytest.mark.parametrize("make,method,detail", CASES, ids=[f"{c[1].value}-{i}" for i, c in enumerate(CASES)])
def test_bounds_carry_an_enum_method_and_a_typed_frozen_detail(make, method, detail):
    b = make()
    assert isinstance(b, Bound)
    assert type(b.method) is BoundMethod and b.method is method
    assert type(b.detail) is detail
    if b.detail is not None:
        assert dataclasses.is_dataclass(b.detail)
        field = dataclasses.fields(b.detail)[0].name
        with pytest.raises(dataclasses.FrozenInstanceError):
            setattr(b.detail, field, 0.0)


def test_tandem_detail_holds_the_unclipped_log_bound():
    b = tandem_violation(ExpIncrements(2.0), [ConstantRate(1.0, time=D), ConstantRate(1.2, time=D)], 20.0)
    assert isinstance(b.detail, TandemDetail)
    assert math.exp(b.detail.log_epsilon) == pytest.approx(b.epsilon, rel=1e-12)
    below = tandem_violation(ExpIncrements(2.0), [ConstantRate(1.0, latency=5, time=D)], 3.0)
    assert below.epsilon == 1.0 and isinstance(below.detail, TandemDetail)  # below the latencies: the bound 1
    assert math.isnan(below.detail.tau) and below.detail.log_epsilon == 0.0


def test_product_form_detail_names_the_sojourn_rates():
    b = product_form_violation(POISSON, [ExpService(1.0, 1.0), ExpService(1.2, 1.0)], 20.0)
    assert isinstance(b, Bound) and isinstance(b.detail, ProductFormDetail)
    assert b.detail.sojourn_rates == pytest.approx((0.5, 0.7)) and b.detail.hops == 2


def test_backlog_bound_is_not_a_delay():
    """The backlog level is ``backlog`` (bits) of a BacklogBound; no ``delay`` field carries it."""
    b = backlog_violation(ExpIncrements(1 / 0.8), ConstantRate(1.0, time=D), 15.0)
    assert isinstance(b, BacklogBound) and not isinstance(b, Bound)
    assert b.backlog == 15.0 and not hasattr(b, "delay")
    assert b.method is BoundMethod.MGF_BACKLOG and 0.0 < b.epsilon < 1.0 and b.theta > 0
    assert isinstance(b.detail, TandemDetail)
    assert math.exp(b.detail.log_epsilon) == pytest.approx(b.epsilon, rel=1e-12)


def test_envelope_and_delay_bound_methods_are_enum_members():
    flow = PoissonArrival(150.0, 8000.0, "det")
    env = compose_path([DomainSlice("a", 2e6, latency=1e-3), DomainSlice("gpu", 1.5e6, service="exp")], flow,
                       epsilon=1e-3)
    assert type(env.method) is BoundMethod
    assert type(delay_bound(flow, [ConstantRate(2e6), ExpService(1.5e6, 8000.0)], 1e-3).method) is BoundMethod
