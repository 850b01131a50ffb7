"""A plain, non-editable wheel install ships the data the CLI needs."""

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.integration
def test_wheel_ships_scenarios_dashboards_alerts(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path), str(ROOT)],
        check=True, timeout=300,
    )
    wheel = next(tmp_path.glob("asrtk-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    for scenario in (ROOT / "scenarios").glob("*.yaml"):
        assert f"toolkit/_data/scenarios/{scenario.name}" in names
    for f in (ROOT / "alerts").glob("*"):
        assert f"toolkit/_data/alerts/{f.name}" in names
    for f in (ROOT / "dashboards" / "grafana").glob("*"):
        assert f"toolkit/_data/dashboards/{f.name}" in names
    assert any(n.endswith("entry_points.txt") for n in names)

    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target), str(wheel)],
                   check=True, timeout=300)
    # run from outside the checkout with only the installed copy of asrtk on the path first
    code = ("import toolkit.resources as r, sys; d = r.data_dir('scenarios'); "
            "assert str(d).startswith(sys.argv[1]), d; print(sorted(p.name for p in d.iterdir()))")
    out = subprocess.run([sys.executable, "-c", code, str(target)], cwd=tmp_path, check=True, capture_output=True,
                         text=True, env={"PYTHONPATH": str(target), "PATH": "/usr/bin:/bin"}, timeout=60)
    assert "callcenter.yaml" in out.stdout
