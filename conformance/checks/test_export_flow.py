"""Group $export: kick-off, status polling, manifest, files, auth, cancel (SPEC §4; Bulk Data IG export.html)."""

from __future__ import annotations

from datetime import datetime
from email.utils import parsedate_to_datetime
from urllib.parse import parse_qsl, unquote, urlsplit

import pytest

from conformance.bulk import BulkClient, ExportTimeout, parameters_body, retry_after_seconds
from conformance.client import json_or_none
from conformance.expectations import expect_error, is_operation_outcome
from conformance.markers import check, needs, profile
from conformance.rules.bulk_export import FILE_MEDIA_TYPES, MANIFEST_MEDIA_TYPE, NDJSON, OUTPUT_FORMATS, PARAMETERS
from conformance.rules.group import PATIENT_GROUP_TYPE
from conformance.target import iterate_search
from conformance.verdicts import expect

from .support.api import create_patient_group
from .support.export import CompletedExport, ExportGroup, require_complete, require_kickoff

pytestmark = [profile("bulk-export"), needs("Group", operation="export")]

NOT_SUPPORTED = (404, 405, 501)   # how servers without a POST route answer one
UNSUPPORTED_FORMAT = "application/x-fhirck-no-such-format"


@check("export-kickoff-get", "BULK-EXPORT-KICKOFF", "BULK-EXPORT-STATUS")
def test_get_kickoff_completes(baseline_export: CompletedExport):
    poll = baseline_export.poll
    content_type = poll.response.headers.get("content-type", "")
    expect("BULK-EXPORT-STATUS", "json" in content_type,
           f"the complete status answer has Content-Type {content_type!r}, expected {MANIFEST_MEDIA_TYPE}", poll.exchange)
    expect("BULK-EXPORT-STATUS", all(p.status in (202, 429, 500, 502, 503, 504) for p in poll.polls[:-1]),
           f"in-progress status answers were {[p.status for p in poll.polls[:-1]]}, expected 202", poll.exchange)


@check("export-retry-after", "BULK-EXPORT-RETRY-AFTER")
def test_in_progress_answers_carry_retry_after(baseline_export: CompletedExport):
    waiting = [p for p in baseline_export.poll.polls if p.status in (202, 429)]
    if not waiting:
        pytest.skip("the export completed before any poll saw it in progress")
    missing = [p for p in waiting if retry_after_seconds(p.retry_after) is None]
    expect("BULK-EXPORT-RETRY-AFTER", not missing,
           f"{len(missing)} of {len(waiting)} in-progress status answers had no valid Retry-After "
           f"(values {[p.retry_after for p in missing][:3]})", baseline_export.poll.exchange)
    long = [p.progress for p in waiting if p.progress is not None and len(p.progress) >= 100]
    expect("BULK-EXPORT-STATUS", not long, f"X-Progress longer than 100 characters: {long[:1]}",
           baseline_export.poll.exchange)


@check("export-expires", "BULK-EXPORT-EXPIRES")
def test_expires_when_sent_is_an_http_date(baseline_export: CompletedExport):
    value = baseline_export.poll.response.headers.get("expires")
    if value is None:
        pytest.skip("the complete status answer carries no Expires header (optional: the IG says MAY)")
    expect("BULK-EXPORT-EXPIRES", _http_date(value) is not None,
           f"the complete status answer's Expires {value!r} is not an HTTP-date", baseline_export.poll.exchange)


def _http_date(value: str) -> datetime | None:
    try:
        return parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None


def _same_request(reported: str, sent: str) -> bool:
    a, b = urlsplit(reported), urlsplit(sent)
    return (unquote(a.path).rstrip("/") == unquote(b.path).rstrip("/")
            and sorted(parse_qsl(a.query, keep_blank_values=True)) == sorted(parse_qsl(b.query, keep_blank_values=True)))


@check("export-manifest", "BULK-EXPORT-MANIFEST")
def test_manifest_fields(baseline_export: CompletedExport, bulk: BulkClient):
    m, ex = baseline_export.manifest, baseline_export.poll.exchange
    sent = baseline_export.request_url
    expect("BULK-EXPORT-MANIFEST", isinstance(m.get("transactionTime"), str) and "T" in m["transactionTime"],
           f"transactionTime missing or not an instant: {m.get('transactionTime')!r}", ex)
    expect("BULK-EXPORT-MANIFEST", isinstance(m.get("request"), str) and _same_request(m["request"], sent),
           f"request is {m.get('request')!r}, expected the kick-off URL {sent!r} (with its query)", ex)
    expect("BULK-EXPORT-MANIFEST", isinstance(m.get("requiresAccessToken"), bool),
           f"requiresAccessToken is {m.get('requiresAccessToken')!r}, expected a boolean", ex)
    output = m.get("output")
    expect("BULK-EXPORT-MANIFEST", isinstance(output, list), f"output is {type(output).__name__}, expected an array", ex)
    bad = [e for e in output if not (isinstance(e, dict) and isinstance(e.get("type"), str)
                                      and str(e.get("url", "")).startswith(("http://", "https://")))]
    expect("BULK-EXPORT-MANIFEST", not bad, f"{len(bad)} output entries lack a type or an absolute url: {bad[:2]}", ex)
    expect("BULK-EXPORT-MANIFEST", isinstance(m.get("error"), list),
           f"error is {m.get('error')!r}, expected an array (empty when there are no errors)", ex)


@check("export-files", "BULK-EXPORT-FILE-LINES")
def test_every_file_and_line(baseline_export: CompletedExport):
    expect("BULK-EXPORT-FILE-LINES", baseline_export.files, "the export produced no output file", baseline_export.poll.exchange)
    counts = {e.get("url"): e.get("count") for e in baseline_export.manifest.get("output", []) if isinstance(e, dict)}
    problems, first = [], None
    for f in baseline_export.files:
        if f.status != 200:
            problems.append(f"{f.type} file {f.url}: HTTP {f.status}")
        elif not f.content_type.startswith(FILE_MEDIA_TYPES):
            problems.append(f"{f.type} file {f.url}: Content-Type {f.content_type!r}, expected {NDJSON}")
        elif f.problem_count:
            problems.append(f.summary())
        elif isinstance(counts.get(f.url), int) and counts[f.url] != f.lines:
            problems.append(f"{f.type} file {f.url}: manifest count {counts[f.url]} but {f.lines} lines")
        else:
            continue
        first = first or f.exchange
    expect("BULK-EXPORT-FILE-LINES", not problems,
           f"{len(problems)} of {len(baseline_export.files)} files have problems: " + " | ".join(problems), first)


@check("export-file-needs-token", "BULK-EXPORT-FILE-AUTH", "BULK-EXPORT-FILE-AUTH-STATUS")
def test_download_without_token_fails(baseline_export: CompletedExport, bulk: BulkClient):
    if baseline_export.manifest.get("requiresAccessToken") is not True:
        pytest.skip("the manifest says requiresAccessToken is not true: files are open by design")
    if not baseline_export.files:
        pytest.skip("the export produced no file to try")
    f = baseline_export.files[0]
    anonymous = bulk.download(f.type, f.url, auth=False, check_lines=False)
    expect("BULK-EXPORT-FILE-AUTH", anonymous.status is not None and 400 <= anonymous.status < 500,
           f"downloading {f.url} without a token was answered {anonymous.status}, expected 400 or 401",
           anonymous.exchange)
    expect("BULK-EXPORT-FILE-AUTH-STATUS", anonymous.status in (400, 401),
           f"downloading {f.url} without a token was refused with {anonymous.status}, expected 400 or 401",
           anonymous.exchange)


@check("export-kickoff-no-auth", "BULK-EXPORT-AUTH")
def test_kickoff_without_token_is_401(bulk: BulkClient, export_group: ExportGroup, anonymous_fhir):
    response, _ = bulk.kickoff(export_group.id, client=anonymous_fhir)
    expect_error(anonymous_fhir, response, "BULK-EXPORT-AUTH", (401,), "kick-off without a token")


@check("export-unknown-group", "BULK-EXPORT-UNKNOWN-GROUP")
def test_unknown_group_is_404(bulk: BulkClient, target_data, fhir):
    response, _ = bulk.kickoff(target_data.missing_id())
    expect_error(fhir, response, "BULK-EXPORT-UNKNOWN-GROUP", (404,), "kick-off for an unknown group")


@check("export-output-format", "BULK-EXPORT-OUTPUT-FORMAT")
@pytest.mark.parametrize("spelling", OUTPUT_FORMATS)
def test_output_format_spellings_accepted(spelling: str, bulk: BulkClient, export_group: ExportGroup):
    response, location = bulk.kickoff(export_group.id, {"_outputFormat": spelling})
    try:
        require_kickoff(bulk, response, location, f"kick-off with _outputFormat={spelling}", "BULK-EXPORT-OUTPUT-FORMAT")
    finally:
        if location:
            bulk.delete(location)


@check("export-output-format-unknown", "BULK-EXPORT-OUTPUT-FORMAT-UNSUPPORTED")
def test_unknown_output_format_refused(bulk: BulkClient, export_group: ExportGroup, fhir):
    # a format no server supports: real servers MAY add formats (text/csv, ...), so none of those is used
    response, location = bulk.kickoff(export_group.id, {"_outputFormat": UNSUPPORTED_FORMAT})
    if location:
        bulk.delete(location)
    expect_error(fhir, response, "BULK-EXPORT-OUTPUT-FORMAT-UNSUPPORTED", range(400, 500),
                 f"kick-off with _outputFormat={UNSUPPORTED_FORMAT}")


@check("export-kickoff-post", "BULK-EXPORT-KICKOFF-POST")
def test_post_kickoff(bulk: BulkClient, export_group: ExportGroup):
    body = parameters_body([("_type", PARAMETERS["_type"].type, "Patient"),
                            ("_outputFormat", PARAMETERS["_outputFormat"].type, NDJSON)])
    response, location = bulk.kickoff(export_group.id, parameters=body)
    if response.status_code in NOT_SUPPORTED:      # POST kick-off is a MAY (IG export.html)
        pytest.skip(f"the target does not support POST kick-off (HTTP {response.status_code})")
    status_url = require_kickoff(bulk, response, location, "POST kick-off", "BULK-EXPORT-KICKOFF-POST")
    try:
        result = require_complete(bulk, status_url, "POST kick-off")
        types = {e.get("type") for e in (result.manifest or {}).get("output", []) if isinstance(e, dict)}
        expect("BULK-EXPORT-KICKOFF-POST", types <= {"Patient"},
               f"POST with _type=Patient exported {sorted(map(str, types))}", result.exchange)
    finally:
        bulk.delete(status_url)


@check("export-delete", "BULK-EXPORT-DELETE")
def test_delete_cancels(bulk: BulkClient, export_group: ExportGroup, fhir):
    response, location = bulk.kickoff(export_group.id, {"_type": "Patient"})
    status_url = require_kickoff(bulk, response, location, "kick-off to cancel")
    deleted = bulk.delete(status_url)
    expect("BULK-EXPORT-DELETE", deleted.status_code == 202,
           f"DELETE of the status URL answered {deleted.status_code}, expected 202", fhir.recorder.last)
    after = fhir.request("GET", status_url, headers={"Accept": "application/json"})
    expect("BULK-EXPORT-DELETE", after.status_code == 404,
           f"polling a deleted export answered {after.status_code}, expected 404", fhir.recorder.last)
    expect("BULK-EXPORT-DELETE", is_operation_outcome(json_or_none(after)),
           "the 404 for a deleted export carries no OperationOutcome", fhir.recorder.last)


@check("export-lenient", "BULK-EXPORT-LENIENT")
def test_unsupported_parameter_refused_or_lenient(bulk: BulkClient, export_group: ExportGroup, fhir):
    params = {"_type": "Patient", "_typeFilter": "Patient?active=true"}
    strict, location = bulk.kickoff(export_group.id, params)
    if location:
        bulk.delete(location)
    if strict.status_code != 202:
        expect_error(fhir, strict, "BULK-EXPORT-LENIENT", range(400, 500), "kick-off with an unsupported _typeFilter")
    lenient, location = bulk.kickoff(export_group.id, params, headers={"Prefer": "respond-async, handling=lenient"})
    if location:
        bulk.delete(location)
    expect("BULK-EXPORT-LENIENT", lenient.status_code == 202,
           f"kick-off with _typeFilter and Prefer: handling=lenient answered {lenient.status_code}, expected 202",
           fhir.recorder.last)


UNKNOWN_TYPE = "FhirckNoSuchType"        # a type no server exports (real servers MAY export any real type)
INVALID_PARAMETERS = {                     # case -> (name, value[x] key in a POST, value)
    "type-unknown": ("_type", PARAMETERS["_type"].type, UNKNOWN_TYPE),
    "since-not-a-date": ("_since", PARAMETERS["_since"].type, "yesterday"),
    "since-impossible-date": ("_since", PARAMETERS["_since"].type, "2024-13-01T00:00:00Z"),
}


@check("export-invalid-parameter", "BULK-EXPORT-INVALID-PARAM")
@pytest.mark.parametrize("form", ("get", "post"))
@pytest.mark.parametrize("case", sorted(INVALID_PARAMETERS))
def test_invalid_parameter_value_refused(case: str, form: str, bulk: BulkClient, export_group: ExportGroup, fhir):
    """Each malformed value in each parameter form (query string, Parameters body): an error, not a 202."""
    name, key, value = INVALID_PARAMETERS[case]
    if form == "post":
        response, location = bulk.kickoff(export_group.id, parameters=parameters_body([(name, key, value)]))
    else:
        response, location = bulk.kickoff(export_group.id, {name: value})
    if location:
        bulk.delete(location)
    if form == "post" and response.status_code in NOT_SUPPORTED:    # POST kick-off is a MAY
        pytest.skip(f"the target does not support POST kick-off (HTTP {response.status_code})")
    expect_error(fhir, response, "BULK-EXPORT-INVALID-PARAM", range(400, 500),
                 f"{form.upper()} kick-off with {name}={value}")


@check("export-empty-group", "BULK-EXPORT-EMPTY-GROUP")
def test_empty_group_export_ends(bulk: BulkClient, conformance_run, fhir, ledger, target_data):
    """A group without members: complete (no Patient exported) or failed with an OperationOutcome, within
    --export-timeout; still in progress then is the departure (servers that wait for members for ever)."""
    gid = None
    if "create" in conformance_run.capabilities.interactions("Group"):
        gid = create_patient_group(fhir, ledger, target_data.run_prefix, "empty export", [])
    if gid is None:
        gid = next((g["id"] for g in iterate_search(fhir, "Group", {"type": PATIENT_GROUP_TYPE, "_count": 50}, max_pages=4)
                    if g.get("id") and g.get("quantity") == 0 and not g.get("member")), None)
    if gid is None:
        pytest.skip("no group without members: Group create is not declared (or was refused) and "
                    "Group?type=person found none with quantity 0")
    response, location = bulk.kickoff(gid, {"_type": "Patient"})
    if 400 <= response.status_code < 500 and is_operation_outcome(json_or_none(response)):
        return     # refused up front with an OperationOutcome: it ended, as the rule asks
    status_url = require_kickoff(bulk, response, location, f"kick-off of Group/{gid} (no members)")
    limit = conformance_run.settings.export_timeout
    try:
        result = bulk.poll(status_url, timeout=limit)
    except ExportTimeout as exc:
        expect("BULK-EXPORT-EMPTY-GROUP", False,
               f"the export of Group/{gid}, a group without members, was still in progress after --export-timeout "
               f"{limit:g} s: {exc}", fhir.recorder.last)
        return
    finally:
        bulk.delete(status_url)
    if result.outcome != "complete":
        expect("BULK-EXPORT-EMPTY-GROUP", is_operation_outcome(json_or_none(result.response)),
               f"the export of Group/{gid} (no members) failed with HTTP {result.response.status_code} without an "
               "OperationOutcome", result.exchange)
        return
    patients = [e for e in (result.manifest or {}).get("output", []) or []
                if isinstance(e, dict) and e.get("type") == "Patient" and e.get("count") not in (0, None)]
    expect("BULK-EXPORT-EMPTY-GROUP", not patients,
           f"the export of Group/{gid}, a group without members, lists Patient output {patients[:2]}", result.exchange)
