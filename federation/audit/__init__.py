"""The audit core (docs/design.md section 6). Pure: numpy, protobuf, cryptography, pyarrow; no Ray, no gRPC.

* :mod:`~federation.audit.batches`: signed, hash-chained, columnar telemetry batches from the data
  plane's per-domain logs, and their rules;
* :mod:`~federation.audit.parquet`: the same batches as Parquet files, and back bit for bit;
* :mod:`~federation.audit.chain`: findings, and one domain's chain as the auditor receives it;
* :mod:`~federation.audit.analysis`: one contract judged: consistency, compliance, attribution;
* :mod:`~federation.audit.report`: the signed accountability report, JSON, markdown, verification;
* :mod:`~federation.audit.ledger`: :class:`~federation.audit.ledger.AuditLedger`, what the auditor
  agent serves;
* :mod:`~federation.audit.offline`: ``trefed audit``'s run over files; the contracts file format;
* :mod:`~federation.audit.scenario`: audited data-plane runs with a known answer.
"""
