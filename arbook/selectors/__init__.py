"""Selectors: the business logic that reads (pull)."""
