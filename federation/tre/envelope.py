"""Tail-Risk Envelope bodies: range validation, YAML / dict conversion and the example envelope.

:func:`validate_body` is the one place the valid range of every ``EnvelopeBody`` field is
written down; YAML loading (:func:`load_envelope_yaml`) and signature verification
(:meth:`federation.tre.trust.TrustStore.verify_envelope`) both call it, so a file that signs also
verifies. Errors name the field by its path in the message (``guardrails.loss_ceiling``).

The YAML form mirrors the protobuf message field for field (the same names as ``trefed tre show``
prints): enums by name (``NETWORK``, ``RATE_LATENCY``), timestamps as RFC 3339 strings with an
explicit offset (``2026-11-27T00:00:00Z``), durations in seconds, sizes in bits, rates in bits/s,
probabilities as plain numbers. See :func:`example_envelope_yaml`.
"""

from __future__ import annotations

import math
import operator
import re
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from google.protobuf import timestamp_pb2
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message
from trefed.v1 import envelope_pb2

from federation.errors import ConfigError
from federation.tre.signing import DOMAIN_ID_PATTERN, check_domain_id

__all__ = [
    "FieldError",
    "body_from_dict",
    "body_from_yaml",
    "body_to_dict",
    "body_to_yaml",
    "example_body",
    "example_envelope_yaml",
    "load_envelope_yaml",
    "message_from_dict",
    "message_to_dict",
    "parse_rfc3339",
    "validate_body",
]

_RFC3339 = re.compile(
    r"\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d{1,9})?([Zz]|[+-]\d{2}:\d{2})"
)
_UINT64_MAX = 2**64 - 1
_UINT32_MAX = 2**32 - 1


class FieldError(ConfigError):
    """A field of a message is missing, of the wrong type or out of range.

    Attributes
    ----------
    field
        Dotted path of the field, e.g. ``"model.inference.mean_s"``.
    problem
        What is wrong with it (quotes the value).
    """

    def __init__(self, field: str, problem: str) -> None:
        # "rate_bps(=-1.0) must be > 0" when the problem quotes the value, else "rate_bps: problem"
        super().__init__(f"{field}{problem}" if problem.startswith("(=") else f"{field}: {problem}")
        self.field = field
        self.problem = problem


# --------------------------------------------------------------------------------------------
# Validation


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


def _timestamp_ns(path: str, ts: timestamp_pb2.Timestamp) -> int:
    # Timestamp's valid range: 0001-01-01T00:00:00Z .. 9999-12-31T23:59:59.999999999Z.
    if not (-62135596800 <= ts.seconds <= 253402300799) or not (0 <= ts.nanos < 1_000_000_000):
        raise FieldError(path, f"(seconds={ts.seconds}, nanos={ts.nanos}) is not a valid timestamp")
    return ts.seconds * 1_000_000_000 + ts.nanos


def _enum_in(path: str, value: int, enum_type: Any, allowed: tuple[int, ...]) -> None:
    if value not in allowed:
        names = ", ".join(enum_type.Name(v) for v in allowed)
        try:
            shown = enum_type.Name(value)
        except ValueError:
            shown = str(value)
        raise FieldError(path, f"(={shown}) must be one of {names}")


def validate_body(body: envelope_pb2.EnvelopeBody) -> None:
    """Check every field of an envelope body against its valid range.

    The rules (units as in ``envelope.proto``):

    * ``header``: ``domain_id`` matches :data:`federation.tre.signing.DOMAIN_ID_PATTERN`; ``tre_id``
      non-empty; ``sequence >= 1``; ``kind`` NETWORK or COMPUTE; ``issued_at``, ``not_before``,
      ``not_after`` set and valid, ``not_before < not_after``, ``issued_at < not_after``.
      ``key_id`` is not checked here (it is set by signing and checked by verification).
    * ``guardrails`` (required): all finite; ``reservable_capacity_bps > 0`` and
      ``<= model.rate_bps``; ``0 <= min_tenant_rate_bps <= max_tenant_rate_bps``;
      ``0 < max_tenant_rate_bps <= reservable_capacity_bps``; ``max_burst_bits >= 0``;
      ``latency_ceiling_s > 0``; ``loss_ceiling`` in [0, 1).
    * ``model`` (required): ``service`` one of RATE_LATENCY, EXPONENTIAL_SERVICE, TABULATED_MGF;
      ``rate_bps > 0``; ``latency_s >= 0``; ``propagation_delay_s >= 0``;
      ``latency_s + propagation_delay_s < guardrails.latency_ceiling_s``;
      ``loss_probability`` in [0, 1) and ``<= guardrails.loss_ceiling``. ``mgf`` non-empty exactly
      for TABULATED_MGF, with ``theta`` strictly increasing and > 0, ``rate_bps > 0``,
      ``sigma_bits >= 0``, all finite. ``inference`` present exactly for COMPUTE domains.
    * ``model.inference``: ``distribution`` set; ``mean_s > 0``; ``sigma_log > 0`` for LOGNORMAL
      and 0 otherwise; ``quantiles_s`` non-empty, finite, >= 0 and non-decreasing for EMPIRICAL and
      empty otherwise; ``error_probability`` in [0, 1).
    * ``labels``: keys non-empty.

    Raises
    ------
    FieldError
        For the first violation found, naming the field path and quoting the value.
    """
    h = body.header
    if not DOMAIN_ID_PATTERN.fullmatch(h.domain_id):
        raise FieldError(
            "header.domain_id",
            f"(={h.domain_id!r}) must be 1-64 letters, digits, '_', '.', '-', starting with a letter or digit",
        )
    if not h.tre_id:
        raise FieldError("header.tre_id", "must not be empty")
    if h.sequence < 1:
        raise FieldError("header.sequence", f"(={h.sequence}) must be >= 1")
    _enum_in("header.kind", h.kind, envelope_pb2.DomainKind, (envelope_pb2.NETWORK, envelope_pb2.COMPUTE))
    for name in ("issued_at", "not_before", "not_after"):
        if not h.HasField(name):
            raise FieldError(f"header.{name}", "must be set (RFC 3339 timestamp)")
    issued = _timestamp_ns("header.issued_at", h.issued_at)
    nbf = _timestamp_ns("header.not_before", h.not_before)
    naf = _timestamp_ns("header.not_after", h.not_after)
    if not nbf < naf:
        raise FieldError(
            "header.not_before",
            f"(={h.not_before.ToJsonString()}) must be before header.not_after(={h.not_after.ToJsonString()})",
        )
    if not issued < naf:
        raise FieldError(
            "header.issued_at",
            f"(={h.issued_at.ToJsonString()}) must be before header.not_after(={h.not_after.ToJsonString()})",
        )

    if not body.HasField("guardrails"):
        raise FieldError("guardrails", "must be set")
    if not body.HasField("model"):
        raise FieldError("model", "must be set")
    g, m = body.guardrails, body.model
    _positive("guardrails.reservable_capacity_bps", g.reservable_capacity_bps)
    _non_negative("guardrails.min_tenant_rate_bps", g.min_tenant_rate_bps)
    _positive("guardrails.max_tenant_rate_bps", g.max_tenant_rate_bps)
    if g.max_tenant_rate_bps > g.reservable_capacity_bps:
        raise FieldError(
            "guardrails.max_tenant_rate_bps",
            f"(={g.max_tenant_rate_bps!r}) must be <= guardrails.reservable_capacity_bps(={g.reservable_capacity_bps!r})",
        )
    if g.min_tenant_rate_bps > g.max_tenant_rate_bps:
        raise FieldError(
            "guardrails.min_tenant_rate_bps",
            f"(={g.min_tenant_rate_bps!r}) must be <= guardrails.max_tenant_rate_bps(={g.max_tenant_rate_bps!r})",
        )
    _non_negative("guardrails.max_burst_bits", g.max_burst_bits)
    _positive("guardrails.latency_ceiling_s", g.latency_ceiling_s)
    _probability("guardrails.loss_ceiling", g.loss_ceiling)

    _enum_in(
        "model.service",
        m.service,
        envelope_pb2.ServiceKind,
        (envelope_pb2.RATE_LATENCY, envelope_pb2.EXPONENTIAL_SERVICE, envelope_pb2.TABULATED_MGF),
    )
    _positive("model.rate_bps", m.rate_bps)
    if g.reservable_capacity_bps > m.rate_bps:
        raise FieldError(
            "guardrails.reservable_capacity_bps",
            f"(={g.reservable_capacity_bps!r}) must be <= model.rate_bps(={m.rate_bps!r})",
        )
    _non_negative("model.latency_s", m.latency_s)
    _non_negative("model.propagation_delay_s", m.propagation_delay_s)
    if not m.latency_s + m.propagation_delay_s < g.latency_ceiling_s:
        raise FieldError(
            "guardrails.latency_ceiling_s",
            f"(={g.latency_ceiling_s!r}) must exceed model.latency_s + model.propagation_delay_s"
            f"(={m.latency_s + m.propagation_delay_s!r})",
        )
    _probability("model.loss_probability", m.loss_probability)
    if m.loss_probability > g.loss_ceiling:
        raise FieldError(
            "model.loss_probability",
            f"(={m.loss_probability!r}) must be <= guardrails.loss_ceiling(={g.loss_ceiling!r})",
        )
    if m.service == envelope_pb2.TABULATED_MGF:
        if not m.mgf:
            raise FieldError("model.mgf", "must list at least one point for service TABULATED_MGF")
        if not _mgf_table_ok(m.mgf):
            _explain_mgf(m.mgf)
    elif m.mgf:
        raise FieldError("model.mgf", f"must be empty unless model.service is TABULATED_MGF (got {len(m.mgf)} points)")
    _validate_kind_specific(body)


def _mgf_table_ok(points) -> bool:
    """Fast check of a tabulated MGF: theta > 0 strictly increasing, rate > 0, sigma >= 0, all finite."""
    thetas, rates, sigmas = zip(*[(p.theta, p.rate_bps, p.sigma_bits) for p in points])  # one wrapper per point
    finite = math.isfinite
    return (
        all(map(finite, thetas)) and all(map(finite, rates)) and all(map(finite, sigmas))
        and thetas[0] > 0 and all(map(operator.lt, thetas, thetas[1:]))
        and min(rates) > 0 and min(sigmas) >= 0
    )


def _explain_mgf(points) -> None:
    """Raise the FieldError for the first bad point of a tabulated MGF."""
    previous = 0.0
    for i, point in enumerate(points):
        path = f"model.mgf[{i}]"
        _positive(f"{path}.theta", point.theta)
        if not point.theta > previous:
            raise FieldError(f"{path}.theta", f"(={point.theta!r}) must be > the previous theta(={previous!r})")
        previous = point.theta
        _positive(f"{path}.rate_bps", point.rate_bps)
        _non_negative(f"{path}.sigma_bits", point.sigma_bits)
    raise AssertionError("unreachable: the fast MGF check failed but no point is bad")  # pragma: no cover


def _validate_kind_specific(body: envelope_pb2.EnvelopeBody) -> None:
    h, m = body.header, body.model
    if h.kind == envelope_pb2.COMPUTE:
        if not m.HasField("inference"):
            raise FieldError("model.inference", "must be set for a COMPUTE domain")
        _validate_inference(m.inference)
    elif m.HasField("inference"):
        raise FieldError("model.inference", "must not be set for a NETWORK domain")

    for key in body.labels:
        if not key:
            raise FieldError("labels", "keys must not be empty")


def _validate_inference(inf: envelope_pb2.InferenceModel) -> None:
    dist = envelope_pb2.InferenceModel.Distribution
    _enum_in(
        "model.inference.distribution",
        inf.distribution,
        dist,
        (envelope_pb2.InferenceModel.EXPONENTIAL, envelope_pb2.InferenceModel.LOGNORMAL, envelope_pb2.InferenceModel.EMPIRICAL),
    )
    _positive("model.inference.mean_s", inf.mean_s)
    if inf.distribution == envelope_pb2.InferenceModel.LOGNORMAL:
        _positive("model.inference.sigma_log", inf.sigma_log)
    elif inf.sigma_log != 0.0:
        raise FieldError("model.inference.sigma_log", f"(={inf.sigma_log!r}) must be 0 unless distribution is LOGNORMAL")
    if inf.distribution == envelope_pb2.InferenceModel.EMPIRICAL:
        if not inf.quantiles_s:
            raise FieldError("model.inference.quantiles_s", "must not be empty for distribution EMPIRICAL")
        qs = list(inf.quantiles_s)
        if all(map(math.isfinite, qs)) and qs[0] >= 0 and all(map(operator.le, qs, qs[1:])):
            qs = []  # all fine: skip the explaining loop
        previous = 0.0
        for i, q in enumerate(qs):
            path = f"model.inference.quantiles_s[{i}]"
            _non_negative(path, q)
            if q < previous:
                raise FieldError(path, f"(={q!r}) must be >= the previous quantile(={previous!r})")
            previous = q
    elif inf.quantiles_s:
        raise FieldError("model.inference.quantiles_s", "must be empty unless distribution is EMPIRICAL")
    _probability("model.inference.error_probability", inf.error_probability)


# --------------------------------------------------------------------------------------------
# dict <-> message


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


def _is_map(field: FieldDescriptor) -> bool:
    return field.message_type is not None and field.message_type.GetOptions().map_entry


def _is_repeated(field: FieldDescriptor) -> bool:
    flag = getattr(field, "is_repeated", None)
    if flag is not None:
        return bool(flag)
    return field.label == FieldDescriptor.LABEL_REPEATED  # pragma: no cover - older protobuf


def _scalar(field: FieldDescriptor, value: Any, path: str) -> Any:
    t = field.type
    if t in (FieldDescriptor.TYPE_DOUBLE, FieldDescriptor.TYPE_FLOAT):
        if isinstance(value, bool) or not isinstance(value, (int, float, str)):
            raise FieldError(path, f"(={value!r}) must be a number")
        try:
            return float(value)
        except ValueError:
            raise FieldError(path, f"(={value!r}) must be a number") from None
    if t in (FieldDescriptor.TYPE_UINT64, FieldDescriptor.TYPE_UINT32):
        if isinstance(value, str) and value.strip().isdigit():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            raise FieldError(path, f"(={value!r}) must be a non-negative integer")
        limit = _UINT64_MAX if t == FieldDescriptor.TYPE_UINT64 else _UINT32_MAX
        if not 0 <= value <= limit:
            raise FieldError(path, f"(={value!r}) must be an integer in [0, {limit}]")
        return value
    if t == FieldDescriptor.TYPE_STRING:
        if not isinstance(value, str):
            raise FieldError(path, f"(={value!r}) must be a string (quote it)")
        return value
    if t == FieldDescriptor.TYPE_BOOL:
        if not isinstance(value, bool):
            raise FieldError(path, f"(={value!r}) must be true or false")
        return value
    if t == FieldDescriptor.TYPE_ENUM:
        names = [v.name for v in field.enum_type.values if v.number != 0]
        if isinstance(value, str):
            match = field.enum_type.values_by_name.get(value.strip().upper())
            if match is not None and match.number != 0:
                return match.number
        raise FieldError(path, f"(={value!r}) must be one of {', '.join(names)}")
    raise FieldError(path, f"field type {t} is not supported in YAML")  # pragma: no cover - bytes etc.


def message_from_dict(msg: Message, data: Mapping[str, Any], path: str = "") -> Message:
    """Fill ``msg`` from a YAML-style mapping keyed by proto field names; returns ``msg``.

    Numbers may be given as YAML numbers or numeric strings (``1e9``); enums by value name
    (case-insensitive); ``google.protobuf.Timestamp`` fields as RFC 3339 strings; messages as
    mappings (``null`` leaves them unset); repeated fields as lists; maps as mappings of strings.

    Raises
    ------
    FieldError
        Unknown key, wrong type or bad value, naming the dotted field path.
    """
    if not isinstance(data, Mapping):
        raise FieldError(path or "(top level)", f"must be a mapping of field: value, got {type(data).__name__}")
    desc: Descriptor = msg.DESCRIPTOR
    for key, value in data.items():
        sub = f"{path}.{key}" if path else str(key)
        field = desc.fields_by_name.get(key) if isinstance(key, str) else None
        if field is None:
            known = ", ".join(f.name for f in desc.fields)
            raise FieldError(sub, f"unknown field (known here: {known})")
        if _is_map(field):
            if value is None:
                continue
            if not isinstance(value, Mapping):
                raise FieldError(sub, "must be a mapping")
            target = getattr(msg, key)
            for k, v in value.items():
                if not isinstance(k, str) or not isinstance(v, str):
                    raise FieldError(f"{sub}.{k}", f"(={v!r}) keys and values must be strings (quote them)")
                target[k] = v
        elif _is_repeated(field):
            if value is None:
                continue
            if not isinstance(value, list):
                raise FieldError(sub, f"(={value!r}) must be a list")
            target = getattr(msg, key)
            for i, item in enumerate(value):
                if field.type == FieldDescriptor.TYPE_MESSAGE:
                    message_from_dict(target.add(), item, f"{sub}[{i}]")
                else:
                    target.append(_scalar(field, item, f"{sub}[{i}]"))
        elif field.type == FieldDescriptor.TYPE_MESSAGE:
            if value is None:
                continue
            if field.message_type.full_name == "google.protobuf.Timestamp":
                getattr(msg, key).CopyFrom(parse_rfc3339(value, sub))
            else:
                message_from_dict(getattr(msg, key), value, sub)
        else:
            if value is None:
                raise FieldError(sub, "must have a value")
            setattr(msg, key, _scalar(field, value, sub))
    return msg


def message_to_dict(msg: Message, *, include_defaults: bool = True) -> dict[str, Any]:
    """The YAML-style mapping of ``msg`` (inverse of :func:`message_from_dict`).

    Enums by name, timestamps as RFC 3339, unset sub-messages omitted; scalar fields at their
    default value are included when ``include_defaults``.
    """
    out: dict[str, Any] = {}
    for field in msg.DESCRIPTOR.fields:
        value = getattr(msg, field.name)
        if _is_map(field):
            if value or include_defaults:
                out[field.name] = {k: value[k] for k in sorted(value)}
        elif _is_repeated(field):
            if field.type == FieldDescriptor.TYPE_MESSAGE:
                items: list[Any] = [message_to_dict(v, include_defaults=include_defaults) for v in value]
            elif field.type == FieldDescriptor.TYPE_ENUM:
                items = [field.enum_type.values_by_number[v].name for v in value]
            else:
                items = list(value)
            if items or include_defaults:
                out[field.name] = items
        elif field.type == FieldDescriptor.TYPE_MESSAGE:
            if msg.HasField(field.name):
                if field.message_type.full_name == "google.protobuf.Timestamp":
                    out[field.name] = value.ToJsonString()
                else:
                    out[field.name] = message_to_dict(value, include_defaults=include_defaults)
        elif field.type == FieldDescriptor.TYPE_ENUM:
            if value or include_defaults:
                known = field.enum_type.values_by_number.get(value)
                out[field.name] = known.name if known is not None else value
        elif field.type == FieldDescriptor.TYPE_BYTES:
            if value or include_defaults:
                out[field.name] = value.hex()
        else:
            if value or include_defaults:
                out[field.name] = value
    return out


def body_from_dict(data: Mapping[str, Any], *, validate: bool = True) -> envelope_pb2.EnvelopeBody:
    """An ``EnvelopeBody`` from its YAML-style mapping, range-checked by :func:`validate_body`.

    Raises
    ------
    FieldError
        Naming the field (unknown, wrong type or out of range).
    """
    body = envelope_pb2.EnvelopeBody()
    message_from_dict(body, data)
    if validate:
        validate_body(body)
    return body


def body_to_dict(body: envelope_pb2.EnvelopeBody) -> dict[str, Any]:
    """The YAML-style mapping of an envelope body (every field, defaults included)."""
    return message_to_dict(body)


class _Loader(yaml.SafeLoader):
    """Safe YAML loader: timestamps stay strings (we parse RFC 3339 ourselves); duplicate keys fail."""


_Loader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def _construct_mapping(loader: _Loader, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r}", key_node.start_mark
            )
        seen.add(key)
    return yaml.SafeLoader.construct_mapping(loader, node, deep=deep)


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def body_from_yaml(text: str, source: str = "<yaml>") -> envelope_pb2.EnvelopeBody:
    """Parse and validate an envelope body from YAML text.

    Raises
    ------
    ConfigError
        ``"SOURCE: ..."`` for invalid YAML; :class:`FieldError` ``"SOURCE: FIELD: ..."`` for a bad field.
    """
    try:
        data = yaml.load(text, Loader=_Loader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problem = getattr(exc, "problem", None) or str(exc)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        raise ConfigError(f"{source}: not valid YAML{where}: {problem}") from exc
    if data is None:
        raise ConfigError(f"{source}: empty file (expected an envelope; see `trefed tre example`)")
    try:
        return body_from_dict(data)
    except FieldError as exc:
        raise FieldError(f"{source}: {exc.field}", exc.problem) from exc


def load_envelope_yaml(path: str | Path) -> envelope_pb2.EnvelopeBody:
    """Read, parse and validate an envelope body from a YAML file.

    Raises
    ------
    ConfigError
        Naming the file (missing, unreadable, not YAML) and the field at fault.
    """
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{p}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{p}: cannot read ({exc})") from exc
    return body_from_yaml(text, str(p))


def body_to_yaml(body: envelope_pb2.EnvelopeBody) -> str:
    """The YAML form of an envelope body (no comments; see :func:`example_envelope_yaml`)."""
    return yaml.safe_dump(body_to_dict(body), sort_keys=False, default_flow_style=False)


def _rfc3339(seconds: int) -> str:
    ts = timestamp_pb2.Timestamp(seconds=seconds)
    return ts.ToJsonString()


def example_envelope_yaml(
    domain: str,
    *,
    kind: str = "network",
    now: float | None = None,
    valid_for_s: float = 30 * 86400.0,
    sequence: int = 1,
) -> str:
    """A complete, valid envelope for ``domain`` as commented YAML (every field, units in comments).

    Parameters
    ----------
    domain
        The publishing domain id (also the key file name ``NAME.key``).
    kind
        ``"network"`` (a link / slice) or ``"compute"`` (hosts models: has ``model.inference``).
    now
        Unix time, s; ``issued_at`` and ``not_before`` (whole seconds). Default: the current time.
    valid_for_s
        Validity, s: ``not_after = not_before + valid_for_s``.
    sequence
        ``header.sequence``, >= 1.

    Raises
    ------
    InputError
        For a bad domain id or kind.
    """
    check_domain_id(domain, "--domain")
    kind = kind.lower()
    if kind not in ("network", "compute"):
        raise ConfigError(f"kind(={kind!r}) must be 'network' or 'compute'")
    start = int(time.time() if now is None else now)
    issued, nbf, naf = _rfc3339(start), _rfc3339(start), _rfc3339(start + int(valid_for_s))
    if kind == "network":
        kind_name, service, rate, latency, prop, loss = "NETWORK", "RATE_LATENCY", "1.0e+9", "0.0005", "0.002", "1.0e-5"
        capacity, min_rate, max_rate, burst, ceiling = "8.0e+8", "1.0e+6", "2.0e+8", "1.2e+6", "0.05"
        inference = """\
  # inference:                   # COMPUTE domains only (must be absent for NETWORK):
  #   distribution: LOGNORMAL    #   EXPONENTIAL | LOGNORMAL | EMPIRICAL
  #   mean_s: 0.008              #   mean inference latency per request, s, > 0
  #   sigma_log: 0.5             #   LOGNORMAL only: log-standard deviation, > 0 (else 0)
  #   quantiles_s: []            #   EMPIRICAL only: latency quantiles at equally spaced levels, s, non-decreasing
  #   error_probability: 0.01    #   probability an inference answer is wrong, in [0, 1)
"""
    else:
        kind_name, service, rate, latency, prop, loss = "COMPUTE", "EXPONENTIAL_SERVICE", "4.0e+8", "0.001", "0.0001", "1.0e-6"
        capacity, min_rate, max_rate, burst, ceiling = "3.2e+8", "1.0e+5", "8.0e+7", "4.0e+5", "0.2"
        inference = """\
  inference:                     # COMPUTE domains only (must be absent for NETWORK):
    distribution: LOGNORMAL      # EXPONENTIAL | LOGNORMAL | EMPIRICAL
    mean_s: 0.008                # mean inference latency per request, s, > 0
    sigma_log: 0.5               # LOGNORMAL only: log-standard deviation, > 0 (else 0)
    quantiles_s: []              # EMPIRICAL only: latency quantiles at equally spaced levels, s, non-decreasing
    error_probability: 0.01      # probability an inference answer is wrong, in [0, 1)
"""
    return _align_comments(f"""\
# Tail-Risk Envelope (trefed.v1.EnvelopeBody) of domain "{domain}".
# Units: seconds (s), bits, bits per second (bits/s); probabilities are plain numbers.
# Sign it:   trefed tre sign THIS.yaml --key KEYDIR/{domain}.key --out {domain}.tre
header:
  domain_id: "{domain}"          # the publishing domain; must be the NAME of the signing key file NAME.key
  tre_id: "{domain}/gold"        # the service class this envelope describes
  sequence: {sequence}                    # version, >= 1; must grow with every re-publication (replays are rejected)
  kind: {kind_name}                  # NETWORK (access, transport) or COMPUTE (hosts models)
  issued_at: "{issued}"    # RFC 3339 with offset: when the envelope was signed
  not_before: "{nbf}"   # RFC 3339: valid from (inclusive)
  not_after: "{naf}"    # RFC 3339: valid until (exclusive); after not_before
  key_id: ""                     # set by `trefed tre sign` to the signing key's id (DOMAIN-fingerprint)
guardrails:                      # hard limits the domain enforces
  reservable_capacity_bps: {capacity}  # total rate all tenants may reserve, bits/s, > 0, <= model.rate_bps
  min_tenant_rate_bps: {min_rate}      # smallest reservation accepted, bits/s, >= 0
  max_tenant_rate_bps: {max_rate}      # largest reservation of one tenant, bits/s, > 0, <= reservable_capacity_bps
  max_burst_bits: {burst}           # largest token-bucket burst accepted from a tenant, bits, >= 0
  latency_ceiling_s: {ceiling}           # hard latency ceiling, s: later packets are dropped (count as lost)
  loss_ceiling: 1.0e-3              # largest loss probability the domain will ever show, in [0, 1)
model:                           # the stochastic promise
  service: {service}          # RATE_LATENCY | EXPONENTIAL_SERVICE | TABULATED_MGF
  rate_bps: {rate}                # service rate R of the class, bits/s, > 0 (tenant reservations partition it)
  latency_s: {latency}               # scheduler latency T of the rate-latency service, s, >= 0
  mgf: []                        # TABULATED_MGF only: [{{theta: 1/bits > 0, rate_bps: bits/s, sigma_bits: bits}}, ...]
  propagation_delay_s: {prop}      # constant propagation delay, s, >= 0
  loss_probability: {loss}        # probability a packet is lost, in [0, 1), <= guardrails.loss_ceiling
{inference}labels:                          # free-form annotations (strings); signed too
  operator: "example-operator"
  region: "eu-west"
""")


def _align_comments(text: str, column: int = 38) -> str:
    """Align the trailing ``# comment`` of every YAML line (also of commented-out lines) at ``column``."""
    out = []
    for line in text.splitlines():
        stripped = line.lstrip()
        start = 2 if stripped.startswith("# ") and " # " in stripped[2:] else 0
        indent = len(line) - len(stripped)
        cut = stripped.find(" #", start)
        if (stripped.startswith("#") and start == 0) or cut < 0:
            out.append(line)
            continue
        code = line[: indent + cut].rstrip()
        out.append(f"{code.ljust(column - 1)} {stripped[cut:].lstrip()}")
    return "\n".join(out) + "\n"


def example_body(
    domain: str,
    *,
    kind: str = "network",
    now: float | None = None,
    valid_for_s: float = 30 * 86400.0,
    sequence: int = 1,
) -> envelope_pb2.EnvelopeBody:
    """The body of :func:`example_envelope_yaml` (same parameters), parsed and validated."""
    return body_from_yaml(
        example_envelope_yaml(domain, kind=kind, now=now, valid_for_s=valid_for_s, sequence=sequence),
        f"example envelope of {domain!r}",
    )
