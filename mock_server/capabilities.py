"""CapabilityStatement assembled from what each resource blueprint declares it supports."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone

from flask import Blueprint, Flask, Response, current_app, request

from .deviations import deviates
from .http import fhir_response
from .urls import base_url
from .variants import varies

bp = Blueprint("metadata", __name__)
SMART_OAUTH = "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris"


def _security(base: str) -> dict:
    """rest.security: SMART-on-FHIR, and where the token endpoint is (the oauth-uris extension)."""
    return {
        "service": [
            {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/restful-security-service", "code": "SMART-on-FHIR"}]}
        ],
        "extension": [
            {"url": SMART_OAUTH, "extension": [{"url": "token", "valueUri": f"{base}/auth/token/"}]}
        ],
    }


BULK_DATA_CAPABILITY = "http://hl7.org/fhir/uv/bulkdata/CapabilityStatement/bulk-data"


@dataclass(frozen=True)
class ResourceCapability:
    """What one resource type supports; search_params are (name, FHIR search type) pairs."""

    type: str
    interactions: tuple[str, ...]
    search_params: tuple[tuple[str, str], ...] = ()
    operations: tuple[tuple[str, str], ...] = ()  # (name, definition canonical)
    profiles: tuple[str, ...] = ()
    documentation: str | None = None
    interaction_docs: tuple[tuple[str, str], ...] = ()  # (interaction, what exactly it supports)


def declare(blueprint: Blueprint, capability: ResourceCapability) -> None:
    """Record ``capability`` on the app when ``blueprint`` is registered."""

    def record(state) -> None:  # type: ignore[no-untyped-def]
        state.app.extensions.setdefault("fhir.capabilities", []).append(capability)

    blueprint.record_once(record)


def capabilities(app: Flask) -> list[ResourceCapability]:
    """One entry per resource type: what several blueprints declare for a type is merged."""
    merged: dict[str, ResourceCapability] = {}
    for cap in app.extensions.get("fhir.capabilities", []):
        old = merged.get(cap.type)
        if old is None:
            merged[cap.type] = cap
            continue
        docs = " ".join(d for d in (old.documentation, cap.documentation) if d) or None
        merged[cap.type] = ResourceCapability(
            cap.type, tuple(dict.fromkeys(old.interactions + cap.interactions)),
            tuple(dict.fromkeys(old.search_params + cap.search_params)),
            tuple(dict.fromkeys(old.operations + cap.operations)),
            tuple(dict.fromkeys(old.profiles + cap.profiles)), docs,
            tuple(dict.fromkeys(old.interaction_docs + cap.interaction_docs)))
    return list(merged.values())


READ_ONLY = ("read", "search-type")


def _interactions(cap: ResourceCapability) -> tuple[str, ...]:
    """What variants change in the declared interactions (the routes check the same variants)."""
    from .resources.directory import WRITABLE, writable

    if cap.type == "Group" and varies("groups-read-only-quantity"):
        return tuple(i for i in cap.interactions if i in READ_ONLY)
    if writable(cap.type):
        return cap.interactions + WRITABLE
    return cap.interactions


def _resource(cap: ResourceCapability) -> dict:
    docs = dict(cap.interaction_docs)
    out: dict = {"type": cap.type, "interaction": [
        {"code": i, **({"documentation": docs[i]} if i in docs else {})} for i in _interactions(cap)]}
    if cap.documentation and not (varies("generic-fhir") and "canvasmedical" in cap.documentation):
        out["documentation"] = cap.documentation
    if cap.profiles:
        out["supportedProfile"] = list(cap.profiles)
        if len(cap.profiles) == 1 and varies("supported-profile-string"):
            out["supportedProfile"] = cap.profiles[0]
    if cap.search_params:
        out["searchParam"] = [{"name": n, "type": t} for n, t in cap.search_params]
    operations = () if cap.type == "Patient" and varies("patient-export-undeclared") else cap.operations
    if operations:
        out["operation"] = [{"name": n, "definition": d} for n, d in operations]
        if cap.type == "Group" and deviates("export-definition-url-wrong"):
            out["operation"] = [{"name": n, "definition": d.replace("/group-export", "/export")}
                                for n, d in operations]
    return out


@bp.get("/metadata")
def metadata() -> Response:
    """No authentication: clients read this to discover what applies."""
    base = base_url()
    statement = {
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": datetime.now(timezone.utc).date().isoformat(),
        "publisher": "fhir-conformance-kit",
        "kind": "instance",
        **({} if deviates("capability-no-instantiates") else {"instantiates": [BULK_DATA_CAPABILITY]}),
        "software": {"name": "fhir-mock"},
        "implementation": {"description": "FHIR conformance kit reference mock", "url": base},
        "fhirVersion": "4.0.1",
        "format": ["json"],
        "rest": [
            {
                "mode": "server",
                "resource": [_resource(c) for c in capabilities(current_app)],
            }
        ],
    }
    if not varies("open-server"):       # an open server declares no authorization
        statement["rest"][0]["security"] = _security(base)
    return fhir_response(statement)
