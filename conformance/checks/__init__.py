"""The conformance checks, shipped inside the package and run by ``fhir-conformance run``."""
