"""FHIR conformance suite: pytest checks for Canvas-style Group/Task, Bulk Data
Group export and the Bulk Cohort API, runnable against any target URL."""

__version__ = "0.1.0"
