"""`python -m docfactory.embedding`: run the embedding service alone."""

from docfactory.app import main_service

if __name__ == "__main__":
    main_service("embedding")
