"""docfactory.index."""
