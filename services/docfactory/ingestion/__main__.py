"""`python -m docfactory.ingestion`: run the ingestion service alone."""

from docfactory.app import main_service

if __name__ == "__main__":
    main_service("ingestion")
