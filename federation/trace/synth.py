"""A synthetic bursty trace: heavy-tailed on-off sources (so an experiment needs no outside data).

:func:`synthetic_trace` records the packets of the data plane's
:class:`~federation.dataplane.traffic.ParetoOnOff` traffic: ``sources`` independent on-off
sources whose on *and* off periods are Pareto(``alpha``); while on, a source sends
``packet_bits``-bit packets back to back at its peak (``peak_bps / sources``). With ``alpha`` in
(1, 2) the periods have infinite variance and the aggregate is long-range dependent (its
bursts are correlated over every time scale: Willinger, Taqqu, Sherman and Wilson, "Self-similarity
through high-variability", IEEE/ACM ToN 5(1), 1997) -- the traffic a worst-case envelope
over-reserves for and a sample MGF under-represents.
"""

from __future__ import annotations

import math

from federation.dataplane.traffic import PacketSizes, ParetoOnOff, generate
from federation.errors import InputError
from federation.trace.schema import Trace

__all__ = ["synthetic_trace"]


def synthetic_trace(
    duration_s: float = 600.0,
    *,
    peak_bps: float = 2e6,
    mean_on_s: float = 0.5,
    mean_off_s: float = 1.5,
    alpha: float = 1.5,
    sources: int = 1,
    packet_bits: float = 12_000.0,
    seed: int = 0,
) -> Trace:
    """Packets of ``sources`` Pareto on-off sources over ``[0, duration_s)`` (see the module docstring).

    Parameters
    ----------
    duration_s : float
        Trace length, s, > 0 (the trace's ``duration_s``).
    peak_bps : float
        Rate while every source is on, bits/s (each source: ``peak_bps / sources``), > 0.
    mean_on_s, mean_off_s : float
        Mean on and off periods, s, > 0.
    alpha : float
        Pareto shape of the periods, > 1.
    sources : int
        Independent sources, >= 1.
    packet_bits : float
        Every packet's size, bits, > 0.
    seed : int
        Seed of the random streams (the data plane's, tenant 0): equal seeds give equal traces.

    Returns
    -------
    Trace
        Mean rate about ``peak_bps * mean_on_s / (mean_on_s + mean_off_s)``; ``source`` records
        the parameters.
    """
    if not (duration_s > 0 and math.isfinite(duration_s)):
        raise InputError(f"duration_s(={duration_s!r}) must be > 0 and finite (s)")
    if not (isinstance(sources, int) and sources >= 1):
        raise InputError(f"sources(={sources!r}) must be a whole number >= 1")
    if not (isinstance(seed, int) and seed >= 0):
        raise InputError(f"seed(={seed!r}) must be a whole number >= 0")
    if not (peak_bps > 0 and math.isfinite(peak_bps)):
        raise InputError(f"peak_bps(={peak_bps!r}) must be > 0 and finite (bits/s)")
    model = ParetoOnOff(mean_on_s, mean_off_s, peak_bps / sources, alpha, sources, PacketSizes("fixed", packet_bits))
    stream = generate(model, seed=seed, horizon=duration_s)
    if len(stream) == 0:
        raise InputError(f"no packet in {duration_s:g} s: make duration_s longer than the first off period")
    source = (f"synthetic pareto-onoff: peak_bps={peak_bps:g} mean_on_s={mean_on_s:g} mean_off_s={mean_off_s:g} "
              f"alpha={alpha:g} sources={sources} packet_bits={packet_bits:g} seed={seed}")
    return Trace(stream.times, stream.sizes, duration_s, source)
