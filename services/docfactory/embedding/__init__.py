"""docfactory.embedding."""
