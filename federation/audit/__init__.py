"""The audit core: signed telemetry batches, their Parquet files, findings, compliance, attribution
and signed accountability reports (docs/design.md section 6). Pure: no Ray, no gRPC."""
