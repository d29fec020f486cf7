"""docfactory.core."""
