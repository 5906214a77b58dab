"""The errors an agent's RPC answers with, each carrying its gRPC status code.

Agent logic (broker, domain) raises these; :func:`agents.server.add_servicer` translates them into
status codes. This module needs only ``grpc.StatusCode``, so socket-free logic and its tests do not
import the server plumbing (health, reflection).

The tree::

    ServiceError (TrefedError)         carries its gRPC status code in ``.code``
    ├── InvalidArgument (InputError)   INVALID_ARGUMENT   malformed request: a field out of range,
    │                                                     missing, or bytes that do not parse
    ├── NotFound                       NOT_FOUND          unknown envelope, reservation, contract
    ├── AlreadyExists                  ALREADY_EXISTS     an id chosen by the caller is taken
    ├── FailedPrecondition             FAILED_PRECONDITION  state forbids it (expired, aborted,
    │                                                     a guardrail, a reused request id)
    ├── ResourceExhausted              RESOURCE_EXHAUSTED  capacity is lacking
    ├── Unavailable                    UNAVAILABLE        a peer cannot be reached
    ├── Unauthenticated                UNAUTHENTICATED    the caller's certificate names no identity
    └── PermissionDenied               PERMISSION_DENIED  the caller's role or identity may not do it
                                                          (the table is in :mod:`agents.access`)

Other trefed errors map by kind (:func:`status_code_for`): ``InputError`` -> INVALID_ARGUMENT,
``NotFoundError`` (the pure core's unknown id, e.g. a contract the audit ledger never saw) ->
NOT_FOUND, ``VerificationError`` and ``NoFiniteBound`` -> FAILED_PRECONDITION. Anything else is a bug: it
is logged with its traceback and answered with INTERNAL; the server keeps serving.

"""

from __future__ import annotations

import grpc

from federation.errors import InputError, NoFiniteBound, NotFoundError, TrefedError, VerificationError

__all__ = [
    "ServiceError",
    "InvalidArgument",
    "NotFound",
    "AlreadyExists",
    "FailedPrecondition",
    "ResourceExhausted",
    "Unavailable",
    "Unauthenticated",
    "PermissionDenied",
    "invalid_argument",
    "status_code_for",
]


class ServiceError(TrefedError):
    """An error an RPC answers with; ``code`` is its gRPC status code, the message its details."""

    code: grpc.StatusCode = grpc.StatusCode.INTERNAL


class InvalidArgument(ServiceError, InputError):
    """The request is malformed regardless of server state (INVALID_ARGUMENT)."""

    code = grpc.StatusCode.INVALID_ARGUMENT


class NotFound(ServiceError):
    """An id in the request names nothing the server knows (NOT_FOUND)."""

    code = grpc.StatusCode.NOT_FOUND


class AlreadyExists(ServiceError):
    """An id the caller chose is already taken by a different object (ALREADY_EXISTS)."""

    code = grpc.StatusCode.ALREADY_EXISTS


class FailedPrecondition(ServiceError):
    """The server's state forbids the operation (FAILED_PRECONDITION)."""

    code = grpc.StatusCode.FAILED_PRECONDITION


class ResourceExhausted(ServiceError):
    """Capacity is lacking (RESOURCE_EXHAUSTED)."""

    code = grpc.StatusCode.RESOURCE_EXHAUSTED


class Unavailable(ServiceError):
    """A peer the operation needs cannot be reached (UNAVAILABLE)."""

    code = grpc.StatusCode.UNAVAILABLE


class Unauthenticated(ServiceError):
    """The caller proved no identity the server can use (UNAUTHENTICATED)."""

    code = grpc.StatusCode.UNAUTHENTICATED


class PermissionDenied(ServiceError):
    """The caller is known but may not do this (PERMISSION_DENIED); the message names who and what."""

    code = grpc.StatusCode.PERMISSION_DENIED


def invalid_argument(field: str, value: object, requirement: str) -> InvalidArgument:
    """Build the INVALID_ARGUMENT error for one field, quoting its value.

    Parameters
    ----------
    field : str
        Field path, e.g. ``"reservation.rate_bps"``.
    value : object
        The offending value (quoted with ``repr``).
    requirement : str
        What the value must satisfy, e.g. ``"must be > 0"``.

    Returns
    -------
    InvalidArgument
        To be raised by the caller: ``raise invalid_argument("epsilon", 1.5, "must be in (0, 1)")``
        gives the message ``epsilon(=1.5) must be in (0, 1)``.
    """
    return InvalidArgument(f"{field}(={value!r}) {requirement}")


def status_code_for(exc: BaseException) -> grpc.StatusCode:
    """The gRPC status code an exception is answered with (see the module docstring)."""
    if isinstance(exc, ServiceError):
        return exc.code
    if isinstance(exc, InputError):
        return grpc.StatusCode.INVALID_ARGUMENT
    if isinstance(exc, NotFoundError):
        return grpc.StatusCode.NOT_FOUND
    if isinstance(exc, (VerificationError, NoFiniteBound)):
        return grpc.StatusCode.FAILED_PRECONDITION
    return grpc.StatusCode.INTERNAL
