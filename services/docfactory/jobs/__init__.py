"""Durable bulk ingestion from object storage (MinIO/S3 or a local folder): JobsService."""
