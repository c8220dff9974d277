"""The markers a check wears: its stable id, the requirements it verifies, what it needs.

    @check("group-create-valid", "CANVAS-GROUP-CREATE", "FHIR-CREATE-201")
    @needs("Group", interaction="create")
    def test_valid_group_is_created(...): ...

``verifies`` adds requirements to one parametrized case (``pytest.param(...,
marks=verifies("X"))``) so each case reports against its own rule.
"""

from __future__ import annotations

import pytest

from .rules.catalogue import get as requirement


def check(check_id: str, *requirement_ids: str) -> pytest.MarkDecorator:
    for rid in requirement_ids:
        requirement(rid)   # fail at import time on a typo
    return pytest.mark.conformance(id=check_id, requirements=tuple(requirement_ids))


def verifies(*requirement_ids: str) -> pytest.MarkDecorator:
    for rid in requirement_ids:
        requirement(rid)
    return pytest.mark.verifies(*requirement_ids)


def needs(resource: str, *, interaction: str | None = None, search_param: str | None = None,
          operation: str | None = None) -> pytest.MarkDecorator:
    return pytest.mark.needs(resource=resource, interaction=interaction, search_param=search_param,
                             operation=operation)


def profile(name: str) -> pytest.MarkDecorator:
    return pytest.mark.profile(name)
