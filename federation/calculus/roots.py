"""Root finding, bounded minimisation, and bound inversion (the delay at which a tail bound reaches ``epsilon``).

:func:`bracket_root` is a safeguarded false position (Illinois) for non-increasing functions,
near-exact in a few steps on the near-linear log bounds of the calculus; :func:`invert_delay`
finds the smallest delay with ``P(D > d) <= epsilon`` for any non-increasing bound, in
continuous time (doubling, then :func:`bracket_root` on the log) or discrete time (integer
bisection).

:func:`brentq` and :func:`minimize_scalar_bounded` are faithful ports of SciPy's
``scipy.optimize.brentq`` and ``scipy.optimize.minimize_scalar(method="bounded")``: the same
floating-point operations in the same order, so the same answers to the last bit
(``tests/test_roots.py`` checks them against SciPy's own on a broad set of functions, brackets
and tolerances). They exist for start-up time only: ``import scipy.optimize`` takes 0.45-0.48 s
on the project's 2-core machine (``python -X importtime``, median of 5, after numpy), about as
long as the whole ``trefed bound`` command may take (issue 8: < 0.5 s): the README's first
example takes 0.72 s with it imported and 0.27 s without (median of 9, load 0.8), and the
single-hop, tandem, martingale and max-plus bounds need nothing else from it. The planner
(:mod:`.plan`: Nelder-Mead) and the numeric risk split (:mod:`.budget`: SLSQP) still use SciPy.

Sources (SciPy 1.17, BSD-3-Clause, "Copyright (c) 2001-2002 Enthought, Inc. 2003, SciPy
Developers."): ``scipy/optimize/Zeros/brentq.c`` (Charles Harris; the version that compares the
signs of ``f`` with ``signbit`` rather than their product, so that tiny values whose product
underflows still bracket) with its wrapper ``_zerosmodule.c`` and ``_zeros_py.brentq`` (argument
checks, NaN check); ``scipy/optimize/_optimize.py::_minimize_scalar_bounded`` (Brent's
golden-section and parabolic minimiser, after Forsythe, Malcolm and Moler's ``fmin``), which
computes with NumPy scalars, as this port does, so that the objective sees the same argument types.

References
----------
R. P. Brent, *Algorithms for Minimization without Derivatives*, Prentice-Hall 1973, ch. 4 and 5;
G. E. Forsythe, M. A. Malcolm, C. B. Moler, *Computer Methods for Mathematical Computations*,
Prentice-Hall 1977 (``fmin``).
"""

from __future__ import annotations

import math
import operator
import sys
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from federation.errors import NoFiniteBound

__all__ = [
    "BRENTQ_RTOL",
    "THETA_FRACTIONS",
    "ScalarMinimum",
    "bracket_root",
    "brentq",
    "invert_delay",
    "minimize_scalar_bounded",
    "exponential_tail_min",
]

#: SciPy's smallest (and default) relative tolerance of :func:`brentq`: 4 machine epsilons.
BRENTQ_RTOL = 4 * sys.float_info.epsilon

#: A fixed theta grid, as fractions of a model's largest theta (the busy-period bounds search it,
#: so that a delay and its violation come from the same thetas on every call).
THETA_FRACTIONS = (*np.linspace(0.02, 0.98, 49).tolist(), 0.99, 0.995, 0.999)


def exponential_tail_min(thetas: np.ndarray, log_coefficients: np.ndarray, x: float) -> tuple[float, float] | None:
    """``(epsilon, theta)`` minimising ``B(theta) e^{-theta x}`` over the grid (``log B`` given), or ``None``
    when no grid point is finite; epsilon is capped at 1 and never below the smallest normal float (a
    bound, never 0)."""
    vals = log_coefficients - thetas * x
    i = int(np.argmin(vals))
    if not math.isfinite(vals[i]):
        return None
    return max(math.exp(min(0.0, float(vals[i]))), sys.float_info.min), float(thetas[i])


def bracket_root(
    g: Callable[[float], float], a: float, b: float, ga: float, gb: float, rtol: float, max_evals: int = 200
) -> float:
    """Smallest ``x`` in ``(a, b]`` with ``g(x) <= 0`` to ``rtol`` relative, for non-increasing ``g``.

    ``ga = g(a) > 0 >= gb = g(b)`` (``ga`` may be ``inf``). Safeguarded false position with the
    Illinois modification (an end kept twice has its value halved, so concave or convex ``g``
    still converges from both sides): an interpolated step lands at least ``rtol*b/2`` inside the
    bracket (so a good estimate closes the bracket at the next step); a bisection (geometric when
    the bracket spans more than a factor 4) is taken when a value is not finite or the bracket
    did not halve over the last three steps. Returns the right end (where ``g <= 0`` was seen).
    """
    widths = [math.inf, math.inf, math.inf]
    fa, fb = ga, gb  # values used for interpolation (Illinois-scaled)
    last = ""
    for _ in range(max_evals):
        if b - a <= rtol * b:
            break
        interp = math.isfinite(fa) and math.isfinite(fb) and fa > fb and (b - a) <= 0.5 * widths[-3]
        if interp:
            m = a + (b - a) * fa / (fa - fb)
            h = 0.5 * rtol * b
            m = min(max(m, a + h), b - h)
            if not a < m < b:
                interp = False
        if not interp:
            m = math.sqrt(a * b) if a > 0 and b > 4.0 * a else 0.5 * (a + b)
        widths.append(b - a)
        gm = g(m)
        if gm <= 0:
            b, fb = m, gm
            if last == "b":
                fa *= 0.5
            last = "b"
        else:
            a, fa = m, gm
            if last == "a":
                fb *= 0.5
            last = "a"
    return b


def invert_delay(
    prob_of_delay: Callable[[float], float], epsilon: float, lo: float, hi: float, *, discrete: bool, rtol: float = 1e-4
) -> float:
    """Smallest delay ``d`` in ``[lo, inf)`` with ``prob_of_delay(d) <= epsilon`` (to ``rtol``).

    Doubling to a bracket, then :func:`bracket_root` on ``log prob_of_delay`` (continuous time)
    or an integer bisection (discrete time).

    ``prob_of_delay`` must be non-increasing. In discrete time the answer is an integer offset
    from ``lo`` (the latency).
    """
    seen: dict[float, float] = {}

    def prob(x: float) -> float:  # memoised prob_of_delay
        if x not in seen:
            seen[x] = prob_of_delay(x)
        return seen[x]

    if prob(lo) <= epsilon:
        return lo
    step = max(hi - lo, 1e-12)
    a = 0.0
    while prob(lo + step) > epsilon:
        a = step
        step *= 2.0
        if step > 1e15:
            raise NoFiniteBound(f"no finite delay reaches epsilon={epsilon:g}")
    b = step
    if discrete:
        a, b = math.floor(a), math.ceil(b)
        while b - a > 1:
            m = (a + b) // 2
            if prob(lo + m) <= epsilon:
                b = m
            else:
                a = m
        return lo + b
    # Safeguarded false position on log p (near-linear in the delay for exponential tails).
    log_eps = math.log(epsilon)

    def g(x: float) -> float:
        p = prob(lo + x)
        return (math.log(p) if p > 0 else -math.inf) - log_eps

    b = bracket_root(g, a, b, g(a), g(b), rtol)
    return lo + b



def _div(n: float, d: float) -> float:
    """``n / d`` as C computes it (IEEE 754: a zero divisor gives an infinity or NaN, not an exception)."""
    if d != 0.0:
        return n / d
    if n == 0.0 or math.isnan(n):
        return math.nan
    return math.copysign(math.inf, n) * math.copysign(1.0, d)


def brentq(
    f: Callable[[float], float],
    a: float,
    b: float,
    *,
    xtol: float = 2e-12,
    rtol: float = BRENTQ_RTOL,
    maxiter: int = 100,
) -> float:
    """A root of ``f`` in ``[a, b]`` by Brent's method (inverse quadratic extrapolation): ``scipy.optimize.brentq``.

    Parameters
    ----------
    f : callable
        Continuous on ``[a, b]``, ``f(a)`` and ``f(b)`` of opposite signs (or one of them zero).
        Called with Python floats.
    a, b : float
        The bracket.
    xtol, rtol : float
        The root is found within ``xtol + rtol*|x|`` (``xtol > 0``, ``rtol >= 4 eps``).
    maxiter : int
        At most this many iterations (``f`` is called at most ``maxiter + 2`` times).

    Returns
    -------
    float
        The root estimate.

    Raises
    ------
    ValueError
        Bad tolerances, ``f(a)`` and ``f(b)`` of the same sign, or ``f`` returning NaN.
    RuntimeError
        No convergence within ``maxiter`` iterations.

    Notes
    -----
    The iteration keeps the root bracketed by ``xcur`` (the best estimate, ``|f(xcur)| <=
    |f(xblk)|``) and ``xblk``; each step is an inverse quadratic extrapolation through the last
    three points (a secant step when only two are distinct), accepted if it is short
    (``2|s| < min(|s_prev|, 3|m| - delta)`` with ``m`` half the bracket), otherwise a bisection;
    a step shorter than ``delta = (xtol + rtol|xcur|)/2`` is lengthened to ``delta``. It stops
    when ``|m| < delta`` or ``f(xcur) == 0``. Line by line ``brentq.c`` (see the module notes).
    """
    maxiter = operator.index(maxiter)
    if xtol <= 0:
        raise ValueError(f"xtol too small ({xtol:g} <= 0)")
    if rtol < BRENTQ_RTOL:
        raise ValueError(f"rtol too small ({rtol:g} < {BRENTQ_RTOL:g})")
    if maxiter < 0:
        raise ValueError("maxiter must be >= 0")

    def call(x: float) -> float:
        fx = float(f(x))
        if math.isnan(fx):
            raise ValueError(f"The function value at x={x} is NaN; solver cannot continue.")
        return fx

    xpre, xcur = float(a), float(b)
    xblk = fblk = spre = scur = 0.0
    fpre = call(xpre)
    fcur = call(xcur)
    if fpre * fcur > 0:
        raise ValueError("f(a) and f(b) must have different signs")
    if fpre == 0:
        return xpre
    if fcur == 0:
        return xcur
    for _ in range(maxiter):
        if fpre != 0 and fcur != 0 and (math.copysign(1.0, fpre) < 0) != (math.copysign(1.0, fcur) < 0):
            xblk, fblk = xpre, fpre
            spre = scur = xcur - xpre
        if abs(fblk) < abs(fcur):
            xpre, xcur, xblk = xcur, xblk, xcur
            fpre, fcur, fblk = fcur, fblk, fcur
        delta = (xtol + rtol * abs(xcur)) / 2
        sbis = (xblk - xcur) / 2
        if fcur == 0 or abs(sbis) < delta:
            return xcur
        if abs(spre) > delta and abs(fcur) < abs(fpre):
            if xpre == xblk:  # interpolate
                stry = _div(-fcur * (xcur - xpre), fcur - fpre)
            else:  # extrapolate
                dpre = _div(fpre - fcur, xpre - xcur)
                dblk = _div(fblk - fcur, xblk - xcur)
                stry = _div(-fcur * (fblk * dblk - fpre * dpre), dblk * dpre * (fblk - fpre))
            lim_a, lim_b = abs(spre), 3 * abs(sbis) - delta
            if 2 * abs(stry) < (lim_a if lim_a < lim_b else lim_b):  # C's MIN(a, b)
                spre, scur = scur, stry  # good short step
            else:
                spre = scur = sbis  # bisect
        else:
            spre = scur = sbis  # bisect
        xpre, fpre = xcur, fcur
        if abs(scur) > delta:
            xcur += scur
        else:
            xcur += delta if sbis > 0 else -delta
        fcur = call(xcur)
    raise RuntimeError(f"Failed to converge after {maxiter} iterations.")


@dataclass(frozen=True)
class ScalarMinimum:
    """The result of :func:`minimize_scalar_bounded` (``scipy.optimize.OptimizeResult``'s fields that we use)."""

    x: float  # the minimiser found, in the bounds
    fun: float  # the objective there
    nfev: int  # objective evaluations
    status: int  # 0 converged, 1 maxiter evaluations reached, 2 a NaN was met


def minimize_scalar_bounded(
    func: Callable[[float], float],
    bounds: tuple[float, float],
    *,
    xatol: float = 1e-5,
    maxiter: int = 500,
) -> ScalarMinimum:
    """Minimise ``func`` on ``bounds``: ``scipy.optimize.minimize_scalar(func, bounds=bounds, method="bounded")``.

    Parameters
    ----------
    func : callable
        The objective. Called with NumPy ``float64`` scalars, as SciPy calls it.
    bounds : (float, float)
        Finite ``(x1, x2)``, ``x1 <= x2``.
    xatol : float
        Absolute tolerance on the minimiser.
    maxiter : int
        At most this many objective evaluations.

    Returns
    -------
    ScalarMinimum
        The best point seen (``x``, ``fun``), the evaluation count and a status.

    Raises
    ------
    ValueError
        Bounds not two finite scalars in order.

    Notes
    -----
    Brent's method: golden-section steps into the larger part of the bracket, parabolic steps
    through the three best points when they fall inside it and shorten the step before last by
    half, never closer than ``tol1 = sqrt(2.2e-16)|x| + xatol/3`` to a point already evaluated;
    it stops when ``|x - m| <= 2 tol1 - (b - a)/2`` (``m`` the middle of the bracket ``[a, b]``).
    Line by line ``_minimize_scalar_bounded`` (see the module notes), without the printing.
    """
    if len(bounds) != 2:
        raise ValueError("bounds must have two elements.")
    x1, x2 = bounds
    if not all(np.size(v) == 1 and np.isfinite(v) for v in (x1, x2)):
        raise ValueError("Optimization bounds must be finite scalars.")
    if x1 > x2:
        raise ValueError("The lower bound exceeds the upper bound.")
    maxfun = maxiter
    flag = 0
    sqrt_eps = np.sqrt(2.2e-16)
    golden_mean = 0.5 * (3.0 - np.sqrt(5.0))
    a, b = x1, x2
    fulc = a + golden_mean * (b - a)
    nfc, xf = fulc, fulc
    rat = e = 0.0
    x = xf
    fx = func(x)
    num = 1
    fu = np.inf
    ffulc = fnfc = fx
    xm = 0.5 * (a + b)
    tol1 = sqrt_eps * np.abs(xf) + xatol / 3.0
    tol2 = 2.0 * tol1
    while np.abs(xf - xm) > (tol2 - 0.5 * (b - a)):
        golden = 1
        if np.abs(e) > tol1:  # try a parabolic fit
            golden = 0
            r = (xf - nfc) * (fx - ffulc)
            q = (xf - fulc) * (fx - fnfc)
            p = (xf - fulc) * q - (xf - nfc) * r
            q = 2.0 * (q - r)
            if q > 0.0:
                p = -p
            q = np.abs(q)
            r = e
            e = rat
            if (np.abs(p) < np.abs(0.5 * q * r)) and (p > q * (a - xf)) and (p < q * (b - xf)):
                rat = (p + 0.0) / q  # the parabola is acceptable
                x = xf + rat
                if ((x - a) < tol2) or ((b - x) < tol2):
                    si = np.sign(xm - xf) + ((xm - xf) == 0)
                    rat = tol1 * si
            else:
                golden = 1
        if golden:  # a golden-section step
            e = a - xf if xf >= xm else b - xf
            rat = golden_mean * e
        si = np.sign(rat) + (rat == 0)
        x = xf + si * np.maximum(np.abs(rat), tol1)
        fu = func(x)
        num += 1
        if fu <= fx:
            if x >= xf:
                a = xf
            else:
                b = xf
            fulc, ffulc = nfc, fnfc
            nfc, fnfc = xf, fx
            xf, fx = x, fu
        else:
            if x < xf:
                a = x
            else:
                b = x
            if (fu <= fnfc) or (nfc == xf):
                fulc, ffulc = nfc, fnfc
                nfc, fnfc = x, fu
            elif (fu <= ffulc) or (fulc == xf) or (fulc == nfc):
                fulc, ffulc = x, fu
        xm = 0.5 * (a + b)
        tol1 = sqrt_eps * np.abs(xf) + xatol / 3.0
        tol2 = 2.0 * tol1
        if num >= maxfun:
            flag = 1
            break
    if np.isnan(xf) or np.isnan(fx) or np.isnan(fu):
        flag = 2
    return ScalarMinimum(float(xf), float(fx), num, flag)
