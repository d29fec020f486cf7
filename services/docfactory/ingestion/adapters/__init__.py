"""docfactory.ingestion.adapters."""
