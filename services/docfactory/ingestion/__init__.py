"""docfactory.ingestion."""
