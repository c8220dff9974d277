"""Strategy pieces shared by every profile: names, JSON mutations by path."""

from __future__ import annotations

import copy
import functools
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

from hypothesis import strategies as st

from ..rules.model import Field, Kind, ResourceProfile, Violation

# Letters and digits from any script, with inner spaces and a few marks: names
# that exercise encoding and collation without leading/trailing whitespace.
_NAME_ALPHABET = st.characters(categories=("L", "N"), exclude_characters="\x00")
_NAME_INNER = st.sampled_from(" -_'.&") | _NAME_ALPHABET
name_text = st.builds(lambda head, tail: (head + tail).rstrip(" -_'.&") or head,
                      st.text(_NAME_ALPHABET, min_size=1, max_size=12), st.text(_NAME_INNER, max_size=12))


@functools.lru_cache(maxsize=256)
def run_name(prefix: str) -> st.SearchStrategy[str]:
    """A name carrying the run prefix, so everything created is recognisable."""
    return name_text.map(lambda text: f"{prefix} {text}")


# Strategies built inside composites are built again at every example, and Hypothesis validates
# each new one on its first draw: that was a tenth of a run. These two build each distinct one once
# (the same values give the same strategy, so the same seed still draws the same examples).

@functools.lru_cache(maxsize=4096)
def _sampled(typed: tuple[tuple[type, Any], ...]) -> st.SearchStrategy[Any]:
    return st.sampled_from(tuple(value for _, value in typed))


def sampled_from(values: Sequence[Any]) -> st.SearchStrategy[Any]:
    """``st.sampled_from(values)``, built once per distinct sequence of hashable values (keyed by
    type too: ``1 == True``, but sampling ``[1]`` is not sampling ``[True]``)."""
    typed = tuple((type(v), v) for v in values)
    try:
        return _sampled(typed)
    except TypeError:           # unhashable values (dicts, lists): a fresh strategy
        return st.sampled_from(tuple(values))


@functools.lru_cache(maxsize=4096)
def lists(elements: st.SearchStrategy[Any], *, min_size: int = 0, max_size: int | None = None,
          unique: bool = False) -> st.SearchStrategy[list[Any]]:
    """``st.lists``, built once per distinct element strategy and bounds."""
    return st.lists(elements, min_size=min_size, max_size=max_size, unique=unique)


WRONG_TYPE_VALUES: dict[Kind, st.SearchStrategy[Any]] = {
    Kind.STRING: st.sampled_from([123, True, {"text": "x"}, ["x"]]),
    Kind.CODE: st.sampled_from([7, False, {"code": "x"}, ["code"]]),
    Kind.BOOLEAN: st.sampled_from(["true", "false", 1, 0, "yes"]),
    Kind.INTEGER: st.sampled_from(["3", 2.5, True]),
    Kind.OBJECT: st.sampled_from(["x", ["x"], 5, True]),
    Kind.ARRAY: st.sampled_from(["x", 5, True]),
}
unknown_element_name = st.from_regex(r"x[A-Z][a-z]{2,8}", fullmatch=True)
wrong_resource_types = st.sampled_from(["Patient", "Practitioner", "Task", "Bundle", "group", "GROUP"])


Breach = Callable[[dict, Any, Any], dict]     # (payload, target data, DrawAdapter) -> payload


@dataclass(frozen=True)
class InvalidPayload:
    """A payload and the one rule it breaks."""

    payload: dict[str, Any]
    violation: Violation

    def __repr__(self) -> str:  # what Hypothesis prints as the falsifying example
        return f"InvalidPayload(breaks={self.violation.label} [{self.violation.requirement}], payload={self.payload!r})"


def locate(payload: dict[str, Any], path: str, index: int = 0) -> tuple[Any, str]:
    """The container and key addressed by ``path`` (``[]`` = element ``index``)."""
    node: Any = payload
    parts = path.replace("[]", ".[]").split(".")
    for part in parts[:-1]:
        node = node[index] if part == "[]" else node[part]
    last = parts[-1]
    if last == "[]":
        raise ValueError(f"path {path} ends at an array element")
    return node, last


def mutated(payload: dict[str, Any], path: str, value: Any = None, *, delete: bool = False) -> dict[str, Any]:
    out = copy.deepcopy(payload)
    parent, key = locate(out, path)
    if delete:
        parent.pop(key, None)
    else:
        parent[key] = value
    return out


def object_paths(payload: dict[str, Any]) -> list[str]:
    """Paths of every JSON object in the payload (where an unknown element can go)."""
    found = [""]

    def walk(node: Any, prefix: str) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                path = f"{prefix}.{key}" if prefix else key
                if isinstance(value, dict):
                    found.append(path)
                    walk(value, path)
                elif isinstance(value, list) and value and isinstance(value[0], dict):
                    found.append(path + "[]")
                    walk(value[0], path + "[]")

    walk(payload, "")
    return found


class DrawAdapter:
    """What a breach may draw: ``sampled_from`` (the one way breaches choose)."""

    def __init__(self, draw: st.DrawFn):
        self._draw = draw

    def sampled_from(self, values: list[Any]) -> Any:
        return self._draw(sampled_from(values))


def breach(draw: st.DrawFn, profile: ResourceProfile, violation: Violation, base: dict[str, Any], data: Any,
           outside: Callable[[Field], st.SearchStrategy[Any]], breaches: Mapping[str, Breach]) -> dict[str, Any]:
    """``base`` turned into a payload breaking exactly ``violation``.

    The base-FHIR breaches (missing, wrong type, empty string, enums, unknown element,
    resourceType, id mismatch) are the same for every profile; a profile constraint
    applies its breach from ``breaches`` (by constraint name). ``outside`` draws a value outside a field's enum.
    """
    path, name = violation.path, violation.name
    field = profile.field(path) if path and path != "id" else None
    if name == "missing":
        return mutated(base, path, delete=True)
    if name == "wrong-type":
        return mutated(base, path, draw(WRONG_TYPE_VALUES[field.kind]))
    if name == "empty-string":
        return mutated(base, path, "")
    if name in ("outside-enum", "not-a-fhir-code"):
        return mutated(base, path, draw(outside(field)))
    if name == "outside-profile-enum":
        return mutated(base, path, draw(sampled_from(sorted(set(field.fhir_codes) - set(field.allowed)))))
    if name == "unknown-element":
        where = draw(sampled_from(object_paths(base)))
        key = draw(unknown_element_name)
        return mutated(base, f"{where}.{key}" if where else key, draw(sampled_from(["x", 1, True])))
    if name == "wrong-resource-type":
        return mutated(base, "resourceType",
                       draw(wrong_resource_types.filter(lambda t: t != profile.resource_type)))
    if name == "id-mismatch":
        return mutated(base, "id", data.missing_id())
    profile.constraint(name, violation.variant)        # a violation the profile does not declare: StopIteration
    return breaches[name](mutated(base, "resourceType", profile.resource_type), data, DrawAdapter(draw))
