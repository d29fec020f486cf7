"""docfactory.embedding.adapters."""
