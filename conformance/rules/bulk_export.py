"""Group-level Bulk Data export (Bulk Data IG 2.0.0 / 3.0.0 export.html; SPEC §4), declaratively.

What a client may send at kick-off, what the files must look like and which elements
tie a compartment resource to its patient: written here once, read by ``bulk.py`` (the
client) and the export checks.
"""

from __future__ import annotations

from dataclasses import dataclass

# The IG's default output format, and the two other spellings a server SHALL accept.
NDJSON = "application/fhir+ndjson"
OUTPUT_FORMATS = (NDJSON, "application/ndjson", "ndjson")
# Content-Type of a downloaded file: the IG's media type (the plain ndjson one is tolerated).
FILE_MEDIA_TYPES = OUTPUT_FORMATS[:2]
# The complete status answer (the manifest) is plain JSON.
MANIFEST_MEDIA_TYPE = "application/json"


@dataclass(frozen=True)
class ExportParameter:
    """A kick-off parameter: its FHIR type, whether a server must support it, where it may be sent."""

    name: str
    type: str                   # FHIR type of the Parameters value (valueString, valueInstant, …)
    required: bool              # SHALL be supported (else optional: unsupported SHOULD be an error)
    post_only: bool = False     # only in a POST Parameters body
    requirement: str | None = None


PARAMETERS = {p.name: p for p in (
    ExportParameter("_outputFormat", "valueString", True, requirement="BULK-EXPORT-OUTPUT-FORMAT"),
    ExportParameter("_since", "valueInstant", True, requirement="BULK-EXPORT-SINCE"),
    ExportParameter("_type", "valueString", True, requirement="BULK-EXPORT-TYPE"),
    ExportParameter("_until", "valueInstant", False),
    ExportParameter("_elements", "valueString", False, requirement="BULK-EXPORT-ELEMENTS"),
    ExportParameter("_typeFilter", "valueString", False, requirement="BULK-EXPORT-LENIENT"),
    ExportParameter("patient", "valueReference", False, post_only=True, requirement="BULK-EXPORT-PATIENT"),
    ExportParameter("includeAssociatedData", "valueString", False),
)}

# Elements that put a compartment resource in a patient's compartment (subject, patient, for, beneficiary).
PATIENT_REFERENCE_FIELDS = ("subject", "patient", "for", "beneficiary")
# Types a server may add because exported resources reference them, regardless of _since (the IG allows it).
REFERENCED_ONLY = frozenset({"Practitioner", "PractitionerRole", "Organization", "Location", "Medication",
                             "Device", "Endpoint", "HealthcareService"})
