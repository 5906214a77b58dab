"""The federation runner: start a federation from a config on Ray, let tenants request service, stop.

:class:`Federation` places one :class:`~agents.domain.servicer.DomainControllerAgent` actor per domain,
one :class:`~agents.broker.servicer.BrokerAgent` actor, one :class:`~agents.auditor.servicer.AuditorAgent`
actor (started after the broker, whose contracts it audits) and, on demand, one
:class:`~agents.tenant.TenantAgent` actor per tenant, all through :class:`~agents.runtime.Runtime`
(the only module that touches Ray). Agents talk to each other over gRPC on 127.0.0.1 (or the
host given); the runner talks to them through the runtime (start, addresses, stop) and to the
domains' ``GetStatus`` over gRPC.

Keys: with ``keys_dir`` in the config, domain ``NAME`` signs with ``keys_dir/NAME.key``, created
(with ``NAME.pub``) when absent; without it every domain gets a fresh key. The broker trusts the
public halves of exactly these keys. The auditor signs its reports with ``keys_dir/auditor.key``
(with ``auditor.pub`` beside it, so ``--trust KEYS_DIR`` verifies the reports), created when absent,
or a fresh key; it trusts exactly the domains' keys. State: each domain's reservation table is the SQLite file
``STATE_DIR/NAME.db``; without a state dir a temporary one is made and removed on :meth:`stop`.

Security: agents talk mutual TLS (:mod:`agents.access`). The federation CA is ``keys_dir/ca.crt``
with ``ca.key`` (created when absent; without keys_dir a CA in memory), and each agent's
certificate ``keys_dir/ROLE-NAME.crt`` (issued when absent); each agent is given its own.
``insecure=True`` (``trefed run --insecure``) starts every agent without TLS, loopback only.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import grpc
from trefed.v1 import services_pb2, services_pb2_grpc, telemetry_pb2

from agents.access import AUDITOR, BROKER
from agents.auditor.servicer import AuditorAgent
from agents.broker.logic import TrustEntry
from agents.broker.servicer import BrokerAgent
from agents.domain.servicer import DomainControllerAgent
from agents.domain.telemetry import TelemetryReceipt
from agents.runtime import ActorRef, Runtime
from agents.server import open_channel
from agents.tenant import TenantAgent, TenantOutcome
from federation.config import FederationConfig, TenantConfig
from federation.dataplane.telemetry import DomainLog
from federation.errors import ConfigError
from federation.tre.ca import (
    CertificateAuthority,
    Credentials,
    PeerIdentity,
    Role,
    load_or_create_ca,
    load_or_issue,
)
from federation.tre.keys import load_key_file, write_key_pair
from federation.tre.signing import SigningKey

__all__ = ["AUDITOR_ID", "Federation", "load_auditor_key", "load_domain_keys"]

#: The auditor's identity: its reports' ``auditor_id`` and the name of its key files.
AUDITOR_ID = "auditor"


def _load_key(config: FederationConfig, name: str) -> SigningKey:
    """``keys_dir/NAME.key`` (written with ``NAME.pub`` when absent), or a fresh key without keys_dir."""
    if config.keys_dir is None:
        return SigningKey.generate(name)
    path = Path(config.keys_dir) / f"{name}.key"
    if not path.exists():
        Path(config.keys_dir).mkdir(parents=True, exist_ok=True)
        write_key_pair(name, config.keys_dir)
    return load_key_file(path)


def load_domain_keys(config: FederationConfig) -> dict[str, SigningKey]:
    """Every domain's signing key: from ``config.keys_dir`` (created when absent) or fresh."""
    return {d.id: _load_key(config, d.id) for d in config.domains}


def load_auditor_key(config: FederationConfig, auditor_id: str = AUDITOR_ID) -> SigningKey:
    """The auditor's signing key: ``keys_dir/AUDITOR_ID.key`` (written with its ``.pub`` when absent) or fresh.

    Raises
    ------
    ConfigError
        If a domain of the config is named ``auditor_id`` (its key files would be the auditor's).
    """
    if any(d.id == auditor_id for d in config.domains):
        raise ConfigError(f"domains: a domain is named {auditor_id!r}, the auditor's id (rename the domain)")
    return _load_key(config, auditor_id)


class Federation:
    """A running federation (see the module docstring).

    Parameters
    ----------
    config : FederationConfig
        Domains, graph, catalogue, tenants.
    runtime : Runtime, optional
        The Ray runtime to use (default: a local one, started by :meth:`start`, stopped by :meth:`stop`).
    state_dir : path, optional
        Where the domains' SQLite files go (default: a temporary directory, removed on stop).
    host : str
        Interface every agent's gRPC server binds (default loopback).
    broker_port : int
        The broker's port (0: a free one).
    auditor_port : int
        The auditor's port (0: a free one).
    sweep_interval_s : float
        Expiry sweep period of the domain controllers, s.
    on_phase : callable, optional
        Progress hook: called with a short sentence as each phase begins (starting Ray, each
        domain controller, the broker and the auditor once listening, with their addresses; on a
        cluster joined by address, the node each agent runs on; each tenant's request as it is sent); e.g. ``trefed run`` prints them on stderr. Default: silent.
    insecure : bool
        Start every agent without TLS (loopback hosts only); default mutual TLS.
    """

    def __init__(
        self,
        config: FederationConfig,
        *,
        runtime: Runtime | None = None,
        state_dir: str | Path | None = None,
        host: str = "127.0.0.1",
        broker_port: int = 0,
        auditor_port: int = 0,
        sweep_interval_s: float = 0.25,
        on_phase: Callable[[str], None] | None = None,
        insecure: bool = False,
    ) -> None:
        self.config = config
        self.insecure = bool(insecure)
        self.ca: CertificateAuthority | None = None
        """The federation CA (after :meth:`start`; None when insecure)."""
        self._credentials: dict[tuple[str, str], Credentials] = {}
        self._on_phase = on_phase
        self._own_runtime = runtime is None
        self.runtime = runtime or Runtime()
        self._tmp: str | None = None
        if state_dir is None:
            self._tmp = tempfile.mkdtemp(prefix="trefed-")
            state_dir = self._tmp
        self.state_dir = Path(state_dir)
        self.host = host
        self.broker_port = int(broker_port)
        self.auditor_port = int(auditor_port)
        self.sweep_interval_s = sweep_interval_s
        self.keys: dict[str, SigningKey] = {}
        self.domain_actors: dict[str, ActorRef] = {}
        self.domain_addresses: dict[str, str] = {}
        self.broker_actor: ActorRef | None = None
        self.broker_address: str = ""
        self.auditor_key: SigningKey | None = None
        """The auditor's key (after :meth:`start`); its public half verifies the reports."""
        self.auditor_actor: ActorRef | None = None
        self.auditor_address: str = ""
        self.tenant_actors: dict[str, ActorRef] = {}
        self._generation: dict[str, int] = {}
        self._channels: dict[str, grpc.Channel] = {}
        self._started = False

    def credentials(self, role: Role | str, name: str) -> Credentials | None:
        """``trefed://ROLE/NAME``'s credentials from the federation CA (None when insecure), e.g.
        ``open_channel(fed.broker_address, fed.credentials("operator", "me"), BROKER)``."""
        if self.insecure:
            return None
        if self.ca is None:
            self.ca = load_or_create_ca(self.config.keys_dir)
        key = (str(role), name)
        if key not in self._credentials:
            self._credentials[key] = load_or_issue(self.ca, self.config.keys_dir, role, name)
        return self._credentials[key]

    def _phase(self, sentence: str) -> None:
        if self._on_phase is not None:
            self._on_phase(sentence)

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> Federation:
        """Start Ray (if needed), the domain controllers, the broker and the auditor; return self."""
        if self._started:
            return self
        # The keys first: a bad key file fails in a moment, before Ray takes its seconds to start.
        self.keys = load_domain_keys(self.config)
        self.auditor_key = load_auditor_key(self.config)
        if not self.insecure and self.ca is None:
            self.ca = load_or_create_ca(self.config.keys_dir)
        address = self.runtime.address
        self._phase(f"starting Ray: joining the cluster at {address}" if address
                    else "starting Ray: a local instance on 127.0.0.1")
        self.runtime.start()
        self.state_dir.mkdir(parents=True, exist_ok=True)
        try:
            self._phase(f"starting {len(self.config.domains)} domain controllers "
                        f"({', '.join(d.id for d in self.config.domains)})")
            for d in self.config.domains:
                self.domain_actors[d.id] = self._spawn_domain(d.id, port=0)
            calls: list[tuple[ActorRef, str, tuple[Any, ...], dict[str, Any]]] = [
                (a, "start", (), {}) for a in self.domain_actors.values()
            ]
            self.runtime.call_many(calls, timeout=120)
            addresses = self.runtime.call_many(
                [(a, "address", (), {}) for a in self.domain_actors.values()], timeout=30
            )
            self.domain_addresses = dict(zip(self.domain_actors, addresses))
            for domain_id, a in self.domain_addresses.items():
                self._phase(f"domain controller {domain_id} started on {a}")
            trust = [
                TrustEntry(k.key_id, k.domain_id, k.public_key_bytes()) for k in self.keys.values()
            ]
            self._phase("starting the broker")
            self.broker_actor = self.runtime.spawn(
                BrokerAgent,
                self.config,
                self.domain_addresses,
                trust,
                host=self.host,
                port=self.broker_port,
                credentials=self.credentials(Role.BROKER, BROKER.name),
                state_path=str(self.state_dir / "_broker.db"),  # (no domain id starts with _)
                name=f"{self.config.name}:broker",
            )
            self.runtime.call(self.broker_actor, "start", timeout=120)
            self.broker_address = self.runtime.call(self.broker_actor, "address")
            self._phase(f"broker started on {self.broker_address}")
            self._start_auditor(self.auditor_key)
            if self.runtime.address:  # a cluster: say which node each agent landed on
                where = self.placement()
                self._phase(f"placement over {len(set(where.values()))} node(s): "
                            + ", ".join(f"{k} on {v[:12]}" for k, v in where.items()))
        except BaseException:
            self.stop()
            raise
        self._started = True
        return self

    def placement(self) -> dict[str, str]:
        """Agent (``domain ID``, ``broker``, ``auditor``, ``tenant ID``) -> the id of the node it runs on."""
        named = {f"domain {d}": a for d, a in self.domain_actors.items()}
        named.update({"broker": a for a in [self.broker_actor] if a is not None})
        named.update({"auditor": a for a in [self.auditor_actor] if a is not None})
        named.update({f"tenant {t}": a for t, a in self.tenant_actors.items()})
        nodes = self.runtime.placement(list(named.values()))
        return {k: nodes[a.name] for k, a in named.items()}

    def _start_auditor(self, key: SigningKey) -> None:
        self._phase("starting the auditor")
        trust = [(k.key_id, k.domain_id, k.public_key_bytes()) for k in self.keys.values()]
        self.auditor_actor = self.runtime.spawn(
            AuditorAgent,
            key.private_pem(),
            trust,
            self.broker_address,
            auditor_id=key.domain_id,
            host=self.host,
            port=self.auditor_port,
            rpc_timeout_s=self.config.broker.rpc_timeout_s,
            credentials=self.credentials(Role.AUDITOR, key.domain_id),
            name=f"{self.config.name}:auditor",
        )
        self.runtime.call(self.auditor_actor, "start", timeout=120)
        self.auditor_address = self.runtime.call(self.auditor_actor, "address")
        self._phase(f"auditor started on {self.auditor_address}")

    def _spawn_domain(self, domain_id: str, port: int) -> ActorRef:
        d = self.config.domain(domain_id)
        key = self.keys[domain_id]
        gen = self._generation.get(domain_id, 0) + 1
        self._generation[domain_id] = gen
        body = d.envelope_body(key.key_id).SerializeToString()
        return self.runtime.spawn(
            DomainControllerAgent,
            body,
            key.private_pem(),
            str(self.state_dir / f"{domain_id}.db"),
            host=self.host,
            port=port,
            validity_s=d.validity_s,
            sweep_interval_s=self.sweep_interval_s,
            max_hold_s=self.config.broker.hold_timeout_s,
            retention_s=self.config.broker.retention_s,
            credentials=self.credentials(Role.DOMAIN, domain_id),
            name=f"{self.config.name}:domain:{domain_id}:{gen}",
        )

    def stop(self) -> None:
        """Stop every agent (cleanly where possible), Ray if this federation started it; idempotent."""
        for ch in self._channels.values():
            ch.close()
        self._channels.clear()
        actors: list[tuple[ActorRef, str]] = [(a, "close") for a in self.tenant_actors.values()]
        if self.auditor_actor is not None:
            actors.append((self.auditor_actor, "stop"))
        if self.broker_actor is not None:
            actors.append((self.broker_actor, "stop"))
        actors += [(a, "stop") for a in self.domain_actors.values()]
        for actor, method in actors:
            try:
                self.runtime.call(actor, method, timeout=10)
            except Exception:  # noqa: BLE001 - best effort: it is killed next
                pass
            self.runtime.kill(actor)
        self.tenant_actors.clear()
        self.domain_actors.clear()
        self.broker_actor = None
        self.auditor_actor = None
        self._started = False
        if self._own_runtime:
            self.runtime.shutdown()
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)

    def __enter__(self) -> Federation:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------------ tenants

    def run_tenants(
        self, tenant_ids: Sequence[str] | None = None, *, concurrent: bool = False, timeout_s: float = 300.0
    ) -> list[TenantOutcome]:
        """Let tenants request service; return their outcomes in config order.

        Sequential by default (config order decides who is admitted first, so a run is
        reproducible); ``concurrent`` issues every request at once. Tenants with
        ``release_after`` release their contract afterwards.
        """
        tenants = [t for t in self.config.tenants if tenant_ids is None or t.id in tenant_ids]
        for t in tenants:
            self._tenant_actor(t)
        if concurrent:
            for t in tenants:
                self._phase(self._request_sentence(t))
            outcomes = self.runtime.call_many(
                [(self.tenant_actors[t.id], "request", (), {}) for t in tenants], timeout=timeout_s
            )
        else:
            outcomes = []
            for t in tenants:
                self._phase(self._request_sentence(t))
                outcomes.append(self.runtime.call(self.tenant_actors[t.id], "request", timeout=timeout_s))
        final: list[TenantOutcome] = []
        for t, out in zip(tenants, outcomes):
            if t.release_after and out.admitted:
                released = self.runtime.call(self.tenant_actors[t.id], "release", timeout=60)
                out = TenantOutcome(**{**out.__dict__, "released": released})
            final.append(out)
        return final

    def request_tenant(self, tenant_id: str, *, timeout_s: float = 300.0) -> TenantOutcome:
        """One tenant requests service now (its agent is started on first use); its outcome."""
        t = next(x for x in self.config.tenants if x.id == tenant_id)
        return self.runtime.call(self._tenant_actor(t), "request", timeout=timeout_s)

    def _tenant_actor(self, t: TenantConfig) -> ActorRef:
        """The tenant's agent, with its own credentials (started on first use)."""
        if t.id not in self.tenant_actors:
            self.tenant_actors[t.id] = self.runtime.spawn(
                TenantAgent, t, self.broker_address, credentials=self.credentials(Role.TENANT, t.id),
                name=f"{self.config.name}:tenant:{t.id}"
            )
        return self.tenant_actors[t.id]

    def release_tenant(self, tenant_id: str, *, timeout_s: float = 60.0) -> bool:
        """The tenant releases its contract (True when released, or nothing was held)."""
        actor = self.tenant_actors.get(tenant_id)
        return True if actor is None else bool(self.runtime.call(actor, "release", timeout=timeout_s))

    @staticmethod
    def _request_sentence(t: TenantConfig) -> str:
        i = t.intent
        return (f"tenant {t.id} requests {i.task} within {i.deadline_s * 1e3:g} ms "
                f"at epsilon {i.epsilon:g} (entering at {t.access})")

    # ------------------------------------------------------------------ domains

    def _channel(self, address: str, peer: PeerIdentity) -> grpc.Channel:
        """The runner's channel to the agent ``peer`` at ``address`` (as the operator; plain when insecure)."""
        ch = self._channels.get(address)
        if ch is None:
            ch = self._channels[address] = open_channel(address, self.credentials(Role.OPERATOR, "runner"), peer,
                                                        sync=True)
        return ch

    def contract(self, contract_id: str) -> services_pb2.ServiceContract:
        """The broker's record of a contract (``Broker.GetContract`` over gRPC)."""
        stub = services_pb2_grpc.BrokerStub(self._channel(self.broker_address, BROKER))
        return stub.GetContract(services_pb2.GetContractRequest(contract_id=contract_id), timeout=30)

    def report_telemetry(self, logs: dict[str, DomainLog], tenant_ids: dict[int, str], *, window_start_s: float,
                         window_end_s: float, under_report_s: dict[str, float] | None = None,
                         batch_packets: int = 20_000, timeout_s: float = 300.0) -> dict[str, TelemetryReceipt]:
        """Every domain of ``logs`` signs its log and submits it to the auditor itself (concurrently).

        ``under_report_s``: domains that lie, and by how much (s). Returns each domain's receipt.
        """
        lies = under_report_s or {}
        calls: list[tuple[ActorRef, str, tuple[Any, ...], dict[str, Any]]] = [
            (self.domain_actors[d], "report_telemetry", (log, tenant_ids, self.auditor_address),
             {"window_start_s": window_start_s, "window_end_s": window_end_s,
              "under_report_s": lies.get(d, 0.0), "batch_packets": batch_packets})
            for d, log in logs.items()
        ]
        return dict(zip(logs, self.runtime.call_many(calls, timeout=timeout_s)))

    def report(self, contract_id: str, confidence: float = 0.95) -> telemetry_pb2.SignedAccountabilityReport:
        """The auditor's signed accountability report of a contract (``Auditor.GetReport`` over gRPC)."""
        stub = services_pb2_grpc.AuditorStub(self._channel(self.auditor_address, AUDITOR))
        return stub.GetReport(services_pb2.ReportRequest(contract_id=contract_id, confidence=confidence), timeout=120)

    def domain_status(self, domain_id: str, include_reservations: bool = False) -> services_pb2.DomainStatus:
        """A domain's ``GetStatus`` over gRPC."""
        stub = services_pb2_grpc.DomainControllerStub(
            self._channel(self.domain_addresses[domain_id], PeerIdentity(Role.DOMAIN, domain_id)))
        return stub.GetStatus(services_pb2.GetStatusRequest(include_reservations=include_reservations), timeout=10)

    def kill_domain(self, domain_id: str) -> None:
        """Kill a domain controller at once (``ray.kill``: no clean-up runs)."""
        actor = self.domain_actors.pop(domain_id)
        self.runtime.kill(actor)
        ch = self._channels.pop(self.domain_addresses[domain_id], None)
        if ch is not None:
            ch.close()

    def republish_domain(self, domain_id: str, guardrails: Mapping[str, float] | None = None) -> int:
        """The domain's operator publishes a new envelope: the configured one with the ``guardrails``
        fields given changed (e.g. ``{"reservable_capacity_bps": 2e8}``); returns its sequence.
        The broker sees it at its next envelope refresh (``broker.envelope_refresh_s``)."""
        d = self.config.domain(domain_id)
        body = d.envelope_body(self.keys[domain_id].key_id)
        for name, value in (guardrails or {}).items():
            setattr(body.guardrails, name, float(value))
        return int(self.runtime.call(self.domain_actors[domain_id], "republish", body.SerializeToString()))

    def revoke_domain(self, domain_id: str) -> None:
        """The domain's operator withdraws its envelope (until it republishes): the broker can no
        longer fetch it, the domain refuses new reservations; granted ones stand."""
        self.runtime.call(self.domain_actors[domain_id], "revoke")

    def restart_domain(self, domain_id: str) -> str:
        """Start a new controller for a killed domain on the same SQLite file and port; return its address."""
        if domain_id in self.domain_actors:
            raise ValueError(f"domain {domain_id!r} is running; kill it first")
        port = int(self.domain_addresses[domain_id].rsplit(":", 1)[1])
        deadline = time.monotonic() + 30.0
        while True:
            actor = self._spawn_domain(domain_id, port=port)
            try:
                self.runtime.call(actor, "start", timeout=120)
                break
            except OSError:  # the killed process may still hold the port for a moment
                self.runtime.kill(actor)
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        self.domain_actors[domain_id] = actor
        self.domain_addresses[domain_id] = self.runtime.call(actor, "address")
        return self.domain_addresses[domain_id]

    def broker_stats(self) -> dict:
        """The broker's counters (admitted, rejected, plans computed, cache hits, ...)."""
        assert self.broker_actor is not None
        return self.runtime.call(self.broker_actor, "stats")

    def auditor_stats(self) -> dict:
        """The auditor's counters (batches accepted and rejected, contracts learnt, reports signed)."""
        assert self.auditor_actor is not None
        return self.runtime.call(self.auditor_actor, "stats")
