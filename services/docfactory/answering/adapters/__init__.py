"""docfactory.answering.adapters."""
