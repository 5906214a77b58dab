"""The ports of SciPy's ``brentq`` and bounded ``minimize_scalar`` are SciPy's, to the last bit.

:mod:`federation.calculus.roots` ports them so that ``trefed bound`` need not import
``scipy.optimize`` (start-up time). SciPy stays the reference here: on a broad set of functions,
brackets, tolerances and iteration limits, the port must evaluate the function at the very same
points (same values, same argument types) and return the same answer, the same errors included.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import optimize

from federation.calculus.roots import BRENTQ_RTOL, brentq, minimize_scalar_bounded


def _same(x, y) -> bool:
    """Equal to the last bit (NaN equal to NaN, 0.0 distinct from -0.0)."""
    return repr(float(x)) == repr(float(y))


class _Recorder:
    """``f`` that records each point it is called at (its value and type)."""

    def __init__(self, f):
        self.f, self.calls = f, []

    def __call__(self, x):
        self.calls.append((repr(float(x)), type(x).__name__))
        return self.f(x)


def _outcome(solver, *args, **kwargs):
    try:
        return "ok", solver(*args, **kwargs)
    except (ValueError, RuntimeError) as exc:
        return type(exc).__name__, str(exc)


# ---- brentq ---------------------------------------------------------------------------------------

#: (name, f, a, b): sign changes of every kind (simple roots, multiple roots, steep, flat, discontinuous,
#: tiny values whose products underflow, roots at a bracket end).
ROOT_CASES = [
    ("linear", lambda x: 2.0 * x - 1.0, 0.0, 3.0),
    ("quadratic", lambda x: x * x - 2.0, 0.0, 2.0),
    ("cubic", lambda x: x**3 - 2.0 * x - 5.0, 2.0, 3.0),
    ("triple root", lambda x: (x - 1.0) ** 3, 0.0, 3.0),
    ("exp", lambda x: math.exp(x) - 10.0, -5.0, 5.0),
    ("log", lambda x: math.log(x) + 0.5, 1e-6, 10.0),
    ("cos", lambda x: math.cos(x) - x, 0.0, 1.0),
    ("tanh steep", lambda x: math.tanh(50.0 * (x - 0.3)), -1.0, 1.0),
    ("flat then steep", lambda x: x**9 - 1e-3, 0.0, 4.0),
    ("step", lambda x: -1.0 if x < 0.7 else 1.0, 0.0, 1.0),
    ("tiny", lambda x: 1e-200 * (x - 0.3), 0.0, 1.0),
    ("huge", lambda x: 1e200 * (x - 0.3), 0.0, 1.0),
    ("root at a", lambda x: x, 0.0, 1.0),
    ("root at b", lambda x: x - 1.0, 0.0, 1.0),
    ("reversed bracket", lambda x: x * x - 2.0, 2.0, 0.0),
    ("wide", lambda x: x - 1e-9, -1e6, 1e9),
    ("kappa - theta c", lambda t: 0.8 * (1.0 / (1.0 - t) - 1.0) - t, 1e-9, 0.5),  # M/M/1's theta = 0.2
    ("convex root", lambda t: math.expm1(2.0 * t) * 0.4 - t, 1e-6, 3.0),
]
TOLERANCES = [
    {},
    {"xtol": 1e-14, "rtol": 1e-12, "maxiter": 200},
    {"xtol": 1e-3, "rtol": 1e-6},
    {"xtol": 1e-300, "rtol": BRENTQ_RTOL},
    {"maxiter": 3},  # fails to converge: the same RuntimeError
    {"maxiter": 0},
]


@pytest.mark.parametrize("tol", TOLERANCES, ids=lambda t: ",".join(f"{k}={v}" for k, v in t.items()) or "default")
@pytest.mark.parametrize("name,f,a,b", ROOT_CASES, ids=[c[0] for c in ROOT_CASES])
def test_brentq_is_scipys(name, f, a, b, tol):
    ours, theirs = _Recorder(f), _Recorder(f)
    got, want = _outcome(brentq, ours, a, b, **tol), _outcome(optimize.brentq, theirs, a, b, **tol)
    assert got[0] == want[0], (got, want)
    if got[0] == "ok":
        assert _same(got[1], want[1]) and type(got[1]) is type(want[1]), (got, want)
    else:
        assert got[1] == want[1]
    assert ours.calls == theirs.calls


@pytest.mark.parametrize("seed", range(40))
def test_brentq_is_scipys_on_random_polynomials(seed):
    rng = np.random.default_rng(seed)
    coef = rng.normal(size=int(rng.integers(2, 7)))
    a, b = sorted(rng.uniform(-3.0, 3.0, size=2))
    f = np.polynomial.Polynomial(coef)
    if f(a) * f(b) > 0:  # move b to a sign change, if there is one on a grid
        grid = np.linspace(a, 6.0, 200)
        sign = np.sign(f(grid))
        change = np.nonzero(sign != sign[0])[0]
        b = float(grid[change[0]]) if len(change) else b
    g = lambda x: float(f(x))  # noqa: E731
    for tol in TOLERANCES[:4]:
        ours, theirs = _Recorder(g), _Recorder(g)
        got, want = _outcome(brentq, ours, a, b, **tol), _outcome(optimize.brentq, theirs, a, b, **tol)
        assert got[0] == want[0] and (got[1] == want[1] if got[0] != "ok" else _same(got[1], want[1]))
        assert ours.calls == theirs.calls


@pytest.mark.parametrize("f,a,b,kw", [
    (lambda x: x + 1.0, 0.0, 1.0, {}),  # same signs
    (lambda x: math.nan if x > 0.5 else x - 0.7, 0.0, 1.0, {}),  # a NaN on the way
    (lambda x: x, -1.0, 1.0, {"xtol": 0.0}),
    (lambda x: x, -1.0, 1.0, {"rtol": 1e-17}),
    (lambda x: x, -1.0, 1.0, {"maxiter": -1}),
])
def test_brentq_refuses_what_scipy_refuses(f, a, b, kw):
    got, want = _outcome(brentq, f, a, b, **kw), _outcome(optimize.brentq, f, a, b, **kw)
    assert got[0] == want[0] != "ok"
    assert got[1] == want[1]


# ---- minimize_scalar(method="bounded") ------------------------------------------------------------

#: (name, f, bounds): smooth minima inside, at either end, flat, kinked, discontinuous, inf outside a
#: region (as the calculus' log bounds are beyond their theta_max), NaN-valued.
MIN_CASES = [
    ("quadratic", lambda x: (x - 0.3) ** 2, (-1.0, 2.0)),
    ("quartic", lambda x: (x - 1.0) ** 4 + 0.1 * x, (-3.0, 3.0)),
    ("abs kink", lambda x: abs(x - 0.123456), (-1.0, 1.0)),
    ("sin", lambda x: math.sin(x), (0.0, 2.0 * math.pi)),
    ("increasing", lambda x: math.exp(x), (-2.0, 5.0)),
    ("decreasing", lambda x: -x, (0.0, 1.0)),
    ("constant", lambda x: 1.0, (0.0, 1.0)),
    ("step", lambda x: 0.0 if 0.2 < x < 0.25 else 1.0, (0.0, 1.0)),
    ("point interval", lambda x: x * x, (0.5, 0.5)),
    ("inf beyond", lambda x: math.inf if x > 0.8 else (x - 0.7) ** 2 - x, (0.0, 1.0)),
    ("huge", lambda x: 1e150 if x > 0.2 else x, (-5.0, 5.0)),
    ("nan region", lambda x: math.nan if x > 0.9 else (x - 0.95) ** 2, (0.0, 1.0)),
    ("log bound", lambda x: 3.0 * math.exp(x) - 20.0 * math.exp(x) + 1.0 / (1.0 - math.exp(x)) if x < 0 else math.inf,
     (math.log(0.999) - 20.0, math.log(0.999))),
    ("numpy scalars", lambda x: np.float64(x) ** 2 - np.sin(x), (-2.0, 2.0)),
    ("wide", lambda x: (x - 1234.5) ** 2, (-1e4, 1e4)),
]
MIN_OPTIONS = [{}, {"xatol": 1e-2}, {"xatol": 1e-6}, {"xatol": 1e-12}, {"xatol": 1e-6, "maxiter": 4}]


def _scipy_min(f, bounds, **opts):
    res = optimize.minimize_scalar(f, bounds=bounds, method="bounded", options=opts)
    return float(res.x), float(res.fun), int(res.nfev), int(res.status)


@pytest.mark.parametrize("opts", MIN_OPTIONS, ids=lambda o: ",".join(f"{k}={v}" for k, v in o.items()) or "default")
@pytest.mark.parametrize("name,f,bounds", MIN_CASES, ids=[c[0] for c in MIN_CASES])
def test_minimize_scalar_bounded_is_scipys(name, f, bounds, opts):
    ours, theirs = _Recorder(f), _Recorder(f)
    with np.errstate(all="ignore"):
        got = minimize_scalar_bounded(ours, bounds, **opts)
        want = _scipy_min(theirs, bounds, **opts)
    assert _same(got.x, want[0]) and _same(got.fun, want[1]), (got, want)
    assert (got.nfev, got.status) == want[2:]
    assert ours.calls == theirs.calls  # the same points, and the same argument types (numpy float64)


@pytest.mark.parametrize("seed", range(40))
def test_minimize_scalar_bounded_is_scipys_on_random_functions(seed):
    rng = np.random.default_rng(1000 + seed)
    coef = rng.normal(size=int(rng.integers(3, 8)))
    freq, amp = rng.uniform(0.5, 6.0), rng.uniform(0.0, 1.0)
    lo = float(rng.uniform(-3.0, 1.0))
    hi = lo + float(rng.choice([1e-6, 0.1, 1.0, 4.0]))
    poly = np.polynomial.Polynomial(coef)

    def f(x):
        return float(poly(x)) + amp * math.sin(freq * x)

    for opts in MIN_OPTIONS:
        ours, theirs = _Recorder(f), _Recorder(f)
        got = minimize_scalar_bounded(ours, (lo, hi), **opts)
        want = _scipy_min(theirs, (lo, hi), **opts)
        assert _same(got.x, want[0]) and _same(got.fun, want[1]) and (got.nfev, got.status) == want[2:]
        assert ours.calls == theirs.calls


@pytest.mark.parametrize("bounds", [(1.0, 0.0), (0.0, math.inf), (math.nan, 1.0), (0.0,)])
def test_minimize_scalar_bounded_refuses_what_scipy_refuses(bounds):
    f = lambda x: x * x  # noqa: E731
    with pytest.raises(ValueError) as ours:
        minimize_scalar_bounded(f, bounds)  # type: ignore[arg-type]
    with pytest.raises(ValueError) as theirs:
        optimize.minimize_scalar(f, bounds=bounds, method="bounded")
    assert str(ours.value) == str(theirs.value)
