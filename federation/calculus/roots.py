"""Root finding and bound inversion: the delay at which a tail bound reaches ``epsilon``.

:func:`bracket_root` is a safeguarded false position (Illinois) for non-increasing functions,
near-exact in a few steps on the near-linear log bounds of the calculus; :func:`invert_delay`
finds the smallest delay with ``P(D > d) <= epsilon`` for any non-increasing bound, in
continuous time (doubling, then :func:`bracket_root` on the log) or discrete time (integer
bisection).
"""

from __future__ import annotations

import math
from collections.abc import Callable

from federation.errors import NoFiniteBound

__all__ = ["bracket_root", "invert_delay"]


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

