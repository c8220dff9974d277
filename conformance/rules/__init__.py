"""Declarative descriptions of each profile's rules (one place per rule)."""
