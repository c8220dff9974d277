"""fhir-mock command line: parse options into a MockConfig and serve it with waitress."""
from __future__ import annotations

import argparse
import logging
import sqlite3
import sys
from pathlib import Path
from typing import Sequence

from .auth import parse_scopes
from .config import FAULTS, MockConfig
from .deviations import DEVIATIONS
from .variants import VARIANTS


def _scopes(text: str) -> str:
    """The scopes of a credential option, normalised; a malformed one is a usage error."""
    try:
        return " ".join(parse_scopes(text))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _token(value: str) -> tuple[str, str]:
    secret, _, scopes = value.partition(":")
    if not secret:
        raise argparse.ArgumentTypeError("expected SECRET[:SCOPES]")
    return secret, _scopes(scopes)


def _client(value: str) -> tuple[str, str, str]:
    client_id, _, rest = value.partition(":")
    secret, _, scopes = rest.partition(":")
    if not client_id or not secret:
        raise argparse.ArgumentTypeError("expected ID:SECRET[:SCOPES]")
    return client_id, secret, _scopes(scopes)


def _jwks_client(value: str) -> tuple[str, dict, str]:
    import json

    client_id, _, rest = value.partition(":")
    path, _, scopes = rest.partition(":")
    if not client_id or not path:
        raise argparse.ArgumentTypeError("expected ID:JWKS_FILE[:SCOPES]")
    try:
        jwks = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise argparse.ArgumentTypeError(f"cannot read JWKS {path}: {exc}") from None
    if "keys" not in jwks:
        jwks = {"keys": [jwks]}
    return client_id, jwks, _scopes(scopes)


def _deviation(value: str) -> str:
    if value not in DEVIATIONS:
        raise argparse.ArgumentTypeError(f"unknown deviation '{value}'; valid: {', '.join(sorted(DEVIATIONS))}")
    return value


def _variant(value: str) -> str:
    if value not in VARIANTS:
        raise argparse.ArgumentTypeError(f"unknown variant '{value}'; valid: {', '.join(sorted(VARIANTS))}")
    return value


def _port(value: str) -> int:
    try:
        port = int(value)
    except ValueError:
        port = -1
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"invalid port '{value}' (0-65535; 0 picks a free port)")
    return port


def _non_negative(value: str) -> int:
    if not value.isdigit():
        raise argparse.ArgumentTypeError(f"expected a non-negative integer, got '{value}'")
    return int(value)


def _non_negative_float(value: str) -> float:
    try:
        seconds = float(value)
    except ValueError:
        seconds = -1.0
    if not 0 <= seconds < float("inf"):
        raise argparse.ArgumentTypeError(f"expected a number of seconds >= 0, got '{value}'")
    return seconds


def _positive(value: str) -> int:
    if not value.isdigit() or int(value) < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got '{value}'")
    return int(value)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="fhir-mock", description="Reference FHIR mock server of the conformance kit.")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=_port, default=8080, help="0 picks a free port")
    p.add_argument("--db", default="fhir-mock.sqlite3", help="SQLite file, or :memory:")
    p.add_argument("--export-dir", metavar="DIR", help="where export files go (default: <db>.exports/)")
    p.add_argument("--base-url", metavar="URL",
                   help="public base URL for Location, Content-Location and manifest URLs (default: the listening address)")
    p.add_argument("--access-log", metavar="FILE", help="write one line per request to FILE ('-' for stderr)")
    p.add_argument("--token", type=_token, action="append", metavar="SECRET[:SCOPES]",
                   help="static bearer token (repeatable). Any --token, --client or --jwks-client switches off "
                        "every built-in development credential (dev-token, dev-readonly-token, dev-client)")
    p.add_argument("--client", type=_client, action="append", metavar="ID:SECRET[:SCOPES]",
                   help="client for POST /auth/token/ (repeatable)")
    p.add_argument("--jwks-client", type=_jwks_client, action="append", metavar="ID:JWKS_FILE[:SCOPES]",
                   help="SMART Backend Services client: assertions signed by a key of this JWKS (repeatable)")
    p.add_argument("--tls-cert", metavar="PEM", help="serve HTTPS with this certificate (chain)")
    p.add_argument("--tls-key", metavar="PEM", help="private key of --tls-cert")
    p.add_argument("--tls-client-ca", metavar="PEM", help="require client certificates signed by this CA (mutual TLS)")
    p.add_argument("--deviate", type=_deviation, action="append", default=[], metavar="NAME",
                   help="break one rule on purpose (repeatable; see --list-deviations)")
    p.add_argument("--list-deviations", action="store_true", help="list deviations and exit")
    p.add_argument("--variant", type=_variant, action="append", default=[], metavar="NAME",
                   help="take one legal choice a real server may take (repeatable; see --list-variants)")
    p.add_argument("--list-variants", action="store_true", help="list legal variants and exit")
    p.add_argument("--fixtures", type=Path, metavar="DIR", help="fixtures directory (default: bundled)")
    p.add_argument("--patients", type=_positive, metavar="N",
                   help="add N generated patients (with conditions, encounters, observations) in one Patient Group")
    p.add_argument("--fault", action="append", default=[], choices=sorted(FAULTS), metavar="NAME",
                   help=f"simulate an export fault (repeatable): {', '.join(sorted(FAULTS))}")
    p.add_argument("--retry-after", type=_non_negative, metavar="S",
                   help="Retry-After seconds of running exports (default 1; 0: poll again at once)")
    p.add_argument("--poll-min", type=_non_negative_float, metavar="S", help="answer 429 to status polls closer than S seconds")
    p.add_argument("--export-min-seconds", type=_non_negative_float, metavar="S",
                   help="an export stays in progress at least S seconds, so clients see a 202 first (default 0.3)")
    p.add_argument("--threads", type=_positive, default=8, help="waitress worker threads")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:  # argparse: --help (0) or a readable usage error (2)
        return int(exc.code or 0)
    if args.list_deviations:
        for d in DEVIATIONS.values():
            print(f"{d.name}\t{','.join(d.breaks)}\t{d.description}")
        return 0
    if args.list_variants:
        for v in VARIANTS.values():
            implied = f" (with {', '.join(v.implies)})" if v.implies else ""
            print(f"{v.name}\t{v.description}{implied}\tallowed by: {v.allowed_by}")
        return 0
    if args.fixtures is not None and not args.fixtures.is_dir():
        print(f"fhir-mock: error: fixtures directory not found: {args.fixtures}", file=sys.stderr)
        return 2
    kwargs: dict = {"db": args.db, "deviations": frozenset(args.deviate), "variants": frozenset(args.variant),
                    "base_url": args.base_url, "access_log": args.access_log, "export_dir": args.export_dir}
    if args.token:
        kwargs["tokens"] = dict(args.token)
    if args.client:
        kwargs["clients"] = {cid: (secret, scopes) for cid, secret, scopes in args.client}
    if args.jwks_client:
        kwargs["jwks_clients"] = {cid: (jwks, scopes) for cid, jwks, scopes in args.jwks_client}
    if args.fixtures is not None:
        kwargs["fixtures_dir"] = args.fixtures
    if bool(args.tls_cert) != bool(args.tls_key) or (args.tls_client_ca and not args.tls_cert):
        print("fhir-mock: error: --tls-cert and --tls-key go together (and --tls-client-ca needs them)",
              file=sys.stderr)
        return 2
    kwargs["faults"] = frozenset(args.fault)
    if args.patients:
        kwargs["patients"] = args.patients
    if args.retry_after is not None:
        kwargs["export_retry_after"] = args.retry_after
    if args.poll_min is not None:
        kwargs["export_poll_min"] = args.poll_min
    if args.export_min_seconds is not None:
        kwargs["export_min_seconds"] = args.export_min_seconds
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    from . import banner, create_app, db
    from .server import make_server, make_tls_server
    from .urls import LISTEN_BASE

    try:
        app = create_app(MockConfig(**kwargs))
        if args.tls_cert:
            server = make_tls_server(app, args.host, args.port, args.tls_cert, args.tls_key, args.tls_client_ca)
            serve = server.serve_forever
        else:
            server = make_server(app, args.host, args.port, args.threads)
            serve = server.run
        url = app.extensions[LISTEN_BASE]
    except (OSError, ValueError) as exc:
        print(f"fhir-mock: error: {exc}", file=sys.stderr)
        return 2
    except sqlite3.Error as exc:        # e.g. --db names a directory
        print(f"fhir-mock: error: cannot open the database {args.db}: {exc}", file=sys.stderr)
        return 2
    print(f"fhir-mock listening on {url}", flush=True)
    print(banner.text(app), flush=True)
    try:
        serve()
    except KeyboardInterrupt:
        pass
    finally:
        from .jobs import shutdown

        shutdown(app)
        db.get_store(app).close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
