"""`python -m docfactory.answering`: run the answering service alone."""

from docfactory.app import main_service

if __name__ == "__main__":
    main_service("answering")
