"""Every setting is reachable from the command line, the environment, conformance.toml and
the pytest plugin, and the README's settings table is the option table: all driven by
``conformance.options.OPTIONS``, so a new option is covered without touching this file
(unless it needs a companion setting to be valid, listed in COMPANIONS)."""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from conformance import cli, plugin
from conformance.options import (ENV_PREFIX, FLAG, NEGATED_FLAG, OPTIONS, REPEATED, Option, from_arguments, load,
                                markdown_table)

ROOT = Path(__file__).resolve().parents[1]
# Settings that are only valid together with another one (Settings.validated).
COMPANIONS: dict[str, dict[str, str]] = {
    "client_id": {"client_secret": "companion-secret"},
    "client_secret": {"client_id": "companion-id"},
    "private_key": {"client_id": "companion-id"},
    "client_key": {"client_cert": "FILE"},
}


def _text(o: Option, tmp_path: Path) -> str:
    """A valid value of the option as a user would type it."""
    if o.file:
        path = tmp_path / f"{o.name}.file"
        path.write_text(json.dumps({"requirements": []}))      # also a valid baseline summary.json
        return str(path)
    if o.type is bool:
        return "0" if o.default else "1"
    if o.choices:
        return o.choices[1]
    return {int: "3", float: "2.5", Path: str(tmp_path / "somewhere")}.get(
        o.type, "https://fhir.example.test" if o.name in ("target", "token_url") else "value-x")


def _argv(o: Option, text: str, prefix: str = "--") -> list[str]:
    flag = prefix + o.option.removeprefix("--")
    return [flag] if o.style in (FLAG, NEGATED_FLAG) else [flag, text]


def _toml(o: Option, text: str) -> str:
    if o.type is bool:
        return "true" if text == "1" else "false"
    if o.style == REPEATED:
        return json.dumps([text])
    return text if o.type in (int, float) else json.dumps(text)


@pytest.fixture
def clean_env(monkeypatch, tmp_path):
    for key in list(__import__("os").environ):
        if key.startswith(ENV_PREFIX):
            monkeypatch.delenv(key)
    monkeypatch.chdir(tmp_path)          # no conformance.toml of the project's own
    return monkeypatch


def _companions(o: Option, tmp_path: Path) -> dict[str, str]:
    out = {}
    for name, value in COMPANIONS.get(o.name, {}).items():
        if value == "FILE":
            (tmp_path / name).write_text("x")
            value = str(tmp_path / name)
        out[ENV_PREFIX + name.upper()] = value
    return out


def _pytest_settings(argv: list[str]) -> Any:
    """The plugin's own route: its pytest_addoption, then the settings it builds from the options."""
    parser = argparse.ArgumentParser()
    group = SimpleNamespace(addoption=parser.add_argument)
    plugin.pytest_addoption(SimpleNamespace(getgroup=lambda *a, **k: group))
    ns = parser.parse_args(argv)
    config = SimpleNamespace(getoption=lambda name, default=None: getattr(ns, name, default),
                             pluginmanager=SimpleNamespace(get_plugins=lambda: []))
    settings, _ = plugin._settings_from(config)
    return settings


@pytest.mark.parametrize("o", OPTIONS, ids=[o.name for o in OPTIONS])
def test_every_setting_is_reachable_from_all_four_places(o: Option, tmp_path: Path, clean_env):
    text = _text(o, tmp_path)
    want = o.convert(text)
    companions = _companions(o, tmp_path)
    for key, value in companions.items():
        clean_env.setenv(key, value)
    # command line
    args = cli._parser().parse_args(["run", *_argv(o, text)])
    assert getattr(load(from_arguments(args), companions, tmp_path / "none.toml"), o.name) == want
    # environment
    assert getattr(load({}, {o.env: text, **companions}, tmp_path / "none.toml"), o.name) == want
    # conformance.toml
    conf = tmp_path / "conformance.toml"
    conf.write_text(f"[conformance]\n{o.name} = {_toml(o, text)}\n")
    assert getattr(load({}, companions, conf), o.name) == want
    conf.unlink()
    # pytest plugin
    assert getattr(_pytest_settings(_argv(o, text, prefix="--fhir-")), o.name) == want


def test_the_readme_settings_table_is_the_option_table():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    found = re.search(r"<!-- settings table:[^\n]*-->\n(.*?)\n<!-- end of settings table -->", readme, re.S)
    assert found, "README.md lost its settings-table markers"
    assert found.group(1) == markdown_table(), \
        "README settings table differs from conformance/options.py: paste options.markdown_table() into it"
