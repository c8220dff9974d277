"""Hypothesis strategies built from the declarative profiles in ``rules/``."""
