"""Tail-Risk Envelope messages as plain mappings: protobuf <-> dict, field for field.

The mapping form mirrors the protobuf message (the same names as ``trefed tre show`` prints):
enums by name (``NETWORK``, ``RATE_LATENCY``), timestamps as RFC 3339 strings with an explicit
offset (``2026-11-27T00:00:00Z``), durations in seconds, sizes in bits, rates in bits/s,
probabilities as plain numbers. :mod:`federation.tre.yaml` reads and writes it as YAML.

Types are checked here (a number, a string, a list); ranges by :mod:`federation.tre.validate`,
which :func:`body_from_dict` calls. Errors are :class:`~federation.errors.FieldError` naming the
field by its path (``model.mgf[1].theta``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message
from trefed.v1 import envelope_pb2

from federation.errors import FieldError
from federation.tre.validate import parse_rfc3339, validate_body

__all__ = ["body_from_dict", "body_to_dict", "message_from_dict", "message_to_dict"]

_UINT64_MAX = 2**64 - 1
_UINT32_MAX = 2**32 - 1


def _is_map(field: FieldDescriptor) -> bool:
    return field.message_type is not None and field.message_type.GetOptions().map_entry


def _is_repeated(field: FieldDescriptor) -> bool:
    flag = getattr(field, "is_repeated", None)
    if flag is not None:
        return bool(flag)
    return field.label == FieldDescriptor.LABEL_REPEATED  # pragma: no cover - older protobuf


def _scalar(field: FieldDescriptor, value: Any, path: str) -> Any:
    t = field.type
    if t in (FieldDescriptor.TYPE_DOUBLE, FieldDescriptor.TYPE_FLOAT):
        if isinstance(value, bool) or not isinstance(value, (int, float, str)):
            raise FieldError(path, f"(={value!r}) must be a number")
        try:
            return float(value)
        except ValueError:
            raise FieldError(path, f"(={value!r}) must be a number") from None
    if t in (FieldDescriptor.TYPE_UINT64, FieldDescriptor.TYPE_UINT32):
        if isinstance(value, str) and value.strip().isdigit():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            raise FieldError(path, f"(={value!r}) must be a non-negative integer")
        limit = _UINT64_MAX if t == FieldDescriptor.TYPE_UINT64 else _UINT32_MAX
        if not 0 <= value <= limit:
            raise FieldError(path, f"(={value!r}) must be an integer in [0, {limit}]")
        return value
    if t == FieldDescriptor.TYPE_STRING:
        if not isinstance(value, str):
            raise FieldError(path, f"(={value!r}) must be a string (quote it)")
        return value
    if t == FieldDescriptor.TYPE_BOOL:
        if not isinstance(value, bool):
            raise FieldError(path, f"(={value!r}) must be true or false")
        return value
    if t == FieldDescriptor.TYPE_ENUM:
        names = [v.name for v in field.enum_type.values if v.number != 0]
        if isinstance(value, str):
            match = field.enum_type.values_by_name.get(value.strip().upper())
            if match is not None and match.number != 0:
                return match.number
        raise FieldError(path, f"(={value!r}) must be one of {', '.join(names)}")
    raise FieldError(path, f"field type {t} is not supported in YAML")  # pragma: no cover - bytes etc.


def message_from_dict(msg: Message, data: Mapping[str, Any], path: str = "") -> Message:
    """Fill ``msg`` from a YAML-style mapping keyed by proto field names; returns ``msg``.

    Numbers may be given as YAML numbers or numeric strings (``1e9``); enums by value name
    (case-insensitive); ``google.protobuf.Timestamp`` fields as RFC 3339 strings; messages as
    mappings (``null`` leaves them unset); repeated fields as lists; maps as mappings of strings.

    Raises
    ------
    FieldError
        Unknown key, wrong type or bad value, naming the dotted field path.
    """
    if not isinstance(data, Mapping):
        raise FieldError(path or "(top level)", f"must be a mapping of field: value, got {type(data).__name__}")
    desc: Descriptor = msg.DESCRIPTOR
    for key, value in data.items():
        sub = f"{path}.{key}" if path else str(key)
        field = desc.fields_by_name.get(key) if isinstance(key, str) else None
        if field is None:
            known = ", ".join(f.name for f in desc.fields)
            raise FieldError(sub, f"unknown field (known here: {known})")
        if _is_map(field):
            if value is None:
                continue
            if not isinstance(value, Mapping):
                raise FieldError(sub, "must be a mapping")
            target = getattr(msg, key)
            for k, v in value.items():
                if not isinstance(k, str) or not isinstance(v, str):
                    raise FieldError(f"{sub}.{k}", f"(={v!r}) keys and values must be strings (quote them)")
                target[k] = v
        elif _is_repeated(field):
            if value is None:
                continue
            if not isinstance(value, list):
                raise FieldError(sub, f"(={value!r}) must be a list")
            target = getattr(msg, key)
            for i, item in enumerate(value):
                if field.type == FieldDescriptor.TYPE_MESSAGE:
                    message_from_dict(target.add(), item, f"{sub}[{i}]")
                else:
                    target.append(_scalar(field, item, f"{sub}[{i}]"))
        elif field.type == FieldDescriptor.TYPE_MESSAGE:
            if value is None:
                continue
            if field.message_type.full_name == "google.protobuf.Timestamp":
                getattr(msg, key).CopyFrom(parse_rfc3339(value, sub))
            else:
                message_from_dict(getattr(msg, key), value, sub)
        else:
            if value is None:
                raise FieldError(sub, "must have a value")
            setattr(msg, key, _scalar(field, value, sub))
    return msg


def message_to_dict(msg: Message, *, include_defaults: bool = True) -> dict[str, Any]:
    """The YAML-style mapping of ``msg`` (inverse of :func:`message_from_dict`).

    Enums by name, timestamps as RFC 3339, unset sub-messages omitted; scalar fields at their
    default value are included when ``include_defaults``.
    """
    out: dict[str, Any] = {}
    for field in msg.DESCRIPTOR.fields:
        value = getattr(msg, field.name)
        if _is_map(field):
            if value or include_defaults:
                out[field.name] = {k: value[k] for k in sorted(value)}
        elif _is_repeated(field):
            if field.type == FieldDescriptor.TYPE_MESSAGE:
                items: list[Any] = [message_to_dict(v, include_defaults=include_defaults) for v in value]
            elif field.type == FieldDescriptor.TYPE_ENUM:
                items = [field.enum_type.values_by_number[v].name for v in value]
            else:
                items = list(value)
            if items or include_defaults:
                out[field.name] = items
        elif field.type == FieldDescriptor.TYPE_MESSAGE:
            if msg.HasField(field.name):
                if field.message_type.full_name == "google.protobuf.Timestamp":
                    out[field.name] = value.ToJsonString()
                else:
                    out[field.name] = message_to_dict(value, include_defaults=include_defaults)
        elif field.type == FieldDescriptor.TYPE_ENUM:
            if value or include_defaults:
                known = field.enum_type.values_by_number.get(value)
                out[field.name] = known.name if known is not None else value
        elif field.type == FieldDescriptor.TYPE_BYTES:
            if value or include_defaults:
                out[field.name] = value.hex()
        else:
            if value or include_defaults:
                out[field.name] = value
    return out


def body_from_dict(data: Mapping[str, Any], *, validate: bool = True) -> envelope_pb2.EnvelopeBody:
    """An ``EnvelopeBody`` from its YAML-style mapping, range-checked by :func:`validate_body`.

    Raises
    ------
    FieldError
        Naming the field (unknown, wrong type or out of range).
    """
    body = envelope_pb2.EnvelopeBody()
    message_from_dict(body, data)
    if validate:
        validate_body(body)
    return body


def body_to_dict(body: envelope_pb2.EnvelopeBody) -> dict[str, Any]:
    """The YAML-style mapping of an envelope body (every field, defaults included)."""
    return message_to_dict(body)
