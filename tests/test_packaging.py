"""What a maintainer would publish: the wheel holds only the app, the sdist no tests that cannot
run outside the repository, and the metadata says the licence, versions and extras."""

from __future__ import annotations

import subprocess
import sys
import tarfile
import zipfile
from email.parser import Parser
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def dist(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "build",
            "--no-isolation",
            "--sdist",
            "--wheel",
            "--outdir",
            str(out),
            str(ROOT),
        ],
        check=True,
        capture_output=True,
    )
    return out


def test_the_wheel_holds_only_the_app(dist):
    (wheel,) = dist.glob("*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    top = {name.split("/")[0] for name in names}
    assert top == {"taskruns", "taskruns-0.1.0.dist-info"}, top
    assert not any("taskruns_demo" in name for name in names)  # the demo command is the demo's
    assert "taskruns/management/commands/taskruns_keys.py" in names
    assert "taskruns/openapi_examples.json" in names  # the schema's examples are read at run time
    assert "taskruns-0.1.0.dist-info/licenses/LICENSE" in names


def test_the_sdist_has_no_tests_bench_or_demo(dist):
    (sdist,) = dist.glob("*.tar.gz")
    with tarfile.open(sdist) as archive:
        names = archive.getnames()
    for left_out in ("tests", "bench", "config", "manage.py"):
        assert not any(name.split("/")[1:2] == [left_out] for name in names), left_out
    assert "taskruns-0.1.0/LICENSE" in names


def test_the_metadata_declares_licence_versions_and_extras(dist):
    (wheel,) = dist.glob("*.whl")
    metadata = Parser().parsestr(zipfile.ZipFile(wheel).read("taskruns-0.1.0.dist-info/METADATA").decode())
    assert metadata["License-Expression"] == "MIT"
    classifiers = metadata.get_all("Classifier")
    assert "Framework :: Django :: 5.2" in classifiers and "Framework :: Django :: 6.1" in classifiers
    requires = metadata.get_all("Requires-Dist")
    assert "Django<6.2,>=5.2" in requires
    unconditional = [r for r in requires if "extra ==" not in r]
    assert not any(r.startswith("drf-spectacular-sidecar") for r in unconditional)
    assert any(r.startswith("drf-spectacular-sidecar") and 'extra == "docs"' in r for r in requires)
    assert set(metadata.get_all("Provides-Extra")) == {"postgres", "docs", "demo", "dev"}
