import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from trefed.v1 import envelope_pb2 as _envelope_pb2
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ReservationState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    RESERVATION_STATE_UNSPECIFIED: _ClassVar[ReservationState]
    PREPARED: _ClassVar[ReservationState]
    COMMITTED: _ClassVar[ReservationState]
    ABORTED: _ClassVar[ReservationState]
    EXPIRED: _ClassVar[ReservationState]
    RELEASED: _ClassVar[ReservationState]
RESERVATION_STATE_UNSPECIFIED: ReservationState
PREPARED: ReservationState
COMMITTED: ReservationState
ABORTED: ReservationState
EXPIRED: ReservationState
RELEASED: ReservationState

class ReservationRequest(_message.Message):
    __slots__ = ("reservation_id", "tenant_id", "tre_id", "rate_bps", "burst_bits", "delay_budget_s", "epsilon")
    RESERVATION_ID_FIELD_NUMBER: _ClassVar[int]
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    TRE_ID_FIELD_NUMBER: _ClassVar[int]
    RATE_BPS_FIELD_NUMBER: _ClassVar[int]
    BURST_BITS_FIELD_NUMBER: _ClassVar[int]
    DELAY_BUDGET_S_FIELD_NUMBER: _ClassVar[int]
    EPSILON_FIELD_NUMBER: _ClassVar[int]
    reservation_id: str
    tenant_id: str
    tre_id: str
    rate_bps: float
    burst_bits: float
    delay_budget_s: float
    epsilon: float
    def __init__(self, reservation_id: _Optional[str] = ..., tenant_id: _Optional[str] = ..., tre_id: _Optional[str] = ..., rate_bps: _Optional[float] = ..., burst_bits: _Optional[float] = ..., delay_budget_s: _Optional[float] = ..., epsilon: _Optional[float] = ...) -> None: ...

class PrepareRequest(_message.Message):
    __slots__ = ("request_id", "reservation", "hold_timeout_s")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    RESERVATION_FIELD_NUMBER: _ClassVar[int]
    HOLD_TIMEOUT_S_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    reservation: ReservationRequest
    hold_timeout_s: float
    def __init__(self, request_id: _Optional[str] = ..., reservation: _Optional[_Union[ReservationRequest, _Mapping]] = ..., hold_timeout_s: _Optional[float] = ...) -> None: ...

class PrepareResponse(_message.Message):
    __slots__ = ("reservation_id", "state", "expires_at", "available_after_bps")
    RESERVATION_ID_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    AVAILABLE_AFTER_BPS_FIELD_NUMBER: _ClassVar[int]
    reservation_id: str
    state: ReservationState
    expires_at: _timestamp_pb2.Timestamp
    available_after_bps: float
    def __init__(self, reservation_id: _Optional[str] = ..., state: _Optional[_Union[ReservationState, str]] = ..., expires_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., available_after_bps: _Optional[float] = ...) -> None: ...

class CommitRequest(_message.Message):
    __slots__ = ("request_id", "reservation_id")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    RESERVATION_ID_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    reservation_id: str
    def __init__(self, request_id: _Optional[str] = ..., reservation_id: _Optional[str] = ...) -> None: ...

class AbortRequest(_message.Message):
    __slots__ = ("request_id", "reservation_id", "reason")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    RESERVATION_ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    reservation_id: str
    reason: str
    def __init__(self, request_id: _Optional[str] = ..., reservation_id: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class AbortResponse(_message.Message):
    __slots__ = ("reservation_id", "state")
    RESERVATION_ID_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    reservation_id: str
    state: ReservationState
    def __init__(self, reservation_id: _Optional[str] = ..., state: _Optional[_Union[ReservationState, str]] = ...) -> None: ...

class ReleaseRequest(_message.Message):
    __slots__ = ("request_id", "reservation_id")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    RESERVATION_ID_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    reservation_id: str
    def __init__(self, request_id: _Optional[str] = ..., reservation_id: _Optional[str] = ...) -> None: ...

class ReleaseResponse(_message.Message):
    __slots__ = ("reservation_id", "state", "available_after_bps")
    RESERVATION_ID_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    AVAILABLE_AFTER_BPS_FIELD_NUMBER: _ClassVar[int]
    reservation_id: str
    state: ReservationState
    available_after_bps: float
    def __init__(self, reservation_id: _Optional[str] = ..., state: _Optional[_Union[ReservationState, str]] = ..., available_after_bps: _Optional[float] = ...) -> None: ...

class GrantBody(_message.Message):
    __slots__ = ("reservation_id", "domain_id", "tenant_id", "tre_id", "tre_sequence", "rate_bps", "burst_bits", "delay_budget_s", "epsilon", "granted_at", "not_after", "sequence", "key_id")
    RESERVATION_ID_FIELD_NUMBER: _ClassVar[int]
    DOMAIN_ID_FIELD_NUMBER: _ClassVar[int]
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    TRE_ID_FIELD_NUMBER: _ClassVar[int]
    TRE_SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    RATE_BPS_FIELD_NUMBER: _ClassVar[int]
    BURST_BITS_FIELD_NUMBER: _ClassVar[int]
    DELAY_BUDGET_S_FIELD_NUMBER: _ClassVar[int]
    EPSILON_FIELD_NUMBER: _ClassVar[int]
    GRANTED_AT_FIELD_NUMBER: _ClassVar[int]
    NOT_AFTER_FIELD_NUMBER: _ClassVar[int]
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    KEY_ID_FIELD_NUMBER: _ClassVar[int]
    reservation_id: str
    domain_id: str
    tenant_id: str
    tre_id: str
    tre_sequence: int
    rate_bps: float
    burst_bits: float
    delay_budget_s: float
    epsilon: float
    granted_at: _timestamp_pb2.Timestamp
    not_after: _timestamp_pb2.Timestamp
    sequence: int
    key_id: str
    def __init__(self, reservation_id: _Optional[str] = ..., domain_id: _Optional[str] = ..., tenant_id: _Optional[str] = ..., tre_id: _Optional[str] = ..., tre_sequence: _Optional[int] = ..., rate_bps: _Optional[float] = ..., burst_bits: _Optional[float] = ..., delay_budget_s: _Optional[float] = ..., epsilon: _Optional[float] = ..., granted_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., not_after: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., sequence: _Optional[int] = ..., key_id: _Optional[str] = ...) -> None: ...

class SignedGrant(_message.Message):
    __slots__ = ("body", "signature")
    BODY_FIELD_NUMBER: _ClassVar[int]
    SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    body: bytes
    signature: _envelope_pb2.Signature
    def __init__(self, body: _Optional[bytes] = ..., signature: _Optional[_Union[_envelope_pb2.Signature, _Mapping]] = ...) -> None: ...

class Reservation(_message.Message):
    __slots__ = ("request", "state", "expires_at", "grant")
    REQUEST_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    GRANT_FIELD_NUMBER: _ClassVar[int]
    request: ReservationRequest
    state: ReservationState
    expires_at: _timestamp_pb2.Timestamp
    grant: SignedGrant
    def __init__(self, request: _Optional[_Union[ReservationRequest, _Mapping]] = ..., state: _Optional[_Union[ReservationState, str]] = ..., expires_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., grant: _Optional[_Union[SignedGrant, _Mapping]] = ...) -> None: ...
