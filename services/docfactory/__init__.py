"""docfactory: sovereign document-processing microservices."""

__version__ = "0.1.0"
