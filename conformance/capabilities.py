"""What the target says it supports, read from its CapabilityStatement.

Checks declare what they need (a resource interaction, a search parameter, an
operation, a profile); anything the target does not declare is skipped with the
reason, never failed. An explicit ``--profile`` overrides detection.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

BULK_COHORT_PROFILE = "http://hl7.org/fhir/uv/bulkdata/StructureDefinition/bulk-cohort-group"
CANVAS_MARKER = "http://schemas.canvasmedical.com/fhir/extensions/task-group"
OAUTH_URIS = "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris"


@dataclass(frozen=True)
class Need:
    """One thing a check needs the target to declare."""

    resource: str
    interaction: str | None = None
    search_param: str | None = None
    operation: str | None = None

    def describe(self) -> str:
        if self.search_param:
            return f"search parameter '{self.search_param}' on {self.resource}"
        if self.operation:
            return f"operation '${self.operation}' on {self.resource}"
        if self.interaction:
            return f"interaction '{self.interaction}' on {self.resource}"
        return f"resource {self.resource}"


@dataclass
class Capabilities:
    """The parts of a CapabilityStatement the suite uses."""

    statement: dict[str, Any] | None
    resources: dict[str, dict[str, Any]] = field(default_factory=dict)

    @classmethod
    def from_statement(cls, statement: dict[str, Any] | None) -> "Capabilities":
        resources: dict[str, dict[str, Any]] = {}
        if statement and statement.get("resourceType") == "CapabilityStatement":
            for rest in statement.get("rest", []):
                if rest.get("mode", "server") != "server":
                    continue
                for res in rest.get("resource", []):
                    if isinstance(res, dict) and "type" in res:
                        resources[res["type"]] = res
        return cls(statement, resources)

    def interactions(self, resource: str) -> set[str]:
        res = self.resources.get(resource, {})
        return {i.get("code") for i in res.get("interaction", []) if isinstance(i, dict)}

    def search_params(self, resource: str) -> set[str]:
        res = self.resources.get(resource, {})
        return {p.get("name") for p in res.get("searchParam", []) if isinstance(p, dict)}

    def operations(self, resource: str) -> set[str]:
        res = self.resources.get(resource, {})
        names = {o.get("name", "").lstrip("$") for o in res.get("operation", []) if isinstance(o, dict)}
        return names

    def supported_profiles(self, resource: str) -> set[str]:
        """Group.supportedProfile; a lone string (a departure, see ``profile_as_string``) still counts."""
        value = self.resources.get(resource, {}).get("supportedProfile", [])
        if isinstance(value, str):
            return {value}
        return {p for p in value if isinstance(p, str)} if isinstance(value, list) else set()

    def profile_as_string(self, resource: str) -> bool:
        return isinstance(self.resources.get(resource, {}).get("supportedProfile"), str)

    def satisfies(self, need: Need) -> bool:
        if need.resource not in self.resources:
            return False
        if need.interaction and need.interaction not in self.interactions(need.resource):
            return False
        if need.search_param and need.search_param not in self.search_params(need.resource):
            return False
        if need.operation and need.operation not in self.operations(need.resource):
            return False
        return True

    def operation_definitions(self, resource: str) -> set[str]:
        res = self.resources.get(resource, {})
        return {str(o.get("definition", "")) for o in res.get("operation", []) if isinstance(o, dict)}

    def shows_canvas(self) -> bool:
        """SPEC §0: the task-group extension URL anywhere, or software.name / publisher naming Canvas."""
        if not self.statement:
            return False
        if CANVAS_MARKER in json.dumps(self.statement):
            return True
        software = self.statement.get("software") if isinstance(self.statement.get("software"), dict) else {}
        names = (str(software.get("name", "")), str(self.statement.get("publisher", "")))
        return any("canvas" in n.lower() for n in names)

    def declares_group_export(self) -> bool:
        return "export" in self.operations("Group") or any(
            d.split("|")[0].rstrip("/").endswith("group-export") for d in self.operation_definitions("Group"))

    def declared_profiles(self) -> set[str]:
        """Which of the kit's profiles apply to this target (SPEC §0 detection rules).

        Declaring Group create and read is not enough for ``canvas``: every FHIR server with
        Groups does; only a Canvas marker is.
        """
        found = {"fhir-core"}
        if self.shows_canvas():
            found.add("canvas")
        if self.declares_group_export():
            found.add("bulk-export")
        if any(p.split("|")[0] == BULK_COHORT_PROFILE for p in self.supported_profiles("Group")):
            found.add("bulk-cohort")
        return found

    def token_url(self) -> str | None:
        """The OAuth token endpoint advertised under rest.security, if any."""
        for rest in (self.statement or {}).get("rest", []):
            for ext in rest.get("security", {}).get("extension", []):
                if ext.get("url") == OAUTH_URIS:
                    for sub in ext.get("extension", []):
                        if sub.get("url") == "token":
                            return sub.get("valueUri")
        return None
