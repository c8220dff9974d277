"""One blueprint per FHIR resource type; each declares its capabilities."""
