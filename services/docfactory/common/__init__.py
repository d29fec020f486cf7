"""docfactory.common."""
