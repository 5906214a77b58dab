"""Traffic from traces: the trace schema and files, a synthetic bursty generator, fitted envelopes.

Pure (numpy, scipy, pyarrow). Modules: :mod:`~federation.trace.schema` (:class:`Trace`,
:func:`read_trace`, :func:`write_trace`), :mod:`~federation.trace.synth` (:func:`synthetic_trace`)
and :mod:`~federation.trace.fit` (token buckets, the peak rate and the MGF envelope the calculus
uses). The data plane replays a trace with :class:`federation.dataplane.traffic.TraceReplay`.
"""

from federation.trace.fit import (
    TraceFit,
    fit_mgf_envelope,
    fit_token_bucket,
    fit_trace,
    peak_rate,
    token_bucket_frontier,
)
from federation.trace.schema import SCHEMA, Trace, read_trace, write_trace
from federation.trace.synth import synthetic_trace

__all__ = [
    "SCHEMA",
    "Trace",
    "TraceFit",
    "fit_mgf_envelope",
    "fit_token_bucket",
    "fit_trace",
    "peak_rate",
    "read_trace",
    "synthetic_trace",
    "token_bucket_frontier",
    "write_trace",
]
