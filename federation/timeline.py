"""What happens during a run: the ``run:`` section of a federation config.

``trefed run CONFIG --out DIR`` admits the config's tenants, sends their traffic through the data
plane for ``duration_s`` seconds of simulated time, lets every domain report its signed telemetry
and has the auditor judge it. This section says how long, with which schedulers, which impairments
strike which domain when, which control-plane events happen (a domain controller crashing and
restarting; a domain republishing its envelope with other guardrails, or revoking it) and which
domain lies in its telemetry. Tenants arrive and leave through their own ``start_s`` / ``hold_s``
(:class:`~federation.config.TenantConfig`).

Units: seconds (s) of simulated time since the start of the run, bits/s, probabilities in [0, 1].
Domains are named by id; :class:`~federation.config.FederationConfig` checks that they exist and
that every window lies within the run.

Schema::

    run:
      duration_s: 120.0          # simulated time of traffic, s (> 0)
      scale: 1.0                 # multiplies duration_s: paper-size runs without editing the windows' shape
      seed: 1                    # root seed of every random stream of the data plane
      scheduler: partition       # fifo | partition | wfq at every domain (schedulers: per-domain overrides)
      schedulers: {edge: wfq}
      admission_control: true    # false: a tenant the broker refuses is let in without a reservation
      confidence: 0.95           # level of every interval of the audit
      telemetry_batch_packets: 20000
      impairments: [{domain, kind: delay|spikes|degrade|outage|loss|error, start_s, end_s, value, prob}]
      events: [{at_s, kind: crash, domain, down_s},
               {at_s, kind: republish, domain, reservable_capacity_bps, max_tenant_rate_bps},
               {at_s, kind: revoke, domain}]
      liars: [{domain, under_report_s}]   # reports every egress this much earlier than it happened
"""

from __future__ import annotations

import math
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from federation.errors import FieldError

__all__ = [
    "IMPAIRMENT_KINDS",
    "ImpairmentConfig",
    "CrashEvent",
    "RepublishEvent",
    "RevokeEvent",
    "EventConfig",
    "LiarConfig",
    "RunSettings",
]

#: The impairment kinds (the data plane's :mod:`federation.dataplane.impairments`, same names).
IMPAIRMENT_KINDS: tuple[str, ...] = ("delay", "spikes", "degrade", "outage", "loss", "error")

_Pos = Annotated[float, Field(gt=0, allow_inf_nan=False)]
_NonNeg = Annotated[float, Field(ge=0, allow_inf_nan=False)]
_Id = Annotated[str, Field(min_length=1, max_length=128)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ImpairmentConfig(_Strict):
    """One impairment of ``domain`` during ``[start_s, end_s)`` s of simulated time.

    ``kind`` and ``value``: ``delay`` -- extra fixed delay ``value`` s on every packet leaving the
    domain's server in the window; ``spikes`` -- with probability ``prob`` an extra exponential delay
    of mean ``value`` s; ``degrade`` -- capacity times ``value`` in (0, 1]; ``outage`` -- capacity 0
    (``value`` unused); ``loss`` -- loss probability raised to ``value``; ``error`` -- inference error
    probability raised to ``value`` (compute domains).
    """

    domain: _Id
    kind: Literal["delay", "spikes", "degrade", "outage", "loss", "error"]
    start_s: _NonNeg
    end_s: _Pos
    value: _NonNeg = 0.0
    prob: Annotated[float, Field(ge=0, le=1)] = 1.0

    @model_validator(mode="after")
    def _shape(self) -> ImpairmentConfig:
        if not self.end_s > self.start_s:
            raise FieldError("end_s", f"(={self.end_s:g}) must be > start_s(={self.start_s:g})")
        v = self.value
        if self.kind in ("delay", "spikes") and not v > 0:
            raise FieldError("value", f"(={v:g}) must be a delay > 0 s for kind {self.kind!r}")
        if self.kind == "degrade" and not 0.0 < v <= 1.0:
            raise FieldError("value", f"(={v:g}) must be a capacity factor in (0, 1] for kind 'degrade'")
        if self.kind in ("loss", "error") and not v <= 1.0:
            raise FieldError("value", f"(={v:g}) must be a probability in [0, 1] for kind {self.kind!r}")
        return self


class CrashEvent(_Strict):
    """The controller of ``domain`` is killed at ``at_s`` and restarted ``down_s`` s later (on its
    reservation table): requests in between that need it fail; its data plane keeps forwarding."""

    kind: Literal["crash"] = "crash"
    at_s: _NonNeg
    domain: _Id
    down_s: _Pos = 1.0


class RepublishEvent(_Strict):
    """``domain``'s operator publishes a new envelope at ``at_s`` (the next sequence, signed with its
    key): the configured one with the guardrails given here changed (bits/s; the others as
    configured). Requests after it are admitted on it (the broker fetches it at its next envelope
    refresh); reservations already granted keep their rates. Lifts an earlier revocation."""

    kind: Literal["republish"] = "republish"
    at_s: _NonNeg
    domain: _Id
    reservable_capacity_bps: _Pos | None = None
    max_tenant_rate_bps: _Pos | None = None

    @property
    def guardrails(self) -> dict[str, float]:
        """The changed guardrail fields (envelope names) and their values."""
        return {k: v for k in ("reservable_capacity_bps", "max_tenant_rate_bps")
                if (v := getattr(self, k)) is not None}


class RevokeEvent(_Strict):
    """``domain``'s operator withdraws its envelope at ``at_s``, until a later ``republish``: the
    broker can no longer fetch it and the domain refuses new reservations, so requests over a path
    through it are refused; reservations already granted stand (their traffic flows)."""

    kind: Literal["revoke"] = "revoke"
    at_s: _NonNeg
    domain: _Id


EventConfig = Annotated[CrashEvent | RepublishEvent | RevokeEvent, Field(discriminator="kind")]


class LiarConfig(_Strict):
    """``domain`` under-reports: every egress time in its telemetry ``under_report_s`` s early
    (never before the ingress); its downstream neighbour's telemetry contradicts it."""

    domain: _Id
    under_report_s: _Pos


class RunSettings(_Strict):
    """The ``run:`` section (see the module docstring); s, bits/s."""

    duration_s: _Pos = 60.0
    scale: _Pos = 1.0
    seed: Annotated[int, Field(ge=0, le=2**63 - 1)] = 1
    scheduler: Literal["fifo", "partition", "wfq"] = "partition"
    schedulers: dict[_Id, Literal["fifo", "partition", "wfq"]] = Field(default_factory=dict)
    admission_control: bool = True
    confidence: Annotated[float, Field(gt=0, lt=1)] = 0.95
    telemetry_batch_packets: Annotated[int, Field(ge=100, le=1_000_000)] = 20_000
    impairments: tuple[ImpairmentConfig, ...] = ()
    events: tuple[EventConfig, ...] = ()
    liars: tuple[LiarConfig, ...] = ()

    @property
    def horizon_s(self) -> float:
        """Simulated time of the run, s: ``duration_s * scale``."""
        return self.duration_s * self.scale

    def scaled(self, t: float) -> float:
        """A time of the config (s, at ``scale`` 1) on the run's clock: ``t * scale``."""
        return t * self.scale

    def scheduler_of(self, domain_id: str) -> str:
        """The scheduler of ``domain_id`` (its override, else ``scheduler``)."""
        return self.schedulers.get(domain_id, self.scheduler)

    def check_domains(self, known: set[str], prefix: str = "run") -> None:
        """Every domain named in the section exists and every window lies within the run.

        Raises
        ------
        FieldError
            Naming the field, e.g. ``run.impairments[0].domain``.
        """
        def where(field: str) -> str:
            return f"{prefix}.{field}"

        for d in self.schedulers:
            if d not in known:
                raise FieldError(where(f"schedulers.{d}"), f"unknown domain {d!r}")
        def within(item: str, domain: str, time_field: str, t: float) -> None:
            if domain not in known:
                raise FieldError(where(f"{item}.domain"), f"unknown domain {domain!r}")
            if t >= self.duration_s:
                raise FieldError(where(f"{item}.{time_field}"),
                                 f"(={t:g}) must be < run.duration_s(={self.duration_s:g})")

        for i, imp in enumerate(self.impairments):
            within(f"impairments[{i}]", imp.domain, "start_s", imp.start_s)
        for i, ev in enumerate(self.events):
            within(f"events[{i}]", ev.domain, "at_s", ev.at_s)
        seen: set[str] = set()
        for i, liar in enumerate(self.liars):
            if liar.domain not in known:
                raise FieldError(where(f"liars[{i}].domain"), f"unknown domain {liar.domain!r}")
            if liar.domain in seen:
                raise FieldError(where(f"liars[{i}].domain"), f"domain {liar.domain!r} is listed twice")
            seen.add(liar.domain)
        if not math.isfinite(self.horizon_s):
            raise FieldError(where("scale"), f"(={self.scale:g}) times duration_s overflows")
