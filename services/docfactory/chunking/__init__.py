"""docfactory.chunking."""
