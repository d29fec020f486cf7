"""docfactory.answering."""
