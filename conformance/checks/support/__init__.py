"""What the check modules share: ``api`` (one ResourceApi that keeps the ledger, data guards),
``tasks`` (Task fixtures and read-back comparisons), ``export`` (the export group and flow),
``cohort`` (cohort population and fixtures). Plain modules: fixtures are registered once, in
``conftest.py``."""
