"""Bulk Data IG: TLS 1.2+ on every origin the client talks to, and the CapabilityStatement's
declarations of the IG (instantiates, the group-export OperationDefinition)."""

from __future__ import annotations

import ssl

import pytest

from conformance import smart
from conformance.client import FhirClient
from conformance.markers import check, needs, profile
from conformance.session import ConformanceRun
from conformance.verdicts import expect

pytestmark = [profile("bulk-export"), needs("Group", operation="export")]

BULK_CAPABILITY = "http://hl7.org/fhir/uv/bulkdata/CapabilityStatement/bulk-data"
GROUP_EXPORT_DEFINITION = "http://hl7.org/fhir/uv/bulkdata/OperationDefinition/group-export"
ENDPOINTS = ("fhir-base", "token-endpoint", "file-server")
TLS_SHALL = "the Bulk Data IG says all exchanges SHALL be secured using TLS 1.2 or a more recent version"


def _endpoint(which: str, request: pytest.FixtureRequest, run: ConformanceRun) -> str:
    """The URL of ``which``; skipped when the target has none or it shares the FHIR base's origin."""
    if which == "fhir-base":
        return run.target
    if which == "token-endpoint":
        url = run.settings.token_url or smart.discovery(run).token_endpoint or run.capabilities.token_url()
        if not url:
            pytest.skip("the target names no token endpoint (no smart-configuration, no oauth-uris)")
    else:
        export = request.getfixturevalue("baseline_export")
        if not export.files:
            pytest.skip("the export produced no file, so there is no file server to look at")
        url = export.files[0].url
    if smart.origin(url) == smart.origin(run.target):
        pytest.skip(f"the {which} shares the FHIR base's origin {smart.origin(url)} (checked as fhir-base)")
    return url


@check("tls-version", "BULK-TLS")
@pytest.mark.parametrize("which", ENDPOINTS)
def test_https_origin_negotiates_tls_1_2_or_later(which: str, request: pytest.FixtureRequest,
                                                   conformance_run: ConformanceRun):
    url = _endpoint(which, request, conformance_run)
    if not url.startswith("https://"):
        pytest.skip(f"the {which} {smart.origin(url)} is plain http: no TLS to negotiate (see tls-plain-http)")
    try:
        version = smart.negotiated_tls(conformance_run, url)
    except (ssl.SSLError, OSError) as exc:
        raise RuntimeError(f"no TLS handshake with {smart.origin(url)}: {exc}") from None
    expect("BULK-TLS", smart.tls_is_modern(version),
           f"the {which} {smart.origin(url)} negotiated {version}; {TLS_SHALL}")


@check("tls-plain-http", "BULK-TLS-HTTP")
@pytest.mark.parametrize("which", ENDPOINTS)
def test_origin_is_not_plain_http(which: str, request: pytest.FixtureRequest, conformance_run: ConformanceRun):
    url = _endpoint(which, request, conformance_run)
    expect("BULK-TLS-HTTP", url.startswith("https://"),
           f"the {which} {smart.origin(url)} is served over plain http, so health data and bearer tokens cross "
           f"the network unencrypted; {TLS_SHALL} (a warning here, not a failure, for development servers)")


@check("declare-instantiates", "BULK-DECLARE-INSTANTIATES")
def test_capability_statement_instantiates_bulk_data(conformance_run: ConformanceRun, anonymous_fhir: FhirClient):
    anonymous_fhir.get("metadata", auth=False)
    declared = (conformance_run.capabilities.statement or {}).get("instantiates")
    urls = [u.split("|")[0] for u in declared if isinstance(u, str)] if isinstance(declared, list) else []
    expect("BULK-DECLARE-INSTANTIATES", BULK_CAPABILITY in urls,
           f"CapabilityStatement.instantiates is {declared!r}, expected it to list {BULK_CAPABILITY}",
           anonymous_fhir.recorder.last)


@check("declare-group-export-definition", "BULK-DECLARE-OPDEF")
def test_group_export_names_its_operation_definition(conformance_run: ConformanceRun, anonymous_fhir: FhirClient):
    anonymous_fhir.get("metadata", auth=False)
    group = conformance_run.capabilities.resources.get("Group", {})
    definitions = [str(o.get("definition", "")) for o in group.get("operation", [])
                   if isinstance(o, dict) and str(o.get("name", "")).lstrip("$") == "export"]
    expect("BULK-DECLARE-OPDEF", any(d.split("|")[0] == GROUP_EXPORT_DEFINITION for d in definitions),
           f"Group's export operation has definition {definitions!r}, expected {GROUP_EXPORT_DEFINITION}",
           anonymous_fhir.recorder.last)
