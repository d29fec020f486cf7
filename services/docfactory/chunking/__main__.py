"""`python -m docfactory.chunking`: run the chunking service alone."""

from docfactory.app import main_service

if __name__ == "__main__":
    main_service("chunking")
