"""Web console for reviewers, document teams, operators and use-case owners (issue 14)."""
