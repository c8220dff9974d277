"""Bulk Cohort API support in the suite: member-filter parsing, FHIR search semantics
in memory, and the membership oracle."""
