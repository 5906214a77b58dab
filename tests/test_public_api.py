"""Each federation module's ``__all__`` is what we mean to export: complete, resolvable, intended."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import typing

import pytest

import federation

MODULES = sorted(
    m.name
    for m in pkgutil.walk_packages(federation.__path__, prefix="federation.")
    if not m.ispkg and not m.name.endswith("__main__")
)

#: The contract other packages (agents) code against. Removing or renaming one of these is a breaking change.
CONTRACT = {
    "federation.tre.validate": {
        "FieldError", "DOMAIN_ID_PATTERN", "check_domain_id", "check_tre_id", "validate_body", "validate_grant",
        "check_header", "check_guardrails", "check_model", "check_inference", "check_labels",
        "parse_rfc3339", "format_rfc3339", "timestamp_from_seconds", "seconds_from_timestamp", "timestamp_ns",
        "check_validity", "MIN_VALIDITY_S", "MAX_VALIDITY_S", "MAX_HOLD_S", "TIMESTAMP_MIN_S", "TIMESTAMP_MAX_S",
    },
    "federation.tre.signing": {
        "Reason", "SigningKey", "sign", "sign_envelope", "sign_grant", "canonical_bytes", "key_id_for",
        "load_public_key",
    },
    "federation.tre.trust": {"TrustStore", "TrustedKey", "MAX_BODY_BYTES"},
    "federation.tre.codec": {"body_from_dict", "body_to_dict", "message_from_dict", "message_to_dict"},
    "federation.tre.yaml": {
        "example_envelope_yaml", "example_body", "load_envelope_yaml", "body_from_yaml", "body_to_yaml",
    },
    "federation.tre.keys": {"KeyFiles", "load_key_file", "write_key_pair"},
    "federation.config": {
        "FederationConfig", "DomainConfig", "BrokerSettings", "TenantConfig", "IntentConfig", "ModelConfig",
        "TokenBucketConfig", "PoissonConfig", "MmooConfig", "load_config", "parse_config", "intent_from_proto",
        "traffic_from_proto",
    },
    "agents.cli.keys": {"register"},
    "agents.cli.tre": {"register"},
    "federation.errors": {
        "TrefedError", "InputError", "SpecError", "ConfigError", "FieldError", "VerificationError", "NoFiniteBound",
    },
}


def _defined_here(module) -> set[str]:
    """Public functions and classes defined in ``module`` itself (not imported, not type variables)."""
    names = set()
    for name, obj in vars(module).items():
        if name.startswith("_") or isinstance(obj, typing.TypeVar):
            continue
        if (inspect.isfunction(obj) or inspect.isclass(obj)) and obj.__module__ == module.__name__:
            names.add(name)
    return names


@pytest.mark.parametrize("name", MODULES)
def test_all_is_explicit_and_resolves(name):
    module = importlib.import_module(name)
    assert hasattr(module, "__all__"), f"{name} has no __all__"
    exported = list(module.__all__)
    assert len(exported) == len(set(exported)), f"{name}.__all__ has duplicates"
    missing = [n for n in exported if not hasattr(module, n)]
    assert not missing, f"{name}.__all__ names undefined {missing}"


@pytest.mark.parametrize("name", sorted(CONTRACT))
def test_contract_modules_export_exactly_their_public_definitions(name):
    module = importlib.import_module(name)
    exported = set(module.__all__)
    assert CONTRACT[name] <= exported, f"{name} lost contract names {CONTRACT[name] - exported}"
    unexported = _defined_here(module) - exported
    assert not unexported, f"{name} defines public {sorted(unexported)} without exporting them (prefix _ or add to __all__)"


def test_contract_signatures():
    from federation.tre import signing, trust, validate

    # the time helpers the agents use instead of their own (_ts, _timestamp, _seconds, _iso)
    assert list(inspect.signature(validate.timestamp_from_seconds).parameters) == ["t", "field"]
    assert list(inspect.signature(validate.seconds_from_timestamp).parameters) == ["ts"]
    assert list(inspect.signature(validate.format_rfc3339).parameters) == ["t", "timespec", "field"]
    assert list(inspect.signature(validate.check_validity).parameters) == ["validity_s", "field"]
    for check in (validate.check_guardrails, validate.check_inference, validate.check_header, validate.check_labels):
        assert "path" in inspect.signature(check).parameters, check.__name__

    assert list(inspect.signature(signing.sign).parameters) == ["body", "key", "wrapper_cls"]
    assert list(inspect.signature(signing.sign_envelope).parameters)[:2] == ["body", "key"]
    assert list(inspect.signature(signing.sign_grant).parameters)[:2] == ["body", "key"]
    verify = inspect.signature(trust.TrustStore.verify_envelope).parameters
    assert {"env", "now", "accept_redelivery"} <= set(verify)
    assert {"signed", "now", "expected_domain"} <= set(inspect.signature(trust.TrustStore.verify_grant).parameters)
    assert {"signed", "body_cls", "domain_of"} <= set(inspect.signature(trust.TrustStore.verify).parameters)
    assert {"key_id", "domain_id", "public_key"} <= set(inspect.signature(trust.TrustStore.add).parameters)
