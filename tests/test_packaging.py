"""Packaging metadata as users and indexes see it: SPDX license, project URLs, extras, installed metadata."""

from __future__ import annotations

import re
from importlib import metadata
from pathlib import Path

import pytest

tomllib = pytest.importorskip("tomllib")  # Python >= 3.11

ROOT = Path(__file__).resolve().parents[1]


def _project() -> dict:
    with open(ROOT / "pyproject.toml", "rb") as f:
        return tomllib.load(f)["project"]


def _name(req: str) -> str:
    return re.split(r"[<>=!~;\[ ]", req, maxsplit=1)[0].lower()


def test_license_is_an_spdx_expression_with_its_file() -> None:
    p = _project()
    assert p["license"] == "Apache-2.0"
    assert (ROOT / p["license-files"][0]).is_file()
    assert not any(c.startswith("License ::") for c in p["classifiers"])  # PEP 639: no license classifiers


def test_project_urls_are_https_links() -> None:
    urls = _project()["urls"]
    assert urls and all(u.startswith("https://") for u in urls.values())


def test_all_extra_is_the_union_of_the_others() -> None:
    extras = _project()["optional-dependencies"]
    union = {_name(r) for k, reqs in extras.items() if k not in ("all", "dev") for r in reqs}
    assert {_name(r) for r in extras["all"]} == union


def test_no_always_true_markers() -> None:
    p = _project()
    reqs = list(p["dependencies"]) + [r for rs in p["optional-dependencies"].values() for r in rs]
    for r in reqs:
        if ";" in r:
            marker = r.split(";", 1)[1]
            assert "python_version >= '3.10'" not in marker and 'python_version >= "3.10"' not in marker, r


def test_installed_metadata_carries_the_urls_and_scripts() -> None:
    md = metadata.metadata("inverse-drum-machine")
    urls = md.get_all("Project-URL") or []
    assert any(u.startswith("Paper, https://") for u in urls), urls
    scripts = {e.name for e in metadata.entry_points(group="console_scripts") if e.value.startswith("idm")}
    assert {"idm", "idm-export", "idm-live"} <= scripts
