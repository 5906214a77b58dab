"""Federation configs: domains, the domain graph, the model catalogue, tenants, keys, broker settings.

A config is a YAML file validated by pydantic v2 models; every error is a
:class:`~federation.errors.ConfigError` whose message names the field path, e.g.
``tenants[2].intent.deadline_s: must be > 0``. The models mirror the wire protocol
(``protos/trefed/v1/envelope.proto``, ``services.proto``) and convert to it:
:meth:`DomainConfig.envelope_body`, :meth:`ModelConfig.to_proto`, :meth:`IntentConfig.to_proto`.

The fields a domain's envelope carries (ids, validity, guardrails, model, inference, labels)
are checked by the envelope's own rules (:mod:`federation.tre.validate`), under the config's
path: ``domains[0].guardrails.max_tenant_rate_bps(=1e+12) must be <= reservable_capacity_bps(...)``.
Everything that would stop ``trefed run`` later is refused here, before any agent starts:
``validity_s`` outside [1 s, 10 years] (:func:`~federation.tre.validate.check_validity`),
``broker.hold_timeout_s`` above the domains' cap :data:`~federation.tre.validate.MAX_HOLD_S`,
``broker.rpc_timeout_s`` above ``hold_timeout_s``, a ``keys_dir`` that cannot hold key files,
a file that is not UTF-8 YAML.

Units: seconds (s), bits, bits per second (bps); probabilities in [0, 1]; prices per hour.

One module (about 630 lines) because the schema is one tree: the models below cross-check each
other (links name domains, models name their compute domain, tenants their access domain and task)
in the root's validator, and a reader finds every field of a config file here, in file order.

Schema (``configs/quickstart.yaml`` is a complete example)::

    name: str
    keys_dir: path | null          # NAME.key (PEM, private) per domain; generated when absent
    broker: {hold_timeout_s (<= 3600), rpc_timeout_s (<= hold_timeout_s), max_offers, max_in_flight,
             envelope_refresh_s, admission, retention_s (>= hold_timeout_s)}
    domains: [ {id, kind: network|compute, tre_id, validity_s (1 .. 3.15576e8), price_per_mbps_hour, labels,
                guardrails: {reservable_capacity_bps, min_tenant_rate_bps, max_tenant_rate_bps,
                             max_burst_bits, latency_ceiling_s, loss_ceiling},
                model: {service: rate-latency|exponential, rate_bps, latency_s,
                        propagation_delay_s, loss_probability,
                        inference: {distribution, mean_s, sigma_log, quantiles_s, error_probability}}} ]
    links: [[a, b], ...]           # undirected edges of the domain graph
    models: [ {id, task, error_probability, latency: {distribution, mean_s, ...},
               compute_domain, price_per_hour, request_size_bits} ]
    tenants: [ {id, access, release_after: bool,
                intent: {task, max_error_probability, deadline_s, epsilon, max_price,
                         traffic: {kind: token-bucket, sigma_bits, rho_bps}
                                | {kind: poisson, rate_pps, mean_size_bits, exponential_sizes}
                                | {kind: mmoo, peak_bps, mean_on_s, mean_off_s, sources, correlated}
                                | {kind: trace, path, offset_s, loop, rho_bps}}} ]
    experiment: {kind, ...}        # optional: arms and a claim (federation/experiments_spec.py)

Paths: a tenant enters the federation at its ``access`` domain; a path is a simple path of the
(undirected) domain graph from there to the compute domain hosting a model, whose inner domains
are network domains (:meth:`FederationConfig.paths`).
"""

from __future__ import annotations

import math
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from trefed.v1 import envelope_pb2, services_pb2

from federation.errors import ConfigError, FieldError, InputError
from federation.experiments_spec import EXPERIMENT_KINDS, ExperimentSpec
from federation.timeline import RepublishEvent, RunSettings
from federation.tre.validate import (
    MAX_HOLD_S,
    check_domain_id,
    check_guardrails,
    check_inference,
    check_labels,
    check_model,
    check_tre_id,
    check_validity,
    timestamp_from_seconds,
)

if TYPE_CHECKING:
    from federation.calculus.arrivals import TabulatedArrival

__all__ = [
    "BrokerSettings",
    "GuardrailsConfig",
    "InferenceConfig",
    "ServiceModelConfig",
    "DomainConfig",
    "ModelConfig",
    "TokenBucketConfig",
    "PoissonConfig",
    "MmooConfig",
    "TraceConfig",
    "TrafficConfig",
    "IntentConfig",
    "TenantConfig",
    "FederationConfig",
    "load_config",
    "parse_config",
    "traffic_from_proto",
    "intent_from_proto",
]

_Pos = Annotated[float, Field(gt=0, allow_inf_nan=False)]
_NonNeg = Annotated[float, Field(ge=0, allow_inf_nan=False)]
_Prob = Annotated[float, Field(ge=0, lt=1)]
_OpenProb = Annotated[float, Field(gt=0, lt=1)]
_Id = Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.\-/]*$")]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class BrokerSettings(_Strict):
    """How the broker runs admissions.

    Attributes
    ----------
    hold_timeout_s : how long a domain holds a prepared reservation without a commit, s; in
        (0, :data:`~federation.tre.validate.MAX_HOLD_S`] (domains refuse longer holds).
    rpc_timeout_s : deadline of each broker -> domain call, s; in (0, ``hold_timeout_s``]: a hold
        must outlive the Prepare call the broker waits for (this also keeps the deadline far
        below what gRPC can represent: deadlines of ~1e10 s and more expire at once).
    max_offers : most offers returned by ResolveIntent (and tried by RequestService).
    max_in_flight : most admissions the broker runs concurrently (more wait their turn).
    envelope_refresh_s : how often the broker re-fetches (and re-verifies, when the sequence
        changed) every domain's TRE, s.
    retention_s : how long finished state is kept, s (default 604 800 = 7 days); >= ``hold_timeout_s``.
        Each domain deletes its finished reservations (released, expired, aborted) this long after
        their last change, and its logged responses past the same horizon (or its 24 h
        idempotency TTL, whichever is shorter); the broker deletes released contracts this long
        after their release, and answered request ids this long after the answer (its
        request-dedup window: a retry within it gets its contract, a later one is a new request).
        Active reservations and unreleased contracts are never deleted. The auditor fetches a
        contract from the broker when it builds a report, so a released contract can be audited
        for ``retention_s`` after its release and no longer: set it above the audit horizon.
    admission : the admission policy that sizes (and refuses) reservations, every one through the
        same resolution, two-phase reservation and signed grants (``agents.broker.plan``):

        * ``snc`` (default): stochastic network calculus -- the cheapest rates whose composed
          end-to-end bound meets ``P(D > d) <= eps_delay``, the risk budget split over the domains;
        * ``dnc``: deterministic network calculus -- a token-bucket arrival curve through
          rate-latency domains, admitted when the worst-case delay (bursts paid once) is within
          the deadline (:mod:`federation.calculus.dnc`); Poisson traffic has no deterministic
          envelope and is refused, MMOO is bounded by its peak rate;
        * ``peak-rate``: the tenant's peak rate reserved on every domain (a token bucket's: the
          rate that drains its burst within the deadline's slack, ``rho + sigma / slack``);
        * ``none``: no delay check (the overload baseline): the tenant's mean rate is reserved
          where capacity allows; a tenant the domains refuse is let in unreserved, as with
          ``run.admission_control: false``.
    """

    hold_timeout_s: _Pos = 5.0
    rpc_timeout_s: _Pos = 2.0
    max_offers: Annotated[int, Field(ge=1, le=100)] = 5
    max_in_flight: Annotated[int, Field(ge=1, le=10_000)] = 64
    envelope_refresh_s: _Pos = 2.0
    admission: Literal["snc", "dnc", "peak-rate", "none"] = "snc"
    retention_s: _Pos = 604_800.0

    @model_validator(mode="after")
    def _timeouts(self) -> BrokerSettings:
        if self.hold_timeout_s > MAX_HOLD_S:
            raise FieldError(
                "hold_timeout_s",
                f"(={self.hold_timeout_s!r}) must be <= {MAX_HOLD_S:g} s, the longest hold a domain grants",
            )
        if self.rpc_timeout_s > self.hold_timeout_s:
            raise FieldError(
                "rpc_timeout_s",
                f"(={self.rpc_timeout_s!r}) must be <= hold_timeout_s(={self.hold_timeout_s!r}): "
                "a hold must outlive the Prepare call the broker waits for",
            )
        if self.retention_s < self.hold_timeout_s:
            raise FieldError(
                "retention_s",
                f"(={self.retention_s!r}) must be >= hold_timeout_s(={self.hold_timeout_s!r}): "
                "a finished reservation must outlive any retry of its Prepare",
            )
        return self


class GuardrailsConfig(_Strict):
    """Deterministic guardrails of a domain (``envelope.proto`` Guardrails); bits/s, bits, s.

    The ranges are the envelope's (:func:`federation.tre.validate.check_guardrails`).
    """

    reservable_capacity_bps: float
    min_tenant_rate_bps: float = 0.0
    max_tenant_rate_bps: float
    max_burst_bits: float
    latency_ceiling_s: float
    loss_ceiling: float = 0.0

    @model_validator(mode="after")
    def _limits(self) -> GuardrailsConfig:
        check_guardrails(self.to_proto(), path="")
        return self

    def to_proto(self) -> envelope_pb2.Guardrails:
        return envelope_pb2.Guardrails(**self.model_dump())


_DISTRIBUTIONS = {
    "exponential": envelope_pb2.InferenceModel.EXPONENTIAL,
    "lognormal": envelope_pb2.InferenceModel.LOGNORMAL,
    "empirical": envelope_pb2.InferenceModel.EMPIRICAL,
}


class InferenceConfig(_Strict):
    """An inference-latency profile (``envelope.proto`` InferenceModel); seconds.

    The ranges are the envelope's (:func:`federation.tre.validate.check_inference`).
    """

    distribution: Literal["exponential", "lognormal", "empirical"] = "exponential"
    mean_s: float
    sigma_log: float = 0.0
    quantiles_s: tuple[float, ...] = ()
    error_probability: float = 0.0

    @model_validator(mode="after")
    def _shape(self) -> InferenceConfig:
        check_inference(self.to_proto(), path="")
        return self

    def to_proto(self) -> envelope_pb2.InferenceModel:
        return envelope_pb2.InferenceModel(
            distribution=_DISTRIBUTIONS[self.distribution],
            mean_s=self.mean_s,
            sigma_log=self.sigma_log,
            quantiles_s=list(self.quantiles_s),
            error_probability=self.error_probability,
        )


class ServiceModelConfig(_Strict):
    """The stochastic model of a domain (``envelope.proto`` StochasticModel); bits/s, s.

    The ranges are the envelope's, checked with the domain's guardrails and kind by
    :class:`DomainConfig` (:func:`federation.tre.validate.check_model`).
    """

    service: Literal["rate-latency", "exponential"] = "rate-latency"
    rate_bps: float
    latency_s: float = 0.0
    propagation_delay_s: float = 0.0
    loss_probability: float = 0.0
    inference: InferenceConfig | None = None

    def to_proto(self) -> envelope_pb2.StochasticModel:
        kind = envelope_pb2.RATE_LATENCY if self.service == "rate-latency" else envelope_pb2.EXPONENTIAL_SERVICE
        msg = envelope_pb2.StochasticModel(service=kind, **self.model_dump(exclude={"service", "inference"}))
        if self.inference is not None:
            msg.inference.CopyFrom(self.inference.to_proto())
        return msg


class DomainConfig(_Strict):
    """One domain: identity, guardrails, stochastic model, price of reserved rate.

    Every field the domain's envelope carries is checked by the envelope's own rules
    (:mod:`federation.tre.validate`): ``id`` a domain id, ``validity_s`` in
    [:data:`~federation.tre.validate.MIN_VALIDITY_S`, :data:`~federation.tre.validate.MAX_VALIDITY_S`]
    (:func:`~federation.tre.validate.check_validity` says why), ``guardrails``, ``model`` (with
    ``inference`` exactly for compute domains) and ``labels``; so a config that loads publishes
    envelopes that sign and verify.
    """

    id: str
    kind: Literal["network", "compute"]
    tre_id: str = ""
    validity_s: float = 3600.0
    price_per_mbps_hour: _NonNeg = 0.0
    labels: dict[str, str] = Field(default_factory=dict)
    guardrails: GuardrailsConfig
    model: ServiceModelConfig

    @model_validator(mode="after")
    def _consistent(self) -> DomainConfig:
        check_domain_id(self.id, "id")
        check_tre_id(self.service_class, "tre_id")
        check_validity(self.validity_s, "validity_s")
        kind = envelope_pb2.NETWORK if self.kind == "network" else envelope_pb2.COMPUTE
        check_model(self.model.to_proto(), self.guardrails.to_proto(), kind, path="model", guardrails_path="guardrails")
        check_labels(self.labels, "labels")
        return self

    @property
    def service_class(self) -> str:
        """The TRE id (service class); ``ID/default`` when not configured."""
        return self.tre_id or f"{self.id}/default"

    def envelope_body(
        self, key_id: str, *, sequence: int = 1, now: float | None = None
    ) -> envelope_pb2.EnvelopeBody:
        """The unsigned TRE body of this domain, valid from ``now`` for ``validity_s`` seconds."""
        now = time.time() if now is None else now
        start = timestamp_from_seconds(now, "now")
        end = timestamp_from_seconds(now + self.validity_s, "now + validity_s")
        header = envelope_pb2.EnvelopeHeader(
            domain_id=self.id,
            tre_id=self.service_class,
            sequence=sequence,
            issued_at=start,
            not_before=start,
            not_after=end,
            key_id=key_id,
            kind=envelope_pb2.NETWORK if self.kind == "network" else envelope_pb2.COMPUTE,
        )
        return envelope_pb2.EnvelopeBody(
            header=header,
            guardrails=self.guardrails.to_proto(),
            model=self.model.to_proto(),
            labels=dict(self.labels),
        )


class ModelConfig(_Strict):
    """A catalogue entry: an AI model hosted in a compute domain."""

    id: _Id
    task: Annotated[str, Field(min_length=1)]
    error_probability: _Prob
    latency: InferenceConfig
    compute_domain: _Id
    price_per_hour: _NonNeg = 0.0
    request_size_bits: _Pos = 8000.0

    def to_proto(self) -> services_pb2.ModelInfo:
        latency = self.latency.model_copy(update={"error_probability": self.error_probability})
        return services_pb2.ModelInfo(
            model_id=self.id,
            task=self.task,
            error_probability=self.error_probability,
            latency=latency.to_proto(),
            compute_domain=self.compute_domain,
            price_per_hour=self.price_per_hour,
            request_size_bits=self.request_size_bits,
        )


class TokenBucketConfig(_Strict):
    """A(s,t) <= sigma + rho (t-s): burst ``sigma_bits`` (bits), rate ``rho_bps`` (bits/s)."""

    kind: Literal["token-bucket"] = "token-bucket"
    sigma_bits: _NonNeg
    rho_bps: _Pos


class PoissonConfig(_Strict):
    """Poisson requests: ``rate_pps`` (1/s) of mean size ``mean_size_bits`` (bits)."""

    kind: Literal["poisson"] = "poisson"
    rate_pps: _Pos
    mean_size_bits: _Pos
    exponential_sizes: bool = False


class MmooConfig(_Strict):
    """``sources`` Markov on-off sources of ``peak_bps`` while on; mean on/off times in s."""

    kind: Literal["mmoo"] = "mmoo"
    peak_bps: _Pos
    mean_on_s: _Pos
    mean_off_s: _Pos
    sources: Annotated[int, Field(ge=1, le=100_000)] = 1
    correlated: bool = False


#: The fields of a :class:`TraceConfig` that the fit sets and the wire carries (``TraceTraffic``).
_TRACE_FITTED = ("sigma_bits", "peak_bps", "mean_rate_bps", "mean_size_bits", "max_size_bits", "theta", "kappa",
                 "beta")


class TraceConfig(_Strict):
    """Traffic from a trace file (schema ``trefed.trace/1``, :mod:`federation.trace.schema`).

    In a config: ``{kind: trace, path: FILE, offset_s: 0, loop: true, rho_bps: null}``. ``path``
    is relative to the config file's directory; ``offset_s`` (s) is where in the trace the
    tenant's replay starts (its own time 0); ``loop`` replays it in a loop (period: the trace's
    ``duration_s``), else the tenant falls silent at the trace's end; ``rho_bps`` (bits/s) is
    the rate of its token bucket (default: twice the trace's mean rate, at most its peak).

    The trace is read and fitted when the config is loaded (:func:`federation.trace.fit.fit_trace`;
    traces of one file are read once per config), which sets the fitted fields -- what the
    intent carries on the wire (``services.proto`` ``TraceTraffic``; a wire intent has them and no
    ``path``): ``sigma_bits`` (bits) of the token bucket ``(sigma_bits, rho_bps)``, ``peak_bps``,
    ``mean_rate_bps`` (bits/s), ``mean_size_bits``, ``max_size_bits`` (bits) and the MGF envelope
    ``theta`` (1/bit), ``kappa`` (1/s), ``beta`` (:class:`~federation.calculus.arrivals.TabulatedArrival`
    checks it: finite, one length, theta increasing, effective bandwidths nondecreasing and at
    least the mean rate, beta >= 0). A file that cannot be read or fitted is an error naming the
    field ``path``, the file, and the row and column at fault.
    """

    kind: Literal["trace"] = "trace"
    path: Path | None = None
    offset_s: _NonNeg = 0.0
    loop: bool = True
    rho_bps: _Pos | None = None
    sigma_bits: _NonNeg | None = None
    peak_bps: Annotated[float, Field(gt=0)] | None = None
    mean_rate_bps: _Pos | None = None
    mean_size_bits: _Pos | None = None
    max_size_bits: _Pos | None = None
    theta: tuple[float, ...] = ()
    kappa: tuple[float, ...] = ()
    beta: tuple[float, ...] = ()

    @model_validator(mode="before")
    @classmethod
    def _fit(cls, data: Any, info: ValidationInfo) -> Any:
        if not isinstance(data, dict) or data.get("path") is None:
            return data
        given = [k for k in _TRACE_FITTED if k in data]
        if given:
            raise FieldError(given[0], "is fitted from the trace at path: do not give it")
        path = Path(str(data["path"])).expanduser()
        context = info.context if isinstance(info.context, dict) else {}
        base = context.get("base_dir")
        if not path.is_absolute() and base is not None:
            path = Path(base) / path
        rho = data.get("rho_bps")
        if rho is not None and (isinstance(rho, bool) or not isinstance(rho, int | float)):
            return data  # the field's own check names it
        cache = context.setdefault("trace_fits", {}) if isinstance(info.context, dict) else {}
        try:
            stat = path.stat()
            key = (str(path.resolve()), stat.st_mtime_ns, stat.st_size, rho)
        except OSError:
            key = (str(path), 0, 0, rho)
        if key not in cache:
            from federation.trace.fit import fit_trace
            from federation.trace.schema import read_trace

            try:
                fit = fit_trace(read_trace(path), rho_bps=rho)
            except InputError as exc:
                field = "rho_bps" if str(exc).startswith("rho_bps") else "path"
                raise FieldError(field, str(exc)) from None
            env = fit.envelope
            cache[key] = {"rho_bps": fit.rho_bps, "sigma_bits": fit.sigma_bits, "peak_bps": fit.peak_bps,
                          "mean_rate_bps": fit.mean_rate_bps, "mean_size_bits": fit.mean_size_bits,
                          "max_size_bits": fit.max_size_bits, "theta": env.theta, "kappa": env.kappa_values,
                          "beta": env.beta_values}
        return {**data, "path": path, **cache[key]}

    @model_validator(mode="after")
    def _envelope(self) -> TraceConfig:
        for name in ("rho_bps", *_TRACE_FITTED):
            value = getattr(self, name)
            if value is None or (isinstance(value, tuple) and not value):
                raise FieldError(name, "field required (a trace's fitted envelope; a config gives path instead)")
        assert self.sigma_bits is not None and self.rho_bps is not None  # checked above
        if self.rho_bps < (self.mean_rate_bps or 0.0) * (1 - 1e-12):
            raise FieldError("rho_bps", f"(={self.rho_bps!r}) must be >= mean_rate_bps(={self.mean_rate_bps!r})")
        try:
            self.arrival()
        except InputError as exc:
            word = str(exc).split("(", 1)[0].split("[", 1)[0].split(" ", 1)[0]
            name = {"kappa_values": "kappa", "beta_values": "beta", "peak_rate_bps": "peak_bps"}.get(word, word)
            raise FieldError(name if name in _TRACE_FITTED else "theta", str(exc)) from None
        return self

    def arrival(self) -> TabulatedArrival:
        """The fitted MGF envelope (:class:`~federation.calculus.arrivals.TabulatedArrival`)."""
        from federation.calculus.arrivals import TabulatedArrival

        return TabulatedArrival(
            theta=self.theta, kappa_values=self.kappa, beta_values=self.beta,
            mean_rate_bps=float(self.mean_rate_bps or 0.0), peak_rate_bps=float(self.peak_bps or 0.0),
            mean_size_bits=float(self.mean_size_bits or 0.0), max_size_bits=float(self.max_size_bits or 0.0),
        )

    def wire(self) -> dict[str, Any]:
        """The fields the wire's ``TraceTraffic`` carries."""
        return {k: getattr(self, k) for k in ("rho_bps", *_TRACE_FITTED)}


AnyTraffic = TokenBucketConfig | PoissonConfig | MmooConfig | TraceConfig
TrafficConfig = Annotated[AnyTraffic, Field(discriminator="kind")]


#: The wire name (``services.proto`` TrafficEnvelope oneof ``model``) of each traffic model.
_WIRE_TRAFFIC: dict[str, type[AnyTraffic]] = {
    "token_bucket": TokenBucketConfig,
    "poisson": PoissonConfig,
    "mmoo": MmooConfig,
    "trace": TraceConfig,
}


def _traffic_to_proto(t: AnyTraffic) -> services_pb2.TrafficEnvelope:
    which = next(name for name, cls in _WIRE_TRAFFIC.items() if isinstance(t, cls))
    fields = t.wire() if isinstance(t, TraceConfig) else t.model_dump(exclude={"kind"})
    return services_pb2.TrafficEnvelope(**{which: fields})


def traffic_from_proto(msg: services_pb2.TrafficEnvelope) -> AnyTraffic:
    """Validate a wire traffic envelope; raises ConfigError naming the field (``traffic.FIELD``)."""
    which = msg.WhichOneof("model")
    if which is None:
        raise ConfigError("intent.traffic: no traffic model given (token_bucket, poisson, mmoo or trace)")
    cls, wire = _WIRE_TRAFFIC[which], getattr(msg, which)
    names = ("rho_bps", *_TRACE_FITTED) if cls is TraceConfig else [f for f in cls.model_fields if f != "kind"]
    values = {f: getattr(wire, f) for f in names}
    if cls is TraceConfig:
        values = {k: tuple(v) if k in ("theta", "kappa", "beta") else v for k, v in values.items()}
    try:
        return cls(**values)
    except ValidationError as exc:
        raise ConfigError(_format_errors(exc, prefix=f"intent.traffic.{which}")) from None


class IntentConfig(_Strict):
    """What a tenant wants (``services.proto`` Intent); s, probabilities, price per hour."""

    task: Annotated[str, Field(min_length=1)]
    max_error_probability: _Prob = 0.0
    deadline_s: _Pos
    epsilon: _OpenProb
    max_price: _NonNeg = 0.0
    traffic: TrafficConfig

    def to_proto(self, tenant_id: str) -> services_pb2.Intent:
        return services_pb2.Intent(
            tenant_id=tenant_id,
            task=self.task,
            max_error_probability=self.max_error_probability,
            deadline_s=self.deadline_s,
            epsilon=self.epsilon,
            traffic=_traffic_to_proto(self.traffic),
            max_price=self.max_price,
        )


def intent_from_proto(msg: services_pb2.Intent) -> IntentConfig:
    """Validate a wire ``Intent``; raises ConfigError naming the field (``intent.FIELD``)."""
    traffic = traffic_from_proto(msg.traffic) if msg.HasField("traffic") else None
    if traffic is None:
        raise ConfigError("intent.traffic: field required")
    try:
        return IntentConfig(traffic=traffic, **{f: getattr(msg, f) for f in IntentConfig.model_fields if f != "traffic"})
    except ValidationError as exc:
        raise ConfigError(_format_errors(exc, prefix="intent")) from None


class TenantConfig(_Strict):
    """A tenant: where it enters the federation, what it wants, and when (s of the run's clock).

    ``start_s``: when it requests service; ``hold_s``: how long it holds its contract before
    releasing it (None: to the end of the run). In a file, ``replicas: N`` (with
    ``replica_interval_s``, s) stands for ``N`` copies named ``ID-1 .. ID-N``, the ``k``-th
    arriving ``(k - 1) * replica_interval_s`` after ``start_s``.
    """

    id: _Id
    access: _Id
    intent: IntentConfig
    release_after: bool = False
    start_s: _NonNeg = 0.0
    hold_s: _Pos | None = None


class FederationConfig(_Strict):
    """A whole federation. Cross-references are checked (unique ids, known domains)."""

    name: str = "federation"
    keys_dir: Path | None = None
    broker: BrokerSettings = Field(default_factory=BrokerSettings)
    domains: Annotated[tuple[DomainConfig, ...], Field(min_length=1)]
    links: tuple[tuple[_Id, _Id], ...] = ()
    models: Annotated[tuple[ModelConfig, ...], Field(min_length=1)]
    tenants: tuple[TenantConfig, ...] = ()
    run: RunSettings = Field(default_factory=RunSettings)
    experiment: ExperimentSpec | None = None

    @model_validator(mode="before")
    @classmethod
    def _replicas(cls, data: Any) -> Any:
        if isinstance(data, dict) and isinstance(data.get("tenants"), list | tuple):
            data = {**data, "tenants": _expand_replicas(data["tenants"])}
        return data

    @field_validator("domains")
    @classmethod
    def _unique_domains(cls, v: tuple[DomainConfig, ...]) -> tuple[DomainConfig, ...]:
        _unique([d.id for d in v], "id")
        return v

    @field_validator("models")
    @classmethod
    def _unique_models(cls, v: tuple[ModelConfig, ...]) -> tuple[ModelConfig, ...]:
        _unique([m.id for m in v], "id")
        return v

    @field_validator("tenants")
    @classmethod
    def _unique_tenants(cls, v: tuple[TenantConfig, ...]) -> tuple[TenantConfig, ...]:
        _unique([t.id for t in v], "id")
        return v

    @model_validator(mode="after")
    def _references(self) -> FederationConfig:
        kinds = {d.id: d.kind for d in self.domains}
        for i, (a, b) in enumerate(self.links):
            for j, end in enumerate((a, b)):
                if end not in kinds:
                    raise FieldError(f"links[{i}][{j}]", f"unknown domain {end!r}")
            if a == b:
                raise FieldError(f"links[{i}]", f"a link joins two different domains, got {a!r} twice")
        for i, m in enumerate(self.models):
            if kinds.get(m.compute_domain) != "compute":
                what = "unknown domain" if m.compute_domain not in kinds else "not a compute domain"
                raise FieldError(f"models[{i}].compute_domain", f"{what} {m.compute_domain!r}")
        for i, t in enumerate(self.tenants):
            if t.access not in kinds:
                raise FieldError(f"tenants[{i}].access", f"unknown domain {t.access!r}")
            if t.start_s >= self.run.duration_s:
                raise FieldError(f"tenants[{i}].start_s",
                                 f"(={t.start_s:g}) must be < run.duration_s(={self.run.duration_s:g})")
        self.run.check_domains(set(kinds))
        for i, ev in enumerate(self.run.events):  # a republished envelope must be a valid one
            if isinstance(ev, RepublishEvent) and ev.guardrails:
                g = self.domain(ev.domain).guardrails.to_proto()
                for name, value in ev.guardrails.items():
                    setattr(g, name, value)
                try:
                    check_guardrails(g)
                except ConfigError as exc:
                    raise FieldError(f"run.events[{i}]", f"the republished envelope of {ev.domain!r}: {exc}") from None
        if self.experiment is not None:
            self.experiment.check_refs(set(kinds), len(self.tenants))
        _check_prices(self)
        return self

    # ------------------------------------------------------------------ queries

    def domain(self, domain_id: str) -> DomainConfig:
        """The domain with this id (KeyError if unknown)."""
        for d in self.domains:
            if d.id == domain_id:
                return d
        raise KeyError(domain_id)

    def model(self, model_id: str) -> ModelConfig:
        """The catalogue entry with this id (KeyError if unknown)."""
        for m in self.models:
            if m.id == model_id:
                return m
        raise KeyError(model_id)

    def paths(self, source: str, target: str, max_paths: int = 16) -> list[tuple[str, ...]]:
        """Simple paths ``source -> target`` (inner domains network only), fewest hops first."""
        kinds = {d.id: d.kind for d in self.domains}
        if source not in kinds or target not in kinds:
            return []
        adj: dict[str, list[str]] = {d: [] for d in kinds}
        for a, b in self.links:
            adj[a].append(b)
            adj[b].append(a)
        found: list[tuple[str, ...]] = []

        def walk(node: str, trail: list[str]) -> None:
            if node == target:
                found.append(tuple(trail))
                return
            if kinds[node] != "network":
                return
            for nxt in sorted(adj[node]):
                if nxt not in trail:
                    trail.append(nxt)
                    walk(nxt, trail)
                    trail.pop()

        walk(source, [source])
        found.sort(key=lambda p: (len(p), p))
        return found[:max_paths]


_MAX_REPLICAS = 10_000


def _expand_replicas(tenants: list[Any] | tuple[Any, ...]) -> list[Any]:
    """Tenants with ``replicas: N`` as ``N`` tenants ``ID-1 .. ID-N`` (see :class:`TenantConfig`)."""
    out: list[Any] = []
    for i, t in enumerate(tenants):
        if not (isinstance(t, dict) and ("replicas" in t or "replica_interval_s" in t)):
            out.append(t)
            continue
        t = dict(t)
        n, gap = t.pop("replicas", 1), t.pop("replica_interval_s", 0.0)
        if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= _MAX_REPLICAS:
            raise FieldError(f"tenants[{i}].replicas", f"(={n!r}) must be a whole number in [1, {_MAX_REPLICAS}]")
        if isinstance(gap, bool) or not isinstance(gap, int | float) or not (math.isfinite(gap) and gap >= 0):
            raise FieldError(f"tenants[{i}].replica_interval_s", f"(={gap!r}) must be a number >= 0 (s)")
        start = t.get("start_s", 0.0)
        if isinstance(start, bool) or not isinstance(start, int | float):
            raise FieldError(f"tenants[{i}].start_s", f"(={start!r}) must be a number >= 0 (s)")
        for k in range(n):
            out.append({**t, "id": f"{t.get('id')}-{k + 1}", "start_s": start + k * gap})
    return out


def _check_prices(cfg: FederationConfig) -> None:
    """The dearest admission (every domain's reservable capacity at its price, plus the dearest
    model) must cost a finite price: an overflowing one is offered as ``inf`` (and breaks JSON)."""
    terms = [d.price_per_mbps_hour * d.guardrails.reservable_capacity_bps / 1e6 for d in cfg.domains]
    total = sum(terms) + max(m.price_per_hour for m in cfg.models)
    if not math.isfinite(total):
        i = max(range(len(terms)), key=terms.__getitem__)
        raise FieldError(
            f"domains[{i}].price_per_mbps_hour",
            f"(={cfg.domains[i].price_per_mbps_hour!r}) makes the price of an admission overflow "
            "(price x reservable capacity in Mb/s, summed over the domains, plus the dearest model)",
        )


def _unique(ids: list[str], field: str) -> None:
    seen: dict[str, int] = {}
    for i, x in enumerate(ids):
        if x in seen:
            raise FieldError(f"[{i}].{field}", f"duplicate id {x!r} (also at [{seen[x]}])")
        seen[x] = i


def _num(x: Any) -> str:
    return f"{x:g}" if isinstance(x, (int, float)) else str(x)


_MESSAGES = {
    "greater_than": lambda c: f"must be > {_num(c.get('gt'))}",
    "greater_than_equal": lambda c: f"must be >= {_num(c.get('ge'))}",
    "less_than": lambda c: f"must be < {_num(c.get('lt'))}",
    "less_than_equal": lambda c: f"must be <= {_num(c.get('le'))}",
    "missing": lambda c: "field required",
    "extra_forbidden": lambda c: "unknown field",
    "finite_number": lambda c: "must be a finite number",
}


def _loc_path(loc: tuple[Any, ...], prefix: str = "") -> str:
    out = prefix
    for i, part in enumerate(loc):
        if isinstance(part, int):
            out += f"[{part}]"
        elif part in ("token-bucket", "poisson", "mmoo", "trace") or (  # a union's tag: not a field
                part in EXPERIMENT_KINDS and i > 0 and loc[i - 1] == "experiment"):
            continue
        else:
            out += f".{part}" if out else str(part)
    return out


def _format_errors(exc: ValidationError, prefix: str = "") -> str:
    lines = []
    for err in exc.errors(include_url=False):
        path = _loc_path(tuple(err["loc"]), prefix)
        ctx = err.get("ctx") or {}
        inner = ctx.get("error")
        if isinstance(inner, FieldError):  # a rule of federation.tre.validate, or a cross-reference
            field = inner.field
            if field.startswith("[") or not path or not field:
                path = f"{path}{field}"
            else:
                path = f"{path}.{field}"
            lines.append(str(FieldError(path or "<root>", inner.problem)))
            continue
        if err["type"] in _MESSAGES:
            msg = _MESSAGES[err["type"]](ctx)
            if "input" in err and err["type"] not in ("missing", "extra_forbidden"):
                msg = f"{msg} (got {err['input']!r})"
        else:
            msg = str(err["msg"]).removeprefix("Value error, ")
        lines.append(f"{path or '<root>'}: {msg}")
    return "; ".join(lines)


def parse_config(data: Any, source: str = "<config>", base_dir: Path | None = None) -> FederationConfig:
    """Validate a parsed YAML document; raises :class:`ConfigError` naming the field path.

    A relative ``keys_dir`` is resolved against ``base_dir`` (the config file's directory), then
    checked on disk, so a federation does not fail to start on it.
    """
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a mapping at the top level, got {type(data).__name__}")
    try:
        cfg = FederationConfig.model_validate(data, context={"base_dir": base_dir, "trace_fits": {}})
    except ValidationError as exc:
        raise ConfigError(_format_errors(exc)) from None
    if cfg.keys_dir is not None and not cfg.keys_dir.is_absolute() and base_dir is not None:
        cfg = cfg.model_copy(update={"keys_dir": (base_dir / cfg.keys_dir)})
    if cfg.keys_dir is not None:
        _check_keys_dir(cfg.keys_dir, [d.id for d in cfg.domains])
    return cfg


def _check_keys_dir(path: Path, domains: list[str]) -> None:
    """Refuse (``FieldError`` naming ``keys_dir``) a keys dir the runner could not create or write
    the missing ``NAME.key``/``NAME.pub`` pairs in: a file, a path under a file, an unwritable
    directory, a ``NAME.key`` that is not a file."""
    shown = f"(={str(path)!r})"
    try:
        if not path.exists():
            parent = next(p for p in path.absolute().parents if p.exists())
            problem = "is not a directory" if not parent.is_dir() else "is not writable"
            if problem == "is not a directory" or not os.access(parent, os.W_OK | os.X_OK):
                raise FieldError("keys_dir", f"{shown} cannot be created: {parent} {problem}")
            return
        if not path.is_dir():
            raise FieldError("keys_dir", f"{shown} is not a directory")
        for d in domains:
            if (path / f"{d}.key").exists() and not (path / f"{d}.key").is_file():
                raise FieldError("keys_dir", f"{shown}: {d}.key is not a file")
        missing = [d for d in domains if not (path / f"{d}.key").exists()]
        if missing and not os.access(path, os.W_OK | os.X_OK):
            raise FieldError("keys_dir", f"{shown} is not writable, so the keys of {', '.join(missing)} cannot be created")
    except OSError as exc:
        raise FieldError("keys_dir", f"{shown} cannot be inspected ({exc.strerror or exc})") from None


def load_config(path: str | Path) -> FederationConfig:
    """Load and validate a YAML federation config; raises :class:`ConfigError` (an InputError).

    The message names the file when it cannot be read, is not UTF-8 text (a binary file) or not
    YAML, and the field path when a field is out of range.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read config ({exc.strerror or exc})") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"{path}: not a YAML config: not UTF-8 text (byte {exc.start} is {exc.object[exc.start]:#04x})"
        ) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({exc})") from None
    except RecursionError:
        raise ConfigError(f"{path}: not a YAML config: nested too deeply") from None
    return parse_config(data, source=str(path), base_dir=path.parent)
