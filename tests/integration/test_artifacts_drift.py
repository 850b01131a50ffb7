"""The checked-in alerts/ and dashboards/grafana/ are generator output: regenerate and fail on drift."""

from __future__ import annotations

import difflib
import shutil
import subprocess

import pytest

from toolkit.generators import DEFAULTS_COMMAND, default_artifacts
from toolkit.generators.rules import TESTS_FILE
from toolkit.resources import data_dir

pytestmark = pytest.mark.integration

FIX = f"regenerate with `{DEFAULTS_COMMAND}` (python -m toolkit generate defaults) and commit the result"


@pytest.mark.parametrize("kind", ["alerts", "dashboards"])
def test_checked_in_defaults_match_the_generator(kind: str) -> None:
    expected = default_artifacts()[kind]
    folder = data_dir(kind)
    problems = []
    for name, text in sorted(expected.items()):
        path = folder / name
        if not path.is_file():
            problems.append(f"{path} is missing")
            continue
        actual = path.read_text()
        if actual != text:
            diff = "".join(list(difflib.unified_diff(actual.splitlines(True), text.splitlines(True),
                                                     str(path), "generated", n=1))[:40])
            problems.append(f"{path} differs from the generator:\n{diff}")
    suffix = ".json" if kind == "dashboards" else ".yml"
    for path in sorted(folder.glob(f"*{suffix}")):
        if path.name not in expected:
            problems.append(f"{path} is not generated any more: delete it")
    assert not problems, f"{kind} drifted; {FIX}.\n" + "\n".join(problems)


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool is not installed")
def test_checked_in_rule_tests_pass() -> None:
    r = subprocess.run(["promtool", "test", "rules", TESTS_FILE], cwd=data_dir("alerts"),
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
