import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from trefed.v1 import envelope_pb2 as _envelope_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Verdict(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    VERDICT_UNSPECIFIED: _ClassVar[Verdict]
    COMPLIANT: _ClassVar[Verdict]
    VIOLATING: _ClassVar[Verdict]
    INCONCLUSIVE: _ClassVar[Verdict]
VERDICT_UNSPECIFIED: Verdict
COMPLIANT: Verdict
VIOLATING: Verdict
INCONCLUSIVE: Verdict

class PacketColumns(_message.Message):
    __slots__ = ("packet_id", "tenant_index", "ingress_s", "egress_s", "lost", "error")
    PACKET_ID_FIELD_NUMBER: _ClassVar[int]
    TENANT_INDEX_FIELD_NUMBER: _ClassVar[int]
    INGRESS_S_FIELD_NUMBER: _ClassVar[int]
    EGRESS_S_FIELD_NUMBER: _ClassVar[int]
    LOST_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    packet_id: _containers.RepeatedScalarFieldContainer[int]
    tenant_index: _containers.RepeatedScalarFieldContainer[int]
    ingress_s: _containers.RepeatedScalarFieldContainer[float]
    egress_s: _containers.RepeatedScalarFieldContainer[float]
    lost: _containers.RepeatedScalarFieldContainer[bool]
    error: _containers.RepeatedScalarFieldContainer[bool]
    def __init__(self, packet_id: _Optional[_Iterable[int]] = ..., tenant_index: _Optional[_Iterable[int]] = ..., ingress_s: _Optional[_Iterable[float]] = ..., egress_s: _Optional[_Iterable[float]] = ..., lost: _Optional[_Iterable[bool]] = ..., error: _Optional[_Iterable[bool]] = ...) -> None: ...

class TelemetryBatchBody(_message.Message):
    __slots__ = ("domain_id", "batch_sequence", "previous_batch_sha256", "tenants", "window_start_s", "window_end_s", "packets", "reported_at", "key_id")
    DOMAIN_ID_FIELD_NUMBER: _ClassVar[int]
    BATCH_SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    PREVIOUS_BATCH_SHA256_FIELD_NUMBER: _ClassVar[int]
    TENANTS_FIELD_NUMBER: _ClassVar[int]
    WINDOW_START_S_FIELD_NUMBER: _ClassVar[int]
    WINDOW_END_S_FIELD_NUMBER: _ClassVar[int]
    PACKETS_FIELD_NUMBER: _ClassVar[int]
    REPORTED_AT_FIELD_NUMBER: _ClassVar[int]
    KEY_ID_FIELD_NUMBER: _ClassVar[int]
    domain_id: str
    batch_sequence: int
    previous_batch_sha256: bytes
    tenants: _containers.RepeatedScalarFieldContainer[str]
    window_start_s: float
    window_end_s: float
    packets: PacketColumns
    reported_at: _timestamp_pb2.Timestamp
    key_id: str
    def __init__(self, domain_id: _Optional[str] = ..., batch_sequence: _Optional[int] = ..., previous_batch_sha256: _Optional[bytes] = ..., tenants: _Optional[_Iterable[str]] = ..., window_start_s: _Optional[float] = ..., window_end_s: _Optional[float] = ..., packets: _Optional[_Union[PacketColumns, _Mapping]] = ..., reported_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., key_id: _Optional[str] = ...) -> None: ...

class SignedTelemetryBatch(_message.Message):
    __slots__ = ("body", "signature")
    BODY_FIELD_NUMBER: _ClassVar[int]
    SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    body: bytes
    signature: _envelope_pb2.Signature
    def __init__(self, body: _Optional[bytes] = ..., signature: _Optional[_Union[_envelope_pb2.Signature, _Mapping]] = ...) -> None: ...

class QuantileEstimate(_message.Message):
    __slots__ = ("level", "value_s", "ci_low_s", "ci_high_s", "confidence", "method")
    LEVEL_FIELD_NUMBER: _ClassVar[int]
    VALUE_S_FIELD_NUMBER: _ClassVar[int]
    CI_LOW_S_FIELD_NUMBER: _ClassVar[int]
    CI_HIGH_S_FIELD_NUMBER: _ClassVar[int]
    CONFIDENCE_FIELD_NUMBER: _ClassVar[int]
    METHOD_FIELD_NUMBER: _ClassVar[int]
    level: float
    value_s: float
    ci_low_s: float
    ci_high_s: float
    confidence: float
    method: str
    def __init__(self, level: _Optional[float] = ..., value_s: _Optional[float] = ..., ci_low_s: _Optional[float] = ..., ci_high_s: _Optional[float] = ..., confidence: _Optional[float] = ..., method: _Optional[str] = ...) -> None: ...

class DomainVerdict(_message.Message):
    __slots__ = ("domain_id", "verdict", "delay_budget_s", "epsilon", "packets", "exceedances", "exceedance_rate", "exceedance_ci_low", "exceedance_ci_high", "tail_risk_share", "delay_quantiles", "findings", "method", "effective_samples", "violations_attributed")
    DOMAIN_ID_FIELD_NUMBER: _ClassVar[int]
    VERDICT_FIELD_NUMBER: _ClassVar[int]
    DELAY_BUDGET_S_FIELD_NUMBER: _ClassVar[int]
    EPSILON_FIELD_NUMBER: _ClassVar[int]
    PACKETS_FIELD_NUMBER: _ClassVar[int]
    EXCEEDANCES_FIELD_NUMBER: _ClassVar[int]
    EXCEEDANCE_RATE_FIELD_NUMBER: _ClassVar[int]
    EXCEEDANCE_CI_LOW_FIELD_NUMBER: _ClassVar[int]
    EXCEEDANCE_CI_HIGH_FIELD_NUMBER: _ClassVar[int]
    TAIL_RISK_SHARE_FIELD_NUMBER: _ClassVar[int]
    DELAY_QUANTILES_FIELD_NUMBER: _ClassVar[int]
    FINDINGS_FIELD_NUMBER: _ClassVar[int]
    METHOD_FIELD_NUMBER: _ClassVar[int]
    EFFECTIVE_SAMPLES_FIELD_NUMBER: _ClassVar[int]
    VIOLATIONS_ATTRIBUTED_FIELD_NUMBER: _ClassVar[int]
    domain_id: str
    verdict: Verdict
    delay_budget_s: float
    epsilon: float
    packets: int
    exceedances: int
    exceedance_rate: float
    exceedance_ci_low: float
    exceedance_ci_high: float
    tail_risk_share: float
    delay_quantiles: _containers.RepeatedCompositeFieldContainer[QuantileEstimate]
    findings: _containers.RepeatedScalarFieldContainer[str]
    method: str
    effective_samples: float
    violations_attributed: float
    def __init__(self, domain_id: _Optional[str] = ..., verdict: _Optional[_Union[Verdict, str]] = ..., delay_budget_s: _Optional[float] = ..., epsilon: _Optional[float] = ..., packets: _Optional[int] = ..., exceedances: _Optional[int] = ..., exceedance_rate: _Optional[float] = ..., exceedance_ci_low: _Optional[float] = ..., exceedance_ci_high: _Optional[float] = ..., tail_risk_share: _Optional[float] = ..., delay_quantiles: _Optional[_Iterable[_Union[QuantileEstimate, _Mapping]]] = ..., findings: _Optional[_Iterable[str]] = ..., method: _Optional[str] = ..., effective_samples: _Optional[float] = ..., violations_attributed: _Optional[float] = ...) -> None: ...

class BudgetVerdict(_message.Message):
    __slots__ = ("name", "budget", "events", "rate", "ci_low", "ci_high", "verdict", "method")
    NAME_FIELD_NUMBER: _ClassVar[int]
    BUDGET_FIELD_NUMBER: _ClassVar[int]
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    RATE_FIELD_NUMBER: _ClassVar[int]
    CI_LOW_FIELD_NUMBER: _ClassVar[int]
    CI_HIGH_FIELD_NUMBER: _ClassVar[int]
    VERDICT_FIELD_NUMBER: _ClassVar[int]
    METHOD_FIELD_NUMBER: _ClassVar[int]
    name: str
    budget: float
    events: int
    rate: float
    ci_low: float
    ci_high: float
    verdict: Verdict
    method: str
    def __init__(self, name: _Optional[str] = ..., budget: _Optional[float] = ..., events: _Optional[int] = ..., rate: _Optional[float] = ..., ci_low: _Optional[float] = ..., ci_high: _Optional[float] = ..., verdict: _Optional[_Union[Verdict, str]] = ..., method: _Optional[str] = ...) -> None: ...

class Finding(_message.Message):
    __slots__ = ("kind", "domain_id", "batch_sequence", "detail", "packets")
    KIND_FIELD_NUMBER: _ClassVar[int]
    DOMAIN_ID_FIELD_NUMBER: _ClassVar[int]
    BATCH_SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    DETAIL_FIELD_NUMBER: _ClassVar[int]
    PACKETS_FIELD_NUMBER: _ClassVar[int]
    kind: str
    domain_id: str
    batch_sequence: int
    detail: str
    packets: int
    def __init__(self, kind: _Optional[str] = ..., domain_id: _Optional[str] = ..., batch_sequence: _Optional[int] = ..., detail: _Optional[str] = ..., packets: _Optional[int] = ...) -> None: ...

class AccountabilityReportBody(_message.Message):
    __slots__ = ("report_id", "contract_id", "tenant_id", "window_start_s", "window_end_s", "packets", "end_to_end_deadline_s", "end_to_end_epsilon", "end_to_end_violation_rate", "violation_ci_low", "violation_ci_high", "end_to_end_verdict", "delay_quantiles", "domains", "findings", "issued_at", "key_id", "auditor_id", "budgets", "unattributed_share", "finding_details", "confidence_method", "confidence")
    REPORT_ID_FIELD_NUMBER: _ClassVar[int]
    CONTRACT_ID_FIELD_NUMBER: _ClassVar[int]
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    WINDOW_START_S_FIELD_NUMBER: _ClassVar[int]
    WINDOW_END_S_FIELD_NUMBER: _ClassVar[int]
    PACKETS_FIELD_NUMBER: _ClassVar[int]
    END_TO_END_DEADLINE_S_FIELD_NUMBER: _ClassVar[int]
    END_TO_END_EPSILON_FIELD_NUMBER: _ClassVar[int]
    END_TO_END_VIOLATION_RATE_FIELD_NUMBER: _ClassVar[int]
    VIOLATION_CI_LOW_FIELD_NUMBER: _ClassVar[int]
    VIOLATION_CI_HIGH_FIELD_NUMBER: _ClassVar[int]
    END_TO_END_VERDICT_FIELD_NUMBER: _ClassVar[int]
    DELAY_QUANTILES_FIELD_NUMBER: _ClassVar[int]
    DOMAINS_FIELD_NUMBER: _ClassVar[int]
    FINDINGS_FIELD_NUMBER: _ClassVar[int]
    ISSUED_AT_FIELD_NUMBER: _ClassVar[int]
    KEY_ID_FIELD_NUMBER: _ClassVar[int]
    AUDITOR_ID_FIELD_NUMBER: _ClassVar[int]
    BUDGETS_FIELD_NUMBER: _ClassVar[int]
    UNATTRIBUTED_SHARE_FIELD_NUMBER: _ClassVar[int]
    FINDING_DETAILS_FIELD_NUMBER: _ClassVar[int]
    CONFIDENCE_METHOD_FIELD_NUMBER: _ClassVar[int]
    CONFIDENCE_FIELD_NUMBER: _ClassVar[int]
    report_id: str
    contract_id: str
    tenant_id: str
    window_start_s: float
    window_end_s: float
    packets: int
    end_to_end_deadline_s: float
    end_to_end_epsilon: float
    end_to_end_violation_rate: float
    violation_ci_low: float
    violation_ci_high: float
    end_to_end_verdict: Verdict
    delay_quantiles: _containers.RepeatedCompositeFieldContainer[QuantileEstimate]
    domains: _containers.RepeatedCompositeFieldContainer[DomainVerdict]
    findings: _containers.RepeatedScalarFieldContainer[str]
    issued_at: _timestamp_pb2.Timestamp
    key_id: str
    auditor_id: str
    budgets: _containers.RepeatedCompositeFieldContainer[BudgetVerdict]
    unattributed_share: float
    finding_details: _containers.RepeatedCompositeFieldContainer[Finding]
    confidence_method: str
    confidence: float
    def __init__(self, report_id: _Optional[str] = ..., contract_id: _Optional[str] = ..., tenant_id: _Optional[str] = ..., window_start_s: _Optional[float] = ..., window_end_s: _Optional[float] = ..., packets: _Optional[int] = ..., end_to_end_deadline_s: _Optional[float] = ..., end_to_end_epsilon: _Optional[float] = ..., end_to_end_violation_rate: _Optional[float] = ..., violation_ci_low: _Optional[float] = ..., violation_ci_high: _Optional[float] = ..., end_to_end_verdict: _Optional[_Union[Verdict, str]] = ..., delay_quantiles: _Optional[_Iterable[_Union[QuantileEstimate, _Mapping]]] = ..., domains: _Optional[_Iterable[_Union[DomainVerdict, _Mapping]]] = ..., findings: _Optional[_Iterable[str]] = ..., issued_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., key_id: _Optional[str] = ..., auditor_id: _Optional[str] = ..., budgets: _Optional[_Iterable[_Union[BudgetVerdict, _Mapping]]] = ..., unattributed_share: _Optional[float] = ..., finding_details: _Optional[_Iterable[_Union[Finding, _Mapping]]] = ..., confidence_method: _Optional[str] = ..., confidence: _Optional[float] = ...) -> None: ...

class SignedAccountabilityReport(_message.Message):
    __slots__ = ("body", "signature")
    BODY_FIELD_NUMBER: _ClassVar[int]
    SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    body: bytes
    signature: _envelope_pb2.Signature
    def __init__(self, body: _Optional[bytes] = ..., signature: _Optional[_Union[_envelope_pb2.Signature, _Mapping]] = ...) -> None: ...
