"""The rules of trefed's signed objects, each written once: ids, timestamps, ranges, protocol limits.

A leaf module: it imports only the standard library, protobuf, the generated ``trefed.v1`` code
and :mod:`federation.errors`, so every other module may use it -- the YAML/dict codec
(:mod:`federation.tre.codec`, :mod:`federation.tre.yaml`), the signer
(:mod:`federation.tre.signing`), the verifier (:mod:`federation.tre.trust`) and the config
schema (:mod:`federation.config`) call the same functions, so a file that loads also signs, a
body that signs also verifies, and a config that loads publishes envelopes that verify.

Every violation raises :class:`~federation.errors.FieldError` (re-exported here) naming the field by its dotted path and quoting the
value (``guardrails.loss_ceiling(=2.0) must be a probability in [0, 1)``). The ``path``
parameters of the ``check_*`` functions say where the checked message sits, so the config
schema reports the same rule under its own path (``domains[1].guardrails...``).

Units as in ``protos/trefed/v1/*.proto``: seconds (s), bits, bits per second (bits/s);
probabilities are plain numbers. Times are Unix seconds (floats) or
``google.protobuf.Timestamp`` messages; RFC 3339 strings carry an explicit offset.
"""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from google.protobuf import timestamp_pb2
from trefed.v1 import envelope_pb2, reservation_pb2

from federation.errors import FieldError

__all__ = [
    "DOMAIN_ID_PATTERN",
    "MAX_HOLD_S",
    "MAX_VALIDITY_S",
    "MIN_VALIDITY_S",
    "TIMESTAMP_MAX_S",
    "TIMESTAMP_MIN_S",
    "FieldError",
    "check_domain_id",
    "check_guardrails",
    "check_header",
    "check_inference",
    "check_labels",
    "check_model",
    "check_tre_id",
    "check_validity",
    "format_rfc3339",
    "parse_rfc3339",
    "seconds_from_timestamp",
    "timestamp_from_seconds",
    "timestamp_ns",
    "validate_body",
    "validate_grant",
]

#: Domain ids double as key file names (``NAME.key``, ``NAME.pub``): a letter or digit, then
#: letters, digits, ``_``, ``.`` or ``-``; at most 64 characters.
DOMAIN_ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")

#: Earliest time a ``google.protobuf.Timestamp`` can hold: 0001-01-01T00:00:00Z, Unix seconds.
TIMESTAMP_MIN_S = -62135596800
#: Latest whole second a ``google.protobuf.Timestamp`` can hold: 9999-12-31T23:59:59Z, Unix seconds.
TIMESTAMP_MAX_S = 253402300799

#: Shortest validity window a domain publishes its envelope for, s (see :func:`check_validity`).
MIN_VALIDITY_S = 1.0
#: Longest validity window a domain publishes its envelope for, s: ten Julian years.
MAX_VALIDITY_S = 10 * 365.25 * 86400.0
#: Longest hold a domain grants a ``PrepareRequest`` (``hold_timeout_s``), s: one hour. Brokers
#: must not ask for more (the config refuses ``broker.hold_timeout_s`` above it).
MAX_HOLD_S = 3600.0

_NS = 1_000_000_000
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_RFC3339 = re.compile(
    r"\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d{1,9})?([Zz]|[+-]\d{2}:\d{2})"
)


def _at(path: str, name: str) -> str:
    """``name`` under ``path`` (``"guardrails" + "loss_ceiling"``; an empty path adds nothing)."""
    return f"{path}.{name}" if path else name


# --------------------------------------------------------------------------------------------
# Ranges


def _finite(path: str, value: float) -> None:
    if not math.isfinite(value):
        raise FieldError(path, f"(={value!r}) must be finite")


def _positive(path: str, value: float) -> None:
    _finite(path, value)
    if not value > 0:
        raise FieldError(path, f"(={value!r}) must be > 0")


def _non_negative(path: str, value: float) -> None:
    _finite(path, value)
    if not value >= 0:
        raise FieldError(path, f"(={value!r}) must be >= 0")


def _probability(path: str, value: float) -> None:
    """A probability in [0, 1)."""
    if not (0.0 <= value < 1.0):
        raise FieldError(path, f"(={value!r}) must be a probability in [0, 1)")


def _enum_in(path: str, value: int, enum_type: Any, allowed: tuple[int, ...]) -> None:
    if value not in allowed:
        names = ", ".join(enum_type.Name(v) for v in allowed)
        try:
            shown = enum_type.Name(value)
        except ValueError:
            shown = str(value)
        raise FieldError(path, f"(={shown}) must be one of {names}")


# --------------------------------------------------------------------------------------------
# Ids


def check_domain_id(domain_id: str, what: str = "domain id") -> str:
    """Return ``domain_id`` if it matches :data:`DOMAIN_ID_PATTERN`.

    Raises
    ------
    FieldError
        Naming ``what`` (a field path, ``--domain``, a file) and quoting the value.
    """
    if not isinstance(domain_id, str) or not DOMAIN_ID_PATTERN.fullmatch(domain_id):
        raise FieldError(
            what,
            f"(={domain_id!r}) must be 1-64 characters of letters, digits, '_', '.', '-', "
            "starting with a letter or digit",
        )
    return domain_id


def check_tre_id(tre_id: str, what: str = "tre_id") -> str:
    """Return ``tre_id`` (the service class an envelope describes) if it is a non-empty string.

    Raises
    ------
    FieldError
        Naming ``what``.
    """
    if not isinstance(tre_id, str) or not tre_id:
        raise FieldError(what, "must not be empty")
    return tre_id


# --------------------------------------------------------------------------------------------
# Time


def timestamp_from_seconds(t: float, field: str = "timestamp") -> timestamp_pb2.Timestamp:
    """The ``google.protobuf.Timestamp`` of Unix time ``t`` (s), rounded to the nanosecond.

    Raises
    ------
    FieldError
        Naming ``field`` if ``t`` is not finite or outside
        [:data:`TIMESTAMP_MIN_S`, :data:`TIMESTAMP_MAX_S` + 1) (years 0001 to 9999).
    """
    if not (math.isfinite(t) and TIMESTAMP_MIN_S <= t < TIMESTAMP_MAX_S + 1):
        raise FieldError(field, f"(={t!r}) must be a Unix time in seconds between years 0001 and 9999")
    out = timestamp_pb2.Timestamp()
    ns = int(round(t * 1e9))  # as the agents always did; clamped against rounding at the ends
    out.FromNanoseconds(max(TIMESTAMP_MIN_S * _NS, min(ns, (TIMESTAMP_MAX_S + 1) * _NS - 1)))
    return out


def seconds_from_timestamp(ts: timestamp_pb2.Timestamp) -> float:
    """Unix time of a timestamp, s (float; nanoseconds beyond its precision are rounded)."""
    return ts.seconds + ts.nanos * 1e-9


def timestamp_ns(ts: timestamp_pb2.Timestamp, field: str = "timestamp") -> int:
    """Unix time of a timestamp in integer nanoseconds, after checking it is a valid Timestamp.

    Raises
    ------
    FieldError
        Naming ``field`` if ``seconds`` is outside the Timestamp range (years 0001-9999) or
        ``nanos`` outside [0, 1e9).
    """
    if not (TIMESTAMP_MIN_S <= ts.seconds <= TIMESTAMP_MAX_S) or not (0 <= ts.nanos < _NS):
        raise FieldError(field, f"(seconds={ts.seconds}, nanos={ts.nanos}) is not a valid timestamp")
    return ts.seconds * _NS + ts.nanos


def parse_rfc3339(text: str, field: str = "timestamp") -> timestamp_pb2.Timestamp:
    """Parse an RFC 3339 timestamp with an explicit offset (``Z`` or ``+hh:mm``), nanosecond precision.

    Raises
    ------
    FieldError
        Naming ``field`` if ``text`` is not such a timestamp.
    """
    if not isinstance(text, str) or not _RFC3339.fullmatch(text.strip()):
        raise FieldError(field, f"(={text!r}) must be an RFC 3339 timestamp with offset, e.g. 2026-11-27T00:00:00Z")
    ts = timestamp_pb2.Timestamp()
    try:
        ts.FromJsonString(text.strip().replace("t", "T").replace("z", "Z").replace(" ", "T"))
    except ValueError as exc:
        raise FieldError(field, f"(={text!r}) is not a valid timestamp ({exc})") from exc
    return ts


def format_rfc3339(t: float, *, timespec: str = "auto", field: str = "timestamp") -> str:
    """Unix time ``t`` (s) as RFC 3339 in UTC with a ``Z`` offset, e.g. ``2027-01-15T08:00:00.250Z``.

    Parameters
    ----------
    t
        Unix time, s.
    timespec
        As :meth:`datetime.datetime.isoformat`: ``"auto"`` (fraction only when non-zero, to the
        microsecond), ``"seconds"``, ``"milliseconds"``, ``"microseconds"``.
    field
        Named in the error.

    Raises
    ------
    FieldError
        As :func:`timestamp_from_seconds`.
    """
    timestamp_from_seconds(t, field)  # the range check
    return (_EPOCH + timedelta(seconds=t)).isoformat(timespec=timespec).replace("+00:00", "Z")


def check_validity(validity_s: float, field: str = "validity_s") -> float:
    """Return ``validity_s`` if a domain may publish its envelope for that long.

    Notes
    -----
    The valid range is [:data:`MIN_VALIDITY_S`, :data:`MAX_VALIDITY_S`] = [1 s, 10 years].

    *At least one second*: Unix time as a float resolves about 0.2 us today, so windows of
    nanoseconds collapse ``not_after`` onto ``not_before`` (an envelope no verifier accepts); a
    domain re-signs its envelope when half the window has passed and its sweep runs every
    0.25 s by default, so windows under 0.5 s are re-signed on every sweep; and a grant lapses
    with the envelope it was made against, so the window must outlive a Prepare/Commit round
    trip (milliseconds on loopback). One second is the smallest whole number of seconds that
    satisfies all three; real deployments use minutes to days (default 3 600 s).

    *At most ten years*: ``now + validity_s`` must stay a valid ``google.protobuf.Timestamp``
    (before year 10 000), and a promise about a domain's service decades ahead means nothing
    when it is re-signed at half-life anyway.

    Raises
    ------
    FieldError
        Naming ``field``, quoting the value.
    """
    if not (math.isfinite(validity_s) and MIN_VALIDITY_S <= validity_s <= MAX_VALIDITY_S):
        raise FieldError(
            field,
            f"(={validity_s!r}) must be between {MIN_VALIDITY_S:g} s and {MAX_VALIDITY_S:g} s (ten years)",
        )
    return validity_s


def _before(earlier: str, a: timestamp_pb2.Timestamp, later: str, b: timestamp_pb2.Timestamp) -> None:
    if not timestamp_ns(a, earlier) < timestamp_ns(b, later):
        raise FieldError(earlier, f"(={a.ToJsonString()}) must be before {later}(={b.ToJsonString()})")


# --------------------------------------------------------------------------------------------
# Envelope bodies


def check_header(h: envelope_pb2.EnvelopeHeader, path: str = "header") -> None:
    """``domain_id`` a domain id; ``tre_id`` non-empty; ``sequence >= 1``; ``kind`` NETWORK or
    COMPUTE; ``issued_at``, ``not_before``, ``not_after`` set and valid, ``not_before < not_after``,
    ``issued_at < not_after``. ``key_id`` is not checked (signing sets it, verification checks it).
    """
    check_domain_id(h.domain_id, _at(path, "domain_id"))
    check_tre_id(h.tre_id, _at(path, "tre_id"))
    if h.sequence < 1:
        raise FieldError(_at(path, "sequence"), f"(={h.sequence}) must be >= 1")
    _enum_in(_at(path, "kind"), h.kind, envelope_pb2.DomainKind, (envelope_pb2.NETWORK, envelope_pb2.COMPUTE))
    for name in ("issued_at", "not_before", "not_after"):
        if not h.HasField(name):
            raise FieldError(_at(path, name), "must be set (RFC 3339 timestamp)")
    timestamp_ns(h.issued_at, _at(path, "issued_at"))
    _before(_at(path, "not_before"), h.not_before, _at(path, "not_after"), h.not_after)
    _before(_at(path, "issued_at"), h.issued_at, _at(path, "not_after"), h.not_after)


def check_guardrails(g: envelope_pb2.Guardrails, path: str = "guardrails") -> None:
    """All finite; ``reservable_capacity_bps > 0``; ``0 <= min_tenant_rate_bps <=
    max_tenant_rate_bps``; ``0 < max_tenant_rate_bps <= reservable_capacity_bps``;
    ``max_burst_bits >= 0``; ``latency_ceiling_s > 0``; ``loss_ceiling`` in [0, 1)."""
    capacity, low, high = (_at(path, n) for n in ("reservable_capacity_bps", "min_tenant_rate_bps", "max_tenant_rate_bps"))
    _positive(capacity, g.reservable_capacity_bps)
    _non_negative(low, g.min_tenant_rate_bps)
    _positive(high, g.max_tenant_rate_bps)
    if g.max_tenant_rate_bps > g.reservable_capacity_bps:
        raise FieldError(high, f"(={g.max_tenant_rate_bps!r}) must be <= {capacity}(={g.reservable_capacity_bps!r})")
    if g.min_tenant_rate_bps > g.max_tenant_rate_bps:
        raise FieldError(low, f"(={g.min_tenant_rate_bps!r}) must be <= {high}(={g.max_tenant_rate_bps!r})")
    _non_negative(_at(path, "max_burst_bits"), g.max_burst_bits)
    _positive(_at(path, "latency_ceiling_s"), g.latency_ceiling_s)
    _probability(_at(path, "loss_ceiling"), g.loss_ceiling)


def check_model(
    m: envelope_pb2.StochasticModel,
    g: envelope_pb2.Guardrails,
    kind: int,
    path: str = "model",
    guardrails_path: str = "guardrails",
) -> None:
    """The stochastic model of a domain of ``kind`` (``envelope_pb2.NETWORK`` or ``COMPUTE``)
    under its guardrails ``g`` (themselves checked by :func:`check_guardrails`).

    ``service`` RATE_LATENCY, EXPONENTIAL_SERVICE or TABULATED_MGF; ``rate_bps > 0`` and
    ``>= g.reservable_capacity_bps``; ``latency_s, propagation_delay_s >= 0`` with
    ``latency_s + propagation_delay_s < g.latency_ceiling_s``; ``loss_probability`` in [0, 1) and
    ``<= g.loss_ceiling``; ``mgf`` non-empty exactly for TABULATED_MGF (``theta`` > 0 strictly
    increasing, ``rate_bps > 0``, ``sigma_bits >= 0``, all finite); ``inference`` present exactly
    for COMPUTE domains (:func:`check_inference`).
    """
    _enum_in(
        _at(path, "service"),
        m.service,
        envelope_pb2.ServiceKind,
        (envelope_pb2.RATE_LATENCY, envelope_pb2.EXPONENTIAL_SERVICE, envelope_pb2.TABULATED_MGF),
    )
    _positive(_at(path, "rate_bps"), m.rate_bps)
    if g.reservable_capacity_bps > m.rate_bps:
        raise FieldError(
            _at(guardrails_path, "reservable_capacity_bps"),
            f"(={g.reservable_capacity_bps!r}) must be <= {_at(path, 'rate_bps')}(={m.rate_bps!r})",
        )
    _non_negative(_at(path, "latency_s"), m.latency_s)
    _non_negative(_at(path, "propagation_delay_s"), m.propagation_delay_s)
    if not m.latency_s + m.propagation_delay_s < g.latency_ceiling_s:
        raise FieldError(
            _at(guardrails_path, "latency_ceiling_s"),
            f"(={g.latency_ceiling_s!r}) must exceed {_at(path, 'latency_s')} + {_at(path, 'propagation_delay_s')}"
            f"(={m.latency_s + m.propagation_delay_s!r})",
        )
    _probability(_at(path, "loss_probability"), m.loss_probability)
    if m.loss_probability > g.loss_ceiling:
        raise FieldError(
            _at(path, "loss_probability"),
            f"(={m.loss_probability!r}) must be <= {_at(guardrails_path, 'loss_ceiling')}(={g.loss_ceiling!r})",
        )
    mgf = _at(path, "mgf")
    if m.service == envelope_pb2.TABULATED_MGF:
        if not m.mgf:
            raise FieldError(mgf, "must list at least one point for service TABULATED_MGF")
        if not _mgf_table_ok(m.mgf):
            _explain_mgf(m.mgf, mgf)
    elif m.mgf:
        raise FieldError(mgf, f"must be empty unless {_at(path, 'service')} is TABULATED_MGF (got {len(m.mgf)} points)")
    inference = _at(path, "inference")
    if kind == envelope_pb2.COMPUTE:
        if not m.HasField("inference"):
            raise FieldError(inference, "must be set for a COMPUTE domain")
        check_inference(m.inference, inference)
    elif m.HasField("inference"):
        raise FieldError(inference, "must not be set for a NETWORK domain")


def _mgf_table_ok(points: Any) -> bool:
    """Fast check of a tabulated MGF: theta > 0 strictly increasing, rate > 0, sigma >= 0, all finite."""
    thetas, rates, sigmas = zip(*[(p.theta, p.rate_bps, p.sigma_bits) for p in points])  # one wrapper per point
    finite = math.isfinite
    return (
        all(map(finite, thetas)) and all(map(finite, rates)) and all(map(finite, sigmas))
        and thetas[0] > 0 and all(map(operator.lt, thetas, thetas[1:]))
        and min(rates) > 0 and min(sigmas) >= 0
    )


def _explain_mgf(points: Any, path: str) -> None:
    """Raise the FieldError for the first bad point of a tabulated MGF."""
    previous = 0.0
    for i, point in enumerate(points):
        at = f"{path}[{i}]"
        _positive(f"{at}.theta", point.theta)
        if not point.theta > previous:
            raise FieldError(f"{at}.theta", f"(={point.theta!r}) must be > the previous theta(={previous!r})")
        previous = point.theta
        _positive(f"{at}.rate_bps", point.rate_bps)
        _non_negative(f"{at}.sigma_bits", point.sigma_bits)
    raise AssertionError("unreachable: the fast MGF check failed but no point is bad")  # pragma: no cover


def check_inference(inf: envelope_pb2.InferenceModel, path: str = "model.inference") -> None:
    """``distribution`` set; ``mean_s > 0``; ``sigma_log > 0`` for LOGNORMAL and 0 otherwise;
    ``quantiles_s`` at least 2 values (levels ``i/(n-1)``), finite, >= 0 and non-decreasing for
    EMPIRICAL and empty otherwise; ``error_probability`` in [0, 1)."""
    dist = envelope_pb2.InferenceModel
    _enum_in(_at(path, "distribution"), inf.distribution, dist.Distribution, (dist.EXPONENTIAL, dist.LOGNORMAL, dist.EMPIRICAL))
    _positive(_at(path, "mean_s"), inf.mean_s)
    sigma = _at(path, "sigma_log")
    if inf.distribution == dist.LOGNORMAL:
        _positive(sigma, inf.sigma_log)
    elif inf.sigma_log != 0.0:
        raise FieldError(sigma, f"(={inf.sigma_log!r}) must be 0 unless distribution is LOGNORMAL")
    quantiles = _at(path, "quantiles_s")
    if inf.distribution == dist.EMPIRICAL:
        qs = list(inf.quantiles_s)
        if len(qs) < 2:
            raise FieldError(quantiles, f"must hold at least 2 values for distribution EMPIRICAL (got {len(qs)})")
        if all(map(math.isfinite, qs)) and qs[0] >= 0 and all(map(operator.le, qs, qs[1:])):
            qs = []  # all fine: skip the explaining loop
        previous = 0.0
        for i, q in enumerate(qs):
            at = f"{quantiles}[{i}]"
            _non_negative(at, q)
            if q < previous:
                raise FieldError(at, f"(={q!r}) must be >= the previous quantile(={previous!r})")
            previous = q
    elif inf.quantiles_s:
        raise FieldError(quantiles, "must be empty unless distribution is EMPIRICAL")
    _probability(_at(path, "error_probability"), inf.error_probability)


def check_labels(labels: Mapping[str, str] | Iterable[str], path: str = "labels") -> None:
    """Label keys are non-empty."""
    for key in labels:
        if not key:
            raise FieldError(path, "keys must not be empty")


def validate_body(body: envelope_pb2.EnvelopeBody) -> None:
    """Check every field of an envelope body against its valid range.

    The rules: :func:`check_header` (``header``), :func:`check_guardrails` (``guardrails``,
    required), :func:`check_model` (``model``, required, with :func:`check_inference`) and
    :func:`check_labels` (``labels``), in that order.

    Raises
    ------
    FieldError
        For the first violation found, naming the field path and quoting the value.
    """
    check_header(body.header)
    if not body.HasField("guardrails"):
        raise FieldError("guardrails", "must be set")
    if not body.HasField("model"):
        raise FieldError("model", "must be set")
    check_guardrails(body.guardrails)
    check_model(body.model, body.guardrails, body.header.kind)
    check_labels(body.labels)


# --------------------------------------------------------------------------------------------
# Grants


def validate_grant(body: reservation_pb2.GrantBody) -> None:
    """Check the fields of a reservation grant body against their valid ranges.

    ``domain_id`` a domain id (:data:`DOMAIN_ID_PATTERN`); ``reservation_id``, ``tenant_id``,
    ``tre_id`` non-empty; ``tre_sequence >= 1``; ``sequence >= 1``; ``rate_bps > 0``,
    ``burst_bits >= 0``, ``delay_budget_s > 0`` (finite); ``epsilon`` in (0, 1); ``granted_at``
    and ``not_after`` set and valid, ``granted_at < not_after``.

    Raises
    ------
    FieldError
        For the first violation, naming the field.
    """
    check_domain_id(body.domain_id, "domain_id")
    for name in ("reservation_id", "tenant_id", "tre_id"):
        if not getattr(body, name):
            raise FieldError(name, "must not be empty")
    for name in ("tre_sequence", "sequence"):
        if getattr(body, name) < 1:
            raise FieldError(name, f"(={getattr(body, name)}) must be >= 1")
    _positive("rate_bps", body.rate_bps)
    _non_negative("burst_bits", body.burst_bits)
    _positive("delay_budget_s", body.delay_budget_s)
    if not 0.0 < body.epsilon < 1.0:
        raise FieldError("epsilon", f"(={body.epsilon!r}) must be a probability in (0, 1)")
    for name in ("granted_at", "not_after"):
        if not body.HasField(name):
            raise FieldError(name, "must be set")
    _before("granted_at", body.granted_at, "not_after", body.not_after)
