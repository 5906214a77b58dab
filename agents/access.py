"""Who may do what: the one authorization table of every trefed RPC, and the caller's identity.

Agents talk mutual TLS (:mod:`agents.server`); a caller's identity is the ``trefed://ROLE/NAME``
URI of its certificate (:mod:`federation.tre.ca`), never a field of the request. Each RPC is
allowed for the roles of :data:`POLICY`; :func:`agents.server.add_servicer` checks the table before
a method runs, and the servicers check the per-object rules (the right-hand column) with
:func:`require_owner`:

=================================  ==============================  ==========================================
RPC                                roles                           and further
=================================  ==============================  ==========================================
DomainController.GetEnvelope       any                             --
DomainController.Prepare           broker                          --
DomainController.Commit            broker                          --
DomainController.Abort             broker                          --
DomainController.Release           broker                          --
DomainController.Batch             broker                          --
DomainController.BatchStream       broker                          --
DomainController.GetStatus         any                             ``include_reservations``: broker, auditor,
                                                                   operator only
Broker.ListModels                  any                             --
Broker.ListDomainKeys              any                             --
Broker.ResolveIntent               tenant, operator                a tenant's ``intent.tenant_id`` is empty or
                                                                   its own (it becomes its own)
Broker.RequestService              tenant, operator                as ResolveIntent
Broker.ReleaseService              tenant, operator                a tenant: its own contracts only
Broker.GetContract                 tenant, auditor, operator       a tenant: its own contracts only
Auditor.SubmitTelemetry            domain                          the batch's ``domain_id`` is the caller's
Auditor.GetReport                  tenant, broker, operator        a tenant: its own contracts only
=================================  ==============================  ==========================================

The operator acts for any tenant (the runner's own calls, ``trefed`` administration); health
and reflection need a federation certificate (the TLS handshake) and nothing more.

Refusals. A connection without a certificate issued by the federation CA does not get past the
TLS handshake (the client sees ``UNAVAILABLE``: gRPC's Python server can only require client
certificates, not request them). A certificate without exactly one ``trefed://`` identity is
answered ``UNAUTHENTICATED``; a role or an owner the table refuses, ``PERMISSION_DENIED`` naming
the method, the roles it needs and the caller.

Insecure mode. A server started without credentials (``trefed run --insecure``, loopback only:
:func:`agents.server.start_grpc_server`) has no caller identities; every call is allowed.
"""

from __future__ import annotations

import contextvars
import functools
from collections.abc import Mapping
from typing import Any

from agents.errors import PermissionDenied, Unauthenticated
from federation.errors import InputError
from federation.tre.ca import PeerIdentity, Role

__all__ = [
    "ANY",
    "AUDITOR",
    "BROKER",
    "POLICY",
    "RESERVATION_READERS",
    "authorize",
    "caller",
    "require_owner",
]

#: Every role.
ANY: frozenset[Role] = frozenset(Role)
#: The broker's identity (a federation has one broker).
BROKER = PeerIdentity(Role.BROKER, "broker")
#: The auditor's identity.
AUDITOR = PeerIdentity(Role.AUDITOR, "auditor")
#: Who may see reservation details in ``DomainController.GetStatus``.
RESERVATION_READERS: frozenset[Role] = frozenset({Role.BROKER, Role.AUDITOR, Role.OPERATOR})

_B, _T, _A, _O, _D = Role.BROKER, Role.TENANT, Role.AUDITOR, Role.OPERATOR, Role.DOMAIN

#: ``"Service.Method"`` -> the roles that may call it (the table of the module docstring).
POLICY: Mapping[str, frozenset[Role]] = {
    "DomainController.GetEnvelope": ANY,
    "DomainController.Prepare": frozenset({_B}),
    "DomainController.Commit": frozenset({_B}),
    "DomainController.Abort": frozenset({_B}),
    "DomainController.Release": frozenset({_B}),
    "DomainController.Batch": frozenset({_B}),
    "DomainController.BatchStream": frozenset({_B}),
    "DomainController.GetStatus": ANY,
    "Broker.ListModels": ANY,
    "Broker.ListDomainKeys": ANY,
    "Broker.ResolveIntent": frozenset({_T, _O}),
    "Broker.RequestService": frozenset({_T, _O}),
    "Broker.ReleaseService": frozenset({_T, _O}),
    "Broker.GetContract": frozenset({_T, _A, _O}),
    "Auditor.SubmitTelemetry": frozenset({_D}),
    "Auditor.GetReport": frozenset({_T, _B, _O}),
}


def caller(context: Any) -> PeerIdentity | None:
    """The identity of the peer of a gRPC call, from its TLS certificate; None on an insecure server.

    Parameters
    ----------
    context : grpc.ServicerContext or None
        The call's context (its ``auth_context()``: gRPC puts the verified certificate's URI
        subjectAltNames under ``peer_uri``); None (a servicer called in-process) has no identity.

    Raises
    ------
    Unauthenticated
        If the connection is TLS but the certificate names no single valid ``trefed://`` identity.
    """
    if context is None:
        return None
    last = _LAST_CALLER.get()
    if last is not None and last[0] is context:  # asked again within the same call
        return last[1]
    auth = context.auth_context()
    who = _identity(tuple(auth.get("peer_uri", ()))) if auth.get("transport_security_type") == [b"ssl"] else None
    _LAST_CALLER.set((context, who))
    return who


# The caller of the call this task serves (each gRPC call runs in a task of its own, with its own
# context): the authorization check and then the servicer ask for it, and read it once.
_LAST_CALLER: contextvars.ContextVar[tuple[Any, PeerIdentity | None] | None] = contextvars.ContextVar(
    "trefed_last_caller", default=None)


@functools.lru_cache(maxsize=1024)
def _identity(peer_uris: tuple[bytes, ...]) -> PeerIdentity:
    """The one ``trefed://`` identity among a verified certificate's URI SANs (parsed once per
    distinct certificate: every call of a connection presents the same)."""
    uris = [u.decode("utf-8", "replace") for u in peer_uris if u.startswith(b"trefed://")]
    if len(uris) != 1:
        raise Unauthenticated(f"the client certificate names {len(uris)} trefed:// identities (needs exactly 1)")
    try:
        return PeerIdentity.from_uri(uris[0])
    except InputError as exc:
        raise Unauthenticated(f"the client certificate's identity is invalid: {exc}") from None


def authorize(method: str, context: Any) -> PeerIdentity | None:
    """Check :data:`POLICY` for ``method`` (``"Service.Method"``); return the caller (None: insecure).

    A method missing from the table is refused to everyone (a new RPC must be given its roles).

    Raises
    ------
    Unauthenticated, PermissionDenied
        As the module docstring says.
    """
    who = caller(context)
    if who is None:
        return None
    roles = POLICY.get(method, frozenset())
    if who.role not in roles:
        need = ", ".join(sorted(r.value for r in roles)) or "no role (not in the authorization table)"
        raise PermissionDenied(f"{method} needs the role {need}; the caller is {who.uri}")
    return who


def require_owner(who: PeerIdentity | None, tenant_id: str, what: str) -> None:
    """Refuse a tenant acting on another tenant's ``what`` (e.g. ``"contract ct-1"``).

    Callers that are no tenant passed :func:`authorize` already (the operator acts for any
    tenant); ``who`` None is an insecure server.

    Raises
    ------
    PermissionDenied
        If ``who`` is a tenant other than ``tenant_id``.
    """
    if who is not None and who.role is Role.TENANT and who.name != tenant_id:
        raise PermissionDenied(f"{what} belongs to another tenant; the caller is {who.uri}")
