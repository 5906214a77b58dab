import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class SignatureAlgorithm(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SIGNATURE_ALGORITHM_UNSPECIFIED: _ClassVar[SignatureAlgorithm]
    ED25519: _ClassVar[SignatureAlgorithm]

class DomainKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    DOMAIN_KIND_UNSPECIFIED: _ClassVar[DomainKind]
    NETWORK: _ClassVar[DomainKind]
    COMPUTE: _ClassVar[DomainKind]

class ServiceKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SERVICE_KIND_UNSPECIFIED: _ClassVar[ServiceKind]
    RATE_LATENCY: _ClassVar[ServiceKind]
    EXPONENTIAL_SERVICE: _ClassVar[ServiceKind]
    TABULATED_MGF: _ClassVar[ServiceKind]
SIGNATURE_ALGORITHM_UNSPECIFIED: SignatureAlgorithm
ED25519: SignatureAlgorithm
DOMAIN_KIND_UNSPECIFIED: DomainKind
NETWORK: DomainKind
COMPUTE: DomainKind
SERVICE_KIND_UNSPECIFIED: ServiceKind
RATE_LATENCY: ServiceKind
EXPONENTIAL_SERVICE: ServiceKind
TABULATED_MGF: ServiceKind

class Signature(_message.Message):
    __slots__ = ("algorithm", "key_id", "signature")
    ALGORITHM_FIELD_NUMBER: _ClassVar[int]
    KEY_ID_FIELD_NUMBER: _ClassVar[int]
    SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    algorithm: SignatureAlgorithm
    key_id: str
    signature: bytes
    def __init__(self, algorithm: _Optional[_Union[SignatureAlgorithm, str]] = ..., key_id: _Optional[str] = ..., signature: _Optional[bytes] = ...) -> None: ...

class EnvelopeHeader(_message.Message):
    __slots__ = ("domain_id", "tre_id", "sequence", "issued_at", "not_before", "not_after", "key_id", "kind")
    DOMAIN_ID_FIELD_NUMBER: _ClassVar[int]
    TRE_ID_FIELD_NUMBER: _ClassVar[int]
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    ISSUED_AT_FIELD_NUMBER: _ClassVar[int]
    NOT_BEFORE_FIELD_NUMBER: _ClassVar[int]
    NOT_AFTER_FIELD_NUMBER: _ClassVar[int]
    KEY_ID_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    domain_id: str
    tre_id: str
    sequence: int
    issued_at: _timestamp_pb2.Timestamp
    not_before: _timestamp_pb2.Timestamp
    not_after: _timestamp_pb2.Timestamp
    key_id: str
    kind: DomainKind
    def __init__(self, domain_id: _Optional[str] = ..., tre_id: _Optional[str] = ..., sequence: _Optional[int] = ..., issued_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., not_before: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., not_after: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., key_id: _Optional[str] = ..., kind: _Optional[_Union[DomainKind, str]] = ...) -> None: ...

class Guardrails(_message.Message):
    __slots__ = ("reservable_capacity_bps", "min_tenant_rate_bps", "max_tenant_rate_bps", "max_burst_bits", "latency_ceiling_s", "loss_ceiling")
    RESERVABLE_CAPACITY_BPS_FIELD_NUMBER: _ClassVar[int]
    MIN_TENANT_RATE_BPS_FIELD_NUMBER: _ClassVar[int]
    MAX_TENANT_RATE_BPS_FIELD_NUMBER: _ClassVar[int]
    MAX_BURST_BITS_FIELD_NUMBER: _ClassVar[int]
    LATENCY_CEILING_S_FIELD_NUMBER: _ClassVar[int]
    LOSS_CEILING_FIELD_NUMBER: _ClassVar[int]
    reservable_capacity_bps: float
    min_tenant_rate_bps: float
    max_tenant_rate_bps: float
    max_burst_bits: float
    latency_ceiling_s: float
    loss_ceiling: float
    def __init__(self, reservable_capacity_bps: _Optional[float] = ..., min_tenant_rate_bps: _Optional[float] = ..., max_tenant_rate_bps: _Optional[float] = ..., max_burst_bits: _Optional[float] = ..., latency_ceiling_s: _Optional[float] = ..., loss_ceiling: _Optional[float] = ...) -> None: ...

class MgfPoint(_message.Message):
    __slots__ = ("theta", "rate_bps", "sigma_bits")
    THETA_FIELD_NUMBER: _ClassVar[int]
    RATE_BPS_FIELD_NUMBER: _ClassVar[int]
    SIGMA_BITS_FIELD_NUMBER: _ClassVar[int]
    theta: float
    rate_bps: float
    sigma_bits: float
    def __init__(self, theta: _Optional[float] = ..., rate_bps: _Optional[float] = ..., sigma_bits: _Optional[float] = ...) -> None: ...

class InferenceModel(_message.Message):
    __slots__ = ("distribution", "mean_s", "sigma_log", "quantiles_s", "error_probability")
    class Distribution(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        DISTRIBUTION_UNSPECIFIED: _ClassVar[InferenceModel.Distribution]
        EXPONENTIAL: _ClassVar[InferenceModel.Distribution]
        LOGNORMAL: _ClassVar[InferenceModel.Distribution]
        EMPIRICAL: _ClassVar[InferenceModel.Distribution]
    DISTRIBUTION_UNSPECIFIED: InferenceModel.Distribution
    EXPONENTIAL: InferenceModel.Distribution
    LOGNORMAL: InferenceModel.Distribution
    EMPIRICAL: InferenceModel.Distribution
    DISTRIBUTION_FIELD_NUMBER: _ClassVar[int]
    MEAN_S_FIELD_NUMBER: _ClassVar[int]
    SIGMA_LOG_FIELD_NUMBER: _ClassVar[int]
    QUANTILES_S_FIELD_NUMBER: _ClassVar[int]
    ERROR_PROBABILITY_FIELD_NUMBER: _ClassVar[int]
    distribution: InferenceModel.Distribution
    mean_s: float
    sigma_log: float
    quantiles_s: _containers.RepeatedScalarFieldContainer[float]
    error_probability: float
    def __init__(self, distribution: _Optional[_Union[InferenceModel.Distribution, str]] = ..., mean_s: _Optional[float] = ..., sigma_log: _Optional[float] = ..., quantiles_s: _Optional[_Iterable[float]] = ..., error_probability: _Optional[float] = ...) -> None: ...

class StochasticModel(_message.Message):
    __slots__ = ("service", "rate_bps", "latency_s", "mgf", "propagation_delay_s", "loss_probability", "inference")
    SERVICE_FIELD_NUMBER: _ClassVar[int]
    RATE_BPS_FIELD_NUMBER: _ClassVar[int]
    LATENCY_S_FIELD_NUMBER: _ClassVar[int]
    MGF_FIELD_NUMBER: _ClassVar[int]
    PROPAGATION_DELAY_S_FIELD_NUMBER: _ClassVar[int]
    LOSS_PROBABILITY_FIELD_NUMBER: _ClassVar[int]
    INFERENCE_FIELD_NUMBER: _ClassVar[int]
    service: ServiceKind
    rate_bps: float
    latency_s: float
    mgf: _containers.RepeatedCompositeFieldContainer[MgfPoint]
    propagation_delay_s: float
    loss_probability: float
    inference: InferenceModel
    def __init__(self, service: _Optional[_Union[ServiceKind, str]] = ..., rate_bps: _Optional[float] = ..., latency_s: _Optional[float] = ..., mgf: _Optional[_Iterable[_Union[MgfPoint, _Mapping]]] = ..., propagation_delay_s: _Optional[float] = ..., loss_probability: _Optional[float] = ..., inference: _Optional[_Union[InferenceModel, _Mapping]] = ...) -> None: ...

class EnvelopeBody(_message.Message):
    __slots__ = ("header", "guardrails", "model", "labels")
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    HEADER_FIELD_NUMBER: _ClassVar[int]
    GUARDRAILS_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    header: EnvelopeHeader
    guardrails: Guardrails
    model: StochasticModel
    labels: _containers.ScalarMap[str, str]
    def __init__(self, header: _Optional[_Union[EnvelopeHeader, _Mapping]] = ..., guardrails: _Optional[_Union[Guardrails, _Mapping]] = ..., model: _Optional[_Union[StochasticModel, _Mapping]] = ..., labels: _Optional[_Mapping[str, str]] = ...) -> None: ...

class TailRiskEnvelope(_message.Message):
    __slots__ = ("body", "signature")
    BODY_FIELD_NUMBER: _ClassVar[int]
    SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    body: bytes
    signature: Signature
    def __init__(self, body: _Optional[bytes] = ..., signature: _Optional[_Union[Signature, _Mapping]] = ...) -> None: ...
