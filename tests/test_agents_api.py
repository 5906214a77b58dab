"""Each agents module's ``__all__`` is what we mean to export: explicit, resolvable, and for the modules
the CLI, the benchmarks and the tests code against, exactly their public definitions; the contract
names and signatures they rely on; every exception class survives pickling (Ray carries them).
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import pytest
import test_public_api as core  # its rules, applied to agents

import agents

#: Every module of agents (its packages' __init__ and __main__ aside).
MODULES = sorted(m.name for m in pkgutil.walk_packages(agents.__path__, "agents.")
                 if not (m.ispkg or m.name.endswith("__main__")))

#: The contract the CLI (agents.cli), the benchmarks and the tests code against. Removing or
#: renaming one of these is a breaking change.
CONTRACT = {
    "agents.errors": {
        "ServiceError", "InvalidArgument", "NotFound", "AlreadyExists", "FailedPrecondition",
        "ResourceExhausted", "Unavailable", "Unauthenticated", "PermissionDenied", "invalid_argument",
        "status_code_for",
    },
    "agents.access": {"ANY", "AUDITOR", "BROKER", "POLICY", "RESERVATION_READERS", "authorize", "caller",
                      "require_owner"},
    "agents.server": {"MAX_DETAILS_CHARS", "MalformedRequest", "STREAM_OPTIONS", "add_servicer", "channel_credentials", "freeze_heap",
                      "is_loopback_host", "open_channel", "server_credentials", "start_grpc_server"},
    "agents.runtime": {"Runtime", "ActorRef", "ActorCallError", "is_loopback_address"},
    "agents.runner": {"AUDITOR_ID", "Federation", "load_auditor_key", "load_domain_keys"},
    "agents.tenant": {"BudgetSummary", "TenantOutcome", "TenantAgent", "outcome_from_contract"},
    "agents.broker.client": {"DEFINITE_REFUSALS", "DomainCallError", "DomainClient", "GrpcDomainClient"},
    "agents.broker.envelopes": {"EnvelopeCache"},
    "agents.broker.plan": {"PHYSICAL_RANGES", "Infeasible", "arrival_of", "burst_of", "check_physical", "plan_key",
                           "plan_offer"},
    "agents.broker.logic": {"Broker", "BrokerStats", "TrustEntry"},
    "agents.broker.store": {"BrokerStore"},
    "agents.broker.settle": {"Settlement"},
    "agents.broker.servicer": {"BROKER_SERVICE", "BrokerServicer", "BrokerAgent", "domain_keys"},
    "agents.domain.books": {"Books", "CapacityUsage", "exact", "inexact"},
    "agents.domain.publication": {"ENVELOPE_SEQUENCE_KEY", "EnvelopePublisher"},
    "agents.domain.logic": {"DomainService", "MAX_BATCH", "STATE_NAMES"},
    "agents.domain.store": {"ReservationRecord", "ReservationStore", "StoredResponse"},
    "agents.domain.servicer": {"DOMAIN_CONTROLLER_SERVICE", "DomainControllerAgent", "DomainControllerServicer"},
    "agents.auditor.logic": {"DEFAULT_CONFIDENCE", "Auditor", "AuditLedgerLike", "ContractSource"},
    "agents.auditor.client": {"GrpcContractSource"},
    "agents.auditor.servicer": {"AUDITOR_SERVICE", "AuditorServicer", "AuditorAgent"},
}

#: Exception classes whose constructor is not ``cls(message)``: a sample instance of each.
def test_the_contract_modules_exist():
    assert set(CONTRACT) <= set(MODULES), set(CONTRACT) - set(MODULES)


@pytest.mark.parametrize("name", MODULES)
def test_all_is_explicit_and_resolves(name):
    core.test_all_is_explicit_and_resolves(name)  # the same rule as for the federation modules


@pytest.mark.parametrize("name", sorted(CONTRACT))
def test_contract_modules_export_exactly_their_public_definitions(name):
    module = importlib.import_module(name)
    exported = set(module.__all__)
    assert CONTRACT[name] <= exported, f"{name} lost contract names {CONTRACT[name] - exported}"
    unexported = core._defined_here(module) - exported
    assert not unexported, f"{name} defines public {sorted(unexported)} without exporting them (prefix _ or add to __all__)"


def test_contract_signatures():
    from agents.auditor.servicer import AuditorAgent
    from agents.broker.logic import Broker
    from agents.broker.servicer import BrokerAgent
    from agents.domain.servicer import DomainControllerAgent
    from agents.runner import Federation
    from agents.runtime import Runtime

    fed = inspect.signature(Federation).parameters
    assert list(fed)[:1] == ["config"]
    assert {"runtime", "state_dir", "host", "broker_port", "auditor_port", "sweep_interval_s", "on_phase"} <= set(fed)
    assert fed["on_phase"].default is None and fed["on_phase"].kind is inspect.Parameter.KEYWORD_ONLY
    assert {"tenant_ids", "concurrent", "timeout_s"} <= set(inspect.signature(Federation.run_tenants).parameters)
    for method in ("start", "stop", "run_tenants", "domain_status", "kill_domain", "restart_domain", "broker_stats",
                   "auditor_stats"):
        assert callable(getattr(Federation, method)), method
    assert {"address", "num_cpus", "log_to_driver"} <= set(inspect.signature(Runtime).parameters)
    broker = inspect.signature(Broker).parameters
    assert list(broker)[:3] == ["config", "domains", "trust"] and {"clock", "monotonic"} <= set(broker)
    assert {"host", "port", "clock"} <= set(inspect.signature(BrokerAgent).parameters)
    assert {"host", "port", "validity_s", "sweep_interval_s", "clock"} <= set(
        inspect.signature(DomainControllerAgent).parameters)
    for method in ("start", "stop", "address", "stall", "held_answers"):
        assert inspect.iscoroutinefunction(getattr(DomainControllerAgent, method)), method
    auditor = inspect.signature(AuditorAgent).parameters
    assert list(auditor)[:3] == ["key_pem", "trust", "broker_address"]
    assert {"auditor_id", "host", "port", "rpc_timeout_s", "clock"} <= set(auditor)
    for method in ("start", "stop", "address", "public_key", "stats"):
        assert inspect.iscoroutinefunction(getattr(AuditorAgent, method)), method


# Every exception class of agents survives pickling: tests/test_errors.py (both packages).
