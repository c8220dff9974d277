"""The names a check uses to state verdicts (``expect``, ``Blocked``), kept at this import
path for check modules; they live in ``conformance.results`` with the rest of the verdict logic."""

from .results import Blocked, RequirementFailed, expect

__all__ = ["Blocked", "RequirementFailed", "expect"]
