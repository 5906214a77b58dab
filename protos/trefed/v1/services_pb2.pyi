import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from trefed.v1 import envelope_pb2 as _envelope_pb2
from trefed.v1 import reservation_pb2 as _reservation_pb2
from trefed.v1 import telemetry_pb2 as _telemetry_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class BatchItem(_message.Message):
    __slots__ = ("prepare", "commit", "abort", "release")
    PREPARE_FIELD_NUMBER: _ClassVar[int]
    COMMIT_FIELD_NUMBER: _ClassVar[int]
    ABORT_FIELD_NUMBER: _ClassVar[int]
    RELEASE_FIELD_NUMBER: _ClassVar[int]
    prepare: _reservation_pb2.PrepareRequest
    commit: _reservation_pb2.CommitRequest
    abort: _reservation_pb2.AbortRequest
    release: _reservation_pb2.ReleaseRequest
    def __init__(self, prepare: _Optional[_Union[_reservation_pb2.PrepareRequest, _Mapping]] = ..., commit: _Optional[_Union[_reservation_pb2.CommitRequest, _Mapping]] = ..., abort: _Optional[_Union[_reservation_pb2.AbortRequest, _Mapping]] = ..., release: _Optional[_Union[_reservation_pb2.ReleaseRequest, _Mapping]] = ...) -> None: ...

class BatchRequest(_message.Message):
    __slots__ = ("items",)
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    items: _containers.RepeatedCompositeFieldContainer[BatchItem]
    def __init__(self, items: _Optional[_Iterable[_Union[BatchItem, _Mapping]]] = ...) -> None: ...

class BatchResult(_message.Message):
    __slots__ = ("code", "message", "prepare", "commit", "abort", "release")
    CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    PREPARE_FIELD_NUMBER: _ClassVar[int]
    COMMIT_FIELD_NUMBER: _ClassVar[int]
    ABORT_FIELD_NUMBER: _ClassVar[int]
    RELEASE_FIELD_NUMBER: _ClassVar[int]
    code: int
    message: str
    prepare: _reservation_pb2.PrepareResponse
    commit: _reservation_pb2.SignedGrant
    abort: _reservation_pb2.AbortResponse
    release: _reservation_pb2.ReleaseResponse
    def __init__(self, code: _Optional[int] = ..., message: _Optional[str] = ..., prepare: _Optional[_Union[_reservation_pb2.PrepareResponse, _Mapping]] = ..., commit: _Optional[_Union[_reservation_pb2.SignedGrant, _Mapping]] = ..., abort: _Optional[_Union[_reservation_pb2.AbortResponse, _Mapping]] = ..., release: _Optional[_Union[_reservation_pb2.ReleaseResponse, _Mapping]] = ...) -> None: ...

class BatchResponse(_message.Message):
    __slots__ = ("results",)
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[BatchResult]
    def __init__(self, results: _Optional[_Iterable[_Union[BatchResult, _Mapping]]] = ...) -> None: ...

class GetEnvelopeRequest(_message.Message):
    __slots__ = ("tre_id",)
    TRE_ID_FIELD_NUMBER: _ClassVar[int]
    tre_id: str
    def __init__(self, tre_id: _Optional[str] = ...) -> None: ...

class GetStatusRequest(_message.Message):
    __slots__ = ("include_reservations",)
    INCLUDE_RESERVATIONS_FIELD_NUMBER: _ClassVar[int]
    include_reservations: bool
    def __init__(self, include_reservations: _Optional[bool] = ...) -> None: ...

class DomainStatus(_message.Message):
    __slots__ = ("domain_id", "reservable_capacity_bps", "committed_bps", "prepared_bps", "available_bps", "reservations")
    DOMAIN_ID_FIELD_NUMBER: _ClassVar[int]
    RESERVABLE_CAPACITY_BPS_FIELD_NUMBER: _ClassVar[int]
    COMMITTED_BPS_FIELD_NUMBER: _ClassVar[int]
    PREPARED_BPS_FIELD_NUMBER: _ClassVar[int]
    AVAILABLE_BPS_FIELD_NUMBER: _ClassVar[int]
    RESERVATIONS_FIELD_NUMBER: _ClassVar[int]
    domain_id: str
    reservable_capacity_bps: float
    committed_bps: float
    prepared_bps: float
    available_bps: float
    reservations: _containers.RepeatedCompositeFieldContainer[_reservation_pb2.Reservation]
    def __init__(self, domain_id: _Optional[str] = ..., reservable_capacity_bps: _Optional[float] = ..., committed_bps: _Optional[float] = ..., prepared_bps: _Optional[float] = ..., available_bps: _Optional[float] = ..., reservations: _Optional[_Iterable[_Union[_reservation_pb2.Reservation, _Mapping]]] = ...) -> None: ...

class ListDomainKeysRequest(_message.Message):
    __slots__ = ("domain_id",)
    DOMAIN_ID_FIELD_NUMBER: _ClassVar[int]
    domain_id: str
    def __init__(self, domain_id: _Optional[str] = ...) -> None: ...

class DomainKey(_message.Message):
    __slots__ = ("domain_id", "key_id", "public_key", "algorithm")
    DOMAIN_ID_FIELD_NUMBER: _ClassVar[int]
    KEY_ID_FIELD_NUMBER: _ClassVar[int]
    PUBLIC_KEY_FIELD_NUMBER: _ClassVar[int]
    ALGORITHM_FIELD_NUMBER: _ClassVar[int]
    domain_id: str
    key_id: str
    public_key: bytes
    algorithm: _envelope_pb2.SignatureAlgorithm
    def __init__(self, domain_id: _Optional[str] = ..., key_id: _Optional[str] = ..., public_key: _Optional[bytes] = ..., algorithm: _Optional[_Union[_envelope_pb2.SignatureAlgorithm, str]] = ...) -> None: ...

class ListDomainKeysResponse(_message.Message):
    __slots__ = ("keys",)
    KEYS_FIELD_NUMBER: _ClassVar[int]
    keys: _containers.RepeatedCompositeFieldContainer[DomainKey]
    def __init__(self, keys: _Optional[_Iterable[_Union[DomainKey, _Mapping]]] = ...) -> None: ...

class TokenBucketTraffic(_message.Message):
    __slots__ = ("sigma_bits", "rho_bps")
    SIGMA_BITS_FIELD_NUMBER: _ClassVar[int]
    RHO_BPS_FIELD_NUMBER: _ClassVar[int]
    sigma_bits: float
    rho_bps: float
    def __init__(self, sigma_bits: _Optional[float] = ..., rho_bps: _Optional[float] = ...) -> None: ...

class PoissonTraffic(_message.Message):
    __slots__ = ("rate_pps", "mean_size_bits", "exponential_sizes")
    RATE_PPS_FIELD_NUMBER: _ClassVar[int]
    MEAN_SIZE_BITS_FIELD_NUMBER: _ClassVar[int]
    EXPONENTIAL_SIZES_FIELD_NUMBER: _ClassVar[int]
    rate_pps: float
    mean_size_bits: float
    exponential_sizes: bool
    def __init__(self, rate_pps: _Optional[float] = ..., mean_size_bits: _Optional[float] = ..., exponential_sizes: _Optional[bool] = ...) -> None: ...

class MmooTraffic(_message.Message):
    __slots__ = ("peak_bps", "mean_on_s", "mean_off_s", "sources", "correlated")
    PEAK_BPS_FIELD_NUMBER: _ClassVar[int]
    MEAN_ON_S_FIELD_NUMBER: _ClassVar[int]
    MEAN_OFF_S_FIELD_NUMBER: _ClassVar[int]
    SOURCES_FIELD_NUMBER: _ClassVar[int]
    CORRELATED_FIELD_NUMBER: _ClassVar[int]
    peak_bps: float
    mean_on_s: float
    mean_off_s: float
    sources: int
    correlated: bool
    def __init__(self, peak_bps: _Optional[float] = ..., mean_on_s: _Optional[float] = ..., mean_off_s: _Optional[float] = ..., sources: _Optional[int] = ..., correlated: _Optional[bool] = ...) -> None: ...

class TraceTraffic(_message.Message):
    __slots__ = ("sigma_bits", "rho_bps", "peak_bps", "mean_rate_bps", "mean_size_bits", "max_size_bits", "theta", "kappa", "beta")
    SIGMA_BITS_FIELD_NUMBER: _ClassVar[int]
    RHO_BPS_FIELD_NUMBER: _ClassVar[int]
    PEAK_BPS_FIELD_NUMBER: _ClassVar[int]
    MEAN_RATE_BPS_FIELD_NUMBER: _ClassVar[int]
    MEAN_SIZE_BITS_FIELD_NUMBER: _ClassVar[int]
    MAX_SIZE_BITS_FIELD_NUMBER: _ClassVar[int]
    THETA_FIELD_NUMBER: _ClassVar[int]
    KAPPA_FIELD_NUMBER: _ClassVar[int]
    BETA_FIELD_NUMBER: _ClassVar[int]
    sigma_bits: float
    rho_bps: float
    peak_bps: float
    mean_rate_bps: float
    mean_size_bits: float
    max_size_bits: float
    theta: _containers.RepeatedScalarFieldContainer[float]
    kappa: _containers.RepeatedScalarFieldContainer[float]
    beta: _containers.RepeatedScalarFieldContainer[float]
    def __init__(self, sigma_bits: _Optional[float] = ..., rho_bps: _Optional[float] = ..., peak_bps: _Optional[float] = ..., mean_rate_bps: _Optional[float] = ..., mean_size_bits: _Optional[float] = ..., max_size_bits: _Optional[float] = ..., theta: _Optional[_Iterable[float]] = ..., kappa: _Optional[_Iterable[float]] = ..., beta: _Optional[_Iterable[float]] = ...) -> None: ...

class TrafficEnvelope(_message.Message):
    __slots__ = ("token_bucket", "poisson", "mmoo", "trace")
    TOKEN_BUCKET_FIELD_NUMBER: _ClassVar[int]
    POISSON_FIELD_NUMBER: _ClassVar[int]
    MMOO_FIELD_NUMBER: _ClassVar[int]
    TRACE_FIELD_NUMBER: _ClassVar[int]
    token_bucket: TokenBucketTraffic
    poisson: PoissonTraffic
    mmoo: MmooTraffic
    trace: TraceTraffic
    def __init__(self, token_bucket: _Optional[_Union[TokenBucketTraffic, _Mapping]] = ..., poisson: _Optional[_Union[PoissonTraffic, _Mapping]] = ..., mmoo: _Optional[_Union[MmooTraffic, _Mapping]] = ..., trace: _Optional[_Union[TraceTraffic, _Mapping]] = ...) -> None: ...

class Intent(_message.Message):
    __slots__ = ("tenant_id", "task", "max_error_probability", "deadline_s", "epsilon", "traffic", "max_price", "access_domain")
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    TASK_FIELD_NUMBER: _ClassVar[int]
    MAX_ERROR_PROBABILITY_FIELD_NUMBER: _ClassVar[int]
    DEADLINE_S_FIELD_NUMBER: _ClassVar[int]
    EPSILON_FIELD_NUMBER: _ClassVar[int]
    TRAFFIC_FIELD_NUMBER: _ClassVar[int]
    MAX_PRICE_FIELD_NUMBER: _ClassVar[int]
    ACCESS_DOMAIN_FIELD_NUMBER: _ClassVar[int]
    tenant_id: str
    task: str
    max_error_probability: float
    deadline_s: float
    epsilon: float
    traffic: TrafficEnvelope
    max_price: float
    access_domain: str
    def __init__(self, tenant_id: _Optional[str] = ..., task: _Optional[str] = ..., max_error_probability: _Optional[float] = ..., deadline_s: _Optional[float] = ..., epsilon: _Optional[float] = ..., traffic: _Optional[_Union[TrafficEnvelope, _Mapping]] = ..., max_price: _Optional[float] = ..., access_domain: _Optional[str] = ...) -> None: ...

class ListModelsRequest(_message.Message):
    __slots__ = ("task",)
    TASK_FIELD_NUMBER: _ClassVar[int]
    task: str
    def __init__(self, task: _Optional[str] = ...) -> None: ...

class ModelInfo(_message.Message):
    __slots__ = ("model_id", "task", "error_probability", "latency", "compute_domain", "price_per_hour", "request_size_bits")
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    TASK_FIELD_NUMBER: _ClassVar[int]
    ERROR_PROBABILITY_FIELD_NUMBER: _ClassVar[int]
    LATENCY_FIELD_NUMBER: _ClassVar[int]
    COMPUTE_DOMAIN_FIELD_NUMBER: _ClassVar[int]
    PRICE_PER_HOUR_FIELD_NUMBER: _ClassVar[int]
    REQUEST_SIZE_BITS_FIELD_NUMBER: _ClassVar[int]
    model_id: str
    task: str
    error_probability: float
    latency: _envelope_pb2.InferenceModel
    compute_domain: str
    price_per_hour: float
    request_size_bits: float
    def __init__(self, model_id: _Optional[str] = ..., task: _Optional[str] = ..., error_probability: _Optional[float] = ..., latency: _Optional[_Union[_envelope_pb2.InferenceModel, _Mapping]] = ..., compute_domain: _Optional[str] = ..., price_per_hour: _Optional[float] = ..., request_size_bits: _Optional[float] = ...) -> None: ...

class ListModelsResponse(_message.Message):
    __slots__ = ("models",)
    MODELS_FIELD_NUMBER: _ClassVar[int]
    models: _containers.RepeatedCompositeFieldContainer[ModelInfo]
    def __init__(self, models: _Optional[_Iterable[_Union[ModelInfo, _Mapping]]] = ...) -> None: ...

class DomainBudget(_message.Message):
    __slots__ = ("domain_id", "delay_s", "epsilon", "rate_bps", "tre_id", "tre_sequence")
    DOMAIN_ID_FIELD_NUMBER: _ClassVar[int]
    DELAY_S_FIELD_NUMBER: _ClassVar[int]
    EPSILON_FIELD_NUMBER: _ClassVar[int]
    RATE_BPS_FIELD_NUMBER: _ClassVar[int]
    TRE_ID_FIELD_NUMBER: _ClassVar[int]
    TRE_SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    domain_id: str
    delay_s: float
    epsilon: float
    rate_bps: float
    tre_id: str
    tre_sequence: int
    def __init__(self, domain_id: _Optional[str] = ..., delay_s: _Optional[float] = ..., epsilon: _Optional[float] = ..., rate_bps: _Optional[float] = ..., tre_id: _Optional[str] = ..., tre_sequence: _Optional[int] = ...) -> None: ...

class EndToEndBound(_message.Message):
    __slots__ = ("delay_s", "epsilon_delay", "loss_probability", "error_probability", "epsilon_total", "theta", "method")
    DELAY_S_FIELD_NUMBER: _ClassVar[int]
    EPSILON_DELAY_FIELD_NUMBER: _ClassVar[int]
    LOSS_PROBABILITY_FIELD_NUMBER: _ClassVar[int]
    ERROR_PROBABILITY_FIELD_NUMBER: _ClassVar[int]
    EPSILON_TOTAL_FIELD_NUMBER: _ClassVar[int]
    THETA_FIELD_NUMBER: _ClassVar[int]
    METHOD_FIELD_NUMBER: _ClassVar[int]
    delay_s: float
    epsilon_delay: float
    loss_probability: float
    error_probability: float
    epsilon_total: float
    theta: float
    method: str
    def __init__(self, delay_s: _Optional[float] = ..., epsilon_delay: _Optional[float] = ..., loss_probability: _Optional[float] = ..., error_probability: _Optional[float] = ..., epsilon_total: _Optional[float] = ..., theta: _Optional[float] = ..., method: _Optional[str] = ...) -> None: ...

class Offer(_message.Message):
    __slots__ = ("offer_id", "model_id", "compute_domain", "path", "bound", "budgets", "price_per_hour", "admission")
    OFFER_ID_FIELD_NUMBER: _ClassVar[int]
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    COMPUTE_DOMAIN_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    BOUND_FIELD_NUMBER: _ClassVar[int]
    BUDGETS_FIELD_NUMBER: _ClassVar[int]
    PRICE_PER_HOUR_FIELD_NUMBER: _ClassVar[int]
    ADMISSION_FIELD_NUMBER: _ClassVar[int]
    offer_id: str
    model_id: str
    compute_domain: str
    path: _containers.RepeatedScalarFieldContainer[str]
    bound: EndToEndBound
    budgets: _containers.RepeatedCompositeFieldContainer[DomainBudget]
    price_per_hour: float
    admission: str
    def __init__(self, offer_id: _Optional[str] = ..., model_id: _Optional[str] = ..., compute_domain: _Optional[str] = ..., path: _Optional[_Iterable[str]] = ..., bound: _Optional[_Union[EndToEndBound, _Mapping]] = ..., budgets: _Optional[_Iterable[_Union[DomainBudget, _Mapping]]] = ..., price_per_hour: _Optional[float] = ..., admission: _Optional[str] = ...) -> None: ...

class ResolveIntentResponse(_message.Message):
    __slots__ = ("offers", "rejections")
    OFFERS_FIELD_NUMBER: _ClassVar[int]
    REJECTIONS_FIELD_NUMBER: _ClassVar[int]
    offers: _containers.RepeatedCompositeFieldContainer[Offer]
    rejections: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, offers: _Optional[_Iterable[_Union[Offer, _Mapping]]] = ..., rejections: _Optional[_Iterable[str]] = ...) -> None: ...

class ServiceRequest(_message.Message):
    __slots__ = ("request_id", "intent", "offer_id")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    INTENT_FIELD_NUMBER: _ClassVar[int]
    OFFER_ID_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    intent: Intent
    offer_id: str
    def __init__(self, request_id: _Optional[str] = ..., intent: _Optional[_Union[Intent, _Mapping]] = ..., offer_id: _Optional[str] = ...) -> None: ...

class ServiceContract(_message.Message):
    __slots__ = ("contract_id", "tenant_id", "offer", "grants", "created_at", "released", "releasing")
    CONTRACT_ID_FIELD_NUMBER: _ClassVar[int]
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    OFFER_FIELD_NUMBER: _ClassVar[int]
    GRANTS_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    RELEASED_FIELD_NUMBER: _ClassVar[int]
    RELEASING_FIELD_NUMBER: _ClassVar[int]
    contract_id: str
    tenant_id: str
    offer: Offer
    grants: _containers.RepeatedCompositeFieldContainer[_reservation_pb2.SignedGrant]
    created_at: _timestamp_pb2.Timestamp
    released: bool
    releasing: bool
    def __init__(self, contract_id: _Optional[str] = ..., tenant_id: _Optional[str] = ..., offer: _Optional[_Union[Offer, _Mapping]] = ..., grants: _Optional[_Iterable[_Union[_reservation_pb2.SignedGrant, _Mapping]]] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., released: _Optional[bool] = ..., releasing: _Optional[bool] = ...) -> None: ...

class ReleaseServiceRequest(_message.Message):
    __slots__ = ("request_id", "contract_id")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    CONTRACT_ID_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    contract_id: str
    def __init__(self, request_id: _Optional[str] = ..., contract_id: _Optional[str] = ...) -> None: ...

class ReleaseServiceResponse(_message.Message):
    __slots__ = ("contract_id", "released")
    CONTRACT_ID_FIELD_NUMBER: _ClassVar[int]
    RELEASED_FIELD_NUMBER: _ClassVar[int]
    contract_id: str
    released: bool
    def __init__(self, contract_id: _Optional[str] = ..., released: _Optional[bool] = ...) -> None: ...

class GetContractRequest(_message.Message):
    __slots__ = ("contract_id",)
    CONTRACT_ID_FIELD_NUMBER: _ClassVar[int]
    contract_id: str
    def __init__(self, contract_id: _Optional[str] = ...) -> None: ...

class SubmitTelemetryResponse(_message.Message):
    __slots__ = ("accepted", "reason", "packets_total")
    ACCEPTED_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    PACKETS_TOTAL_FIELD_NUMBER: _ClassVar[int]
    accepted: bool
    reason: str
    packets_total: int
    def __init__(self, accepted: _Optional[bool] = ..., reason: _Optional[str] = ..., packets_total: _Optional[int] = ...) -> None: ...

class ReportRequest(_message.Message):
    __slots__ = ("contract_id", "confidence")
    CONTRACT_ID_FIELD_NUMBER: _ClassVar[int]
    CONFIDENCE_FIELD_NUMBER: _ClassVar[int]
    contract_id: str
    confidence: float
    def __init__(self, contract_id: _Optional[str] = ..., confidence: _Optional[float] = ...) -> None: ...
