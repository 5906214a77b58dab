"""Tail-Risk Envelope bodies as YAML files, and the commented example every field is explained in.

The YAML form is the mapping form of :mod:`federation.tre.codec` (field for field the protobuf
message): enums by name, timestamps as RFC 3339 strings with an explicit offset
(``2026-11-27T00:00:00Z``), durations in seconds, sizes in bits, rates in bits/s, probabilities as
plain numbers. See :func:`example_envelope_yaml`. Loading validates every field
(:func:`federation.tre.validate.validate_body`), so a file that loads also signs and verifies.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import yaml
from trefed.v1 import envelope_pb2

from federation.errors import ConfigError, FieldError
from federation.tre.codec import body_from_dict, body_to_dict
from federation.tre.validate import TIMESTAMP_MAX_S, check_domain_id, format_rfc3339, timestamp_from_seconds

__all__ = [
    "body_from_yaml",
    "body_to_yaml",
    "example_body",
    "example_envelope_yaml",
    "load_envelope_yaml",
]


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
    except RecursionError:
        raise ConfigError(f"{source}: not an envelope: YAML nested too deeply") from None
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
        Validity, s, >= 1: ``not_after = not_before + valid_for_s`` (whole seconds, truncated).
    sequence
        ``header.sequence``, >= 1.

    Raises
    ------
    InputError
        For a bad domain id or kind; :class:`~federation.errors.FieldError` for a ``now`` or
        ``valid_for_s`` whose timestamps a ``google.protobuf.Timestamp`` cannot hold (years
        0001-9999) or a validity under one second.
    """
    check_domain_id(domain, "--domain")
    kind = kind.lower()
    if kind not in ("network", "compute"):
        raise ConfigError(f"kind(={kind!r}) must be 'network' or 'compute'")
    t = time.time() if now is None else now
    timestamp_from_seconds(t, "now")  # the range check
    start = int(t)
    if not (math.isfinite(valid_for_s) and valid_for_s >= 1):
        raise FieldError("valid_for_s", f"(={valid_for_s!r}) must be >= 1 s (the example's timestamps are whole seconds)")
    if start + valid_for_s > TIMESTAMP_MAX_S:
        raise FieldError("valid_for_s", f"(={valid_for_s!r}) puts header.not_after after year 9999")
    issued = nbf = format_rfc3339(start)
    naf = format_rfc3339(start + int(valid_for_s))
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
