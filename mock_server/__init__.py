"""fhir-mock: the kit's reference FHIR server (Canvas-style Group, Patient, Practitioner)."""
from __future__ import annotations

from flask import Flask

from .config import MockConfig

__all__ = ["MockConfig", "create_app"]


def create_app(config: MockConfig | None = None) -> Flask:
    """Application factory: storage, fixtures, auth, resource blueprints, error handlers."""
    from . import (access_log, auth, bulk, capabilities, cohort, db, http, jobs, limits, loader, payload, population,
                   rate_limit)
    from .resources import directory, group, task

    config = config or MockConfig()
    app = Flask(__name__, static_folder=None)  # no /static route: every route is a FHIR one
    app.config["MOCK"] = config
    app.config["MAX_CONTENT_LENGTH"] = config.max_body_bytes
    app.config["MAX_FORM_MEMORY_SIZE"] = config.max_body_bytes
    app.json.sort_keys = False  # type: ignore[attr-defined]
    db.init_app(app, config.db)

    if config.access_log:
        access_log.install(app, config.access_log)
    rate_limit.install(app)            # the rate-limited variant, before anything else answers
    app.before_request(auth.authenticate_unrouted)
    app.before_request(payload.check_request)
    app.before_request(limits.check_query_string)
    http.register_error_handlers(app)
    app.register_blueprint(capabilities.bp)
    app.register_blueprint(auth.bp)
    app.register_blueprint(group.bp)
    app.register_blueprint(task.bp)
    for bp in directory.BLUEPRINTS:
        app.register_blueprint(bp)

    app.register_blueprint(bulk.bp)  # Group $export (issue 4)
    app.register_blueprint(cohort.bp)  # Bulk Cohort API (issue 5)

    loader.load_fixtures(app, config.fixtures_dir)
    population.setup(app, config.patients)
    jobs.init_app(app)   # one worker; each job kind registers its runner
    cohort.init_app(app)
    bulk.init_app(app)
    jobs.start(app)
    return app
