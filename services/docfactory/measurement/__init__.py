"""Measurement of real gains: feedback on answers, usage records, the manager's report."""
