"""The files CI systems read from ``asrtk gate`` (toolkit.gate.outputs) and the CI examples in docs.

JUnit is validated against Jenkins' JUnit schema (tests/data/junit/jenkins-junit.xsd) and read
back with junitparser, the way CI tools read it; Markdown is checked cell by cell; the GitHub
workflow in docs/examples is linted with actionlint (and ShellCheck for its scripts).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from dataclasses import replace
from pathlib import Path

import pytest
import xmlschema
import yaml
from junitparser import Error, Failure, JUnitXml, Skipped

from toolkit.gate.model import EXIT_CODES, Check, GateResult, RunRef, combine, exit_code
from toolkit.gate.outputs import (
    fmt_change,
    fmt_value,
    md_text,
    reproduce_command,
    to_json,
    to_junit,
    to_markdown,
    write_outputs,
)

ROOT = Path(__file__).resolve().parents[2]
XSD = ROOT / "tests" / "data" / "junit" / "jenkins-junit.xsd"
CI_MD = ROOT / "docs" / "ci.md"
GITHUB_EXAMPLE = ROOT / "docs" / "examples" / "github-gate.yml"
GITLAB_EXAMPLE = ROOT / "docs" / "examples" / "gitlab-gate.yml"
WEIRD = 'p99<&">|x'  # a check name that needs escaping in XML and in a Markdown table
GATE_FLAGS = {"--scenario", "--target", "--baseline", "--baseline-target", "--current", "--threshold",
              "--max-regression", "--max-runs", "--inconclusive", "--junit", "--summary-md", "--json",
              "--history", "--out", "--label"}


# ----------------------------------------------------------------------------- results by hand


def _runs(n: int, *, disturbed_at: int | None = None, commit: str = "a1b2c3d4e5f6a7b8c9d0", branch: str = "feature",
          prefix: str = "cur") -> list[RunRef]:
    return [RunRef(run_id=f"{prefix}-{i}", path=f"results/{prefix}-{i}", scenario="callcenter",
                   target="http://127.0.0.1:8000", label=f"pr-7 | try {i}", git_commit=commit, git_branch=branch,
                   disturbed=(i == disturbed_at), loadgen_valid=True) for i in range(n)]


def _result(checks: list[Check], reasons: list[str] | None = None, *, policy: str = "inconclusive",
            mode: str = "compare", runs: list[RunRef] | None = None) -> GateResult:
    reasons = reasons or []
    verdict = combine(checks, reasons)
    return GateResult(
        verdict=verdict, exit_code=exit_code(verdict, policy), mode=mode, checks=checks, reasons=reasons,
        runs=runs if runs is not None else _runs(1),
        baselines=_runs(1, commit="0123456789abcdef0123", branch="main", prefix="base") if mode != "thresholds" else [],
        max_regression=0.10 if mode != "thresholds" else None, confidence=0.95, inconclusive_policy=policy,
        created="2025-03-01T12:00:00Z", duration_s=184.25, scenario="callcenter")


# Names and messages as toolkit.gate.judge makes them.
P95_LIMIT = Check(name="p95<=1.2s", kind="threshold", figure="latency_s.p95", verdict="pass", measured=0.842,
                  allowed="<= 1.2 s", unit="s", message="p95 842 ms within <= 1.2 s")
ERRORS = Check(name="error_rate<=1%", kind="threshold", figure="requests.error_rate", verdict="pass",
               measured=0.0021, allowed="<= 1%", unit="ratio")
RPS = Check(name="rps>=40", kind="threshold", figure="throughput.rps", verdict="pass", measured=42.49,
            allowed=">= 40 rps", unit="rps")
P95_SAME = Check(name="p95 change", kind="compare", figure="latency_s.p95", verdict="pass", measured=0.842, baseline=0.83,
                 change=0.0145, ci=(-0.012, 0.041), allowed="+10%", unit="s")
P95_WORSE = Check(name="p95 change", kind="compare", figure="latency_s.p95", verdict="fail", measured=1.368,
                  baseline=1.2, change=0.14, ci=(0.11, 0.17), allowed="+10%", unit="s",
                  message="p95 1.2 s -> 1.37 s: +14.0% (CI +11.0%…+17.0%), a regression beyond +10%")
WEIRD_FAIL = Check(name=WEIRD, kind="threshold", figure="latency_s.p99", verdict="fail", measured=2.5,
                   allowed="<= 2 s", unit="s")
CPU_NONE = Check(name="cpu_per_request change", kind="compare", figure="host.target_cpu_s_per_request",
                 verdict="inconclusive", measured=None, baseline=0.0123, allowed="+10%", unit="s",
                 message="cpu_per_request: not measured on both sides")
P95_STRADDLES = Check(name="p95 change", kind="compare", figure="latency_s.p95", verdict="inconclusive",
                      measured=0.9, baseline=0.83, change=0.08, ci=(0.03, 0.13), allowed="+10%", unit="s",
                      message="p95 830 ms -> 900 ms: +8.0% (CI +3.0%…+13.0%), the interval straddles +10%: "
                              "measure more")
REASONS = ["host disturbed during cur-1: other processes used 1.4 cores",
           "not like for like: baseline ran 4 workers, current 2"]

PASS = _result([P95_LIMIT, ERRORS, RPS, P95_SAME])
FAIL = _result([P95_WORSE, P95_LIMIT, WEIRD_FAIL, CPU_NONE, RPS])
INCONCLUSIVE = _result([P95_STRADDLES, ERRORS, CPU_NONE], REASONS, runs=_runs(3, disturbed_at=1))
THRESHOLDS_ONLY = _result([P95_LIMIT, ERRORS, RPS], mode="thresholds")
RESULTS = {"pass": PASS, "fail": FAIL, "inconclusive": INCONCLUSIVE, "thresholds": THRESHOLDS_ONLY}


def test_the_hand_made_results_have_the_verdicts_they_are_named_after() -> None:
    assert (PASS.verdict, FAIL.verdict, INCONCLUSIVE.verdict) == ("pass", "fail", "inconclusive")
    assert (PASS.exit_code, FAIL.exit_code, INCONCLUSIVE.exit_code) == (0, 3, 4)


# ----------------------------------------------------------------------------- units


@pytest.mark.parametrize(("value", "unit", "text"), [
    (0.0123, "s", "12.3 ms"), (0.842, "s", "842 ms"), (1.368, "s", "1.37 s"), (0.0004, "s", "0.4 ms"),
    (125.0, "s", "125 s"), (0.012, "ratio", "1.2%"), (0.0021, "ratio", "0.21%"), (0.0, "ratio", "0%"),
    (42.49, "rps", "42.5 rps"), (1234.5, "", "1234"), (None, "s", "n/a"), (float("nan"), "s", "n/a"),
    (float("inf"), "rps", "n/a"),
])
def test_figures_are_written_in_readable_units(value: float | None, unit: str, text: str) -> None:
    assert fmt_value(value, unit) == text


@pytest.mark.parametrize(("value", "text"), [(0.14, "+14%"), (-0.031, "-3.1%"), (0.0, "0%"), (0.1234, "+12.3%"),
                                             (1.5, "+150%"), (None, "n/a")])
def test_changes_are_signed_percentages(value: float | None, text: str) -> None:
    assert fmt_change(value) == text


# ----------------------------------------------------------------------------- JUnit


@pytest.fixture(scope="module")
def schema() -> xmlschema.XMLSchema:
    return xmlschema.XMLSchema(str(XSD))


@pytest.mark.parametrize("name", sorted(RESULTS))
def test_junit_is_valid_against_the_jenkins_junit_schema(schema: xmlschema.XMLSchema, name: str) -> None:
    schema.validate(to_junit(RESULTS[name]))


def test_the_schema_check_rejects_what_jenkins_would_reject(schema: xmlschema.XMLSchema) -> None:
    bad = to_junit(PASS).replace("<testsuite ", '<testsuite bogus="1" ', 1)
    assert not schema.is_valid(bad)
    root = ET.fromstring(to_junit(PASS))
    del root.find("testsuite").attrib["tests"]  # required on <testsuite>
    assert not schema.is_valid(ET.tostring(root, encoding="unicode"))


def _read_junit(result: GateResult, tmp_path: Path) -> JUnitXml:
    path = tmp_path / "gate.xml"
    write_outputs(result, junit=path, summary_md=None, json_path=None)
    return JUnitXml.fromfile(str(path))


def _cases(xml: JUnitXml) -> dict[tuple[str, str], list]:
    (suite,) = list(xml)
    return {(c.classname, c.name): list(c.result) for c in suite}


def test_junit_of_a_pass(tmp_path: Path) -> None:
    (suite,) = list(_read_junit(PASS, tmp_path))
    assert suite.name == "asrtk gate: callcenter"
    assert (suite.tests, suite.failures, suite.errors, suite.skipped) == (4, 0, 0, 0)
    assert suite.time == pytest.approx(184.25)
    assert suite.timestamp == "2025-03-01T12:00:00Z"
    cases = _cases(_read_junit(PASS, tmp_path))
    assert set(cases) == {("asrtk.gate.threshold", "p95<=1.2s"), ("asrtk.gate.threshold", "error_rate<=1%"),
                          ("asrtk.gate.threshold", "rps>=40"), ("asrtk.gate.compare", "p95 change")}
    assert all(r == [] for r in cases.values())


def test_junit_of_a_fail(tmp_path: Path) -> None:
    xml = _read_junit(FAIL, tmp_path)
    (suite,) = list(xml)
    assert (suite.tests, suite.failures, suite.errors, suite.skipped) == (5, 2, 0, 1)
    cases = _cases(xml)
    (regression,) = cases[("asrtk.gate.compare", "p95 change")]
    assert isinstance(regression, Failure) and regression.type == "regression"
    assert regression.message == "measured +14% (CI +11%…+17%), allowed +10%"
    assert regression.text.startswith(P95_WORSE.message + "\n")
    for line in ("baseline: 1.2 s", "current: 1.37 s", "change: +14%", "95% CI: +11%…+17%", "allowed: +10%"):
        assert line in regression.text
    (limit,) = cases[("asrtk.gate.threshold", WEIRD)]  # the name survives escaping unchanged
    assert isinstance(limit, Failure) and limit.type == "threshold"
    assert limit.message == "measured 2.5 s, allowed <= 2 s"
    (missing,) = cases[("asrtk.gate.compare", "cpu_per_request change")]
    assert isinstance(missing, Skipped)
    assert missing.message == "inconclusive: cpu_per_request: not measured on both sides"
    assert "current: n/a" in missing.text
    assert ("asrtk.gate", "verdict") not in cases  # no gate-level reasons


def test_junit_of_an_inconclusive_verdict_skips_and_names_the_reasons(tmp_path: Path) -> None:
    xml = _read_junit(INCONCLUSIVE, tmp_path)
    (suite,) = list(xml)
    assert (suite.tests, suite.failures, suite.errors, suite.skipped) == (4, 0, 0, 3)
    cases = _cases(xml)
    (verdict,) = cases[("asrtk.gate", "verdict")]
    assert isinstance(verdict, Skipped)
    assert verdict.message == "inconclusive: " + "; ".join(REASONS)
    (straddles,) = cases[("asrtk.gate.compare", "p95 change")]
    assert isinstance(straddles, Skipped) and "straddles +10%" in straddles.message
    assert cases[("asrtk.gate.threshold", "error_rate<=1%")] == []


def test_junit_properties_carry_the_verdict_runs_and_commits(tmp_path: Path) -> None:
    (suite,) = list(_read_junit(INCONCLUSIVE, tmp_path))
    props = {p.name: p.value for p in suite.properties()}
    assert props["verdict"] == "inconclusive" and props["exit_code"] == "4"
    assert props["run_ids"] == "cur-0,cur-1,cur-2" and props["baseline_run_ids"] == "base-0"
    assert props["git_commit"] == "a1b2c3d4e5f6a7b8c9d0" and props["baseline_git_commit"] == "0123456789abcdef0123"
    assert props["schema"] == "asrtk.gate/v1" and props["mode"] == "compare" and props["max_regression"] == "0.1"


@pytest.mark.parametrize("policy", ["inconclusive", "fail", "pass"])
@pytest.mark.parametrize("name", sorted(RESULTS))
def test_junit_has_failures_exactly_when_the_exit_code_is_3(schema: xmlschema.XMLSchema, name: str,
                                                              policy: str) -> None:
    base = RESULTS[name]
    result = replace(base, inconclusive_policy=policy, exit_code=exit_code(base.verdict, policy))
    text = to_junit(result)
    schema.validate(text)
    suite = ET.fromstring(text).find("testsuite")
    assert (int(suite.get("failures")) > 0) == (result.exit_code == EXIT_CODES["fail"])


def test_inconclusive_treated_as_fail_is_a_failed_verdict_case() -> None:
    result = replace(INCONCLUSIVE, inconclusive_policy="fail", exit_code=3)
    case = ET.fromstring(to_junit(result)).find("testsuite/testcase[@name='verdict']")
    assert case.find("failure").get("type") == "inconclusive"
    assert case.find("failure").get("message").startswith("inconclusive (--inconclusive fail): host disturbed")


def test_junit_escapes_markup_and_drops_characters_xml_cannot_hold(schema: xmlschema.XMLSchema) -> None:
    evil = replace(WEIRD_FAIL, name="a\x1bb</testcase>&amp;", message='say "hi" <b>\x00</b>')
    result = _result([evil], ["reason with ]]> and <tags> & \x07 bell"])
    result.scenario = 'scen"&<'
    text = to_junit(result)
    schema.validate(text)
    root = ET.fromstring(text)
    assert root.find("testsuite").get("name") == 'asrtk gate: scen"&<'
    case = root.find("testsuite/testcase[@classname='asrtk.gate.threshold']")
    assert case.get("name") == "a\ufffdb</testcase>&amp;"
    assert case.find("failure").get("message") == "measured 2.5 s, allowed <= 2 s"
    assert case.find("failure").text.startswith('say "hi" <b>\ufffd</b>\n')


def test_a_check_with_an_unknown_verdict_is_an_error(schema: xmlschema.XMLSchema) -> None:
    result = _result([replace(P95_LIMIT, verdict="crashed")])
    text = to_junit(result)
    schema.validate(text)
    suite = ET.fromstring(text).find("testsuite")
    assert suite.get("errors") == "1"
    assert isinstance(_cases(JUnitXml.fromstring(text))[("asrtk.gate.threshold", "p95<=1.2s")][0], Error)


# ----------------------------------------------------------------------------- Markdown


def _cells(line: str) -> list[str]:
    """A GFM table row's cells: split on ``|`` that is not backslash-escaped."""
    assert line.startswith("| ") and line.endswith(" |"), line
    return [c.strip() for c in re.split(r"(?<!\\)\|", line[1:-1])]


def _table(md: str, header_start: str) -> list[list[str]]:
    lines = md.splitlines()
    i = next(n for n, line in enumerate(lines) if line.startswith(header_start))
    rows = []
    for line in lines[i + 2:]:
        if not line.startswith("|"):
            break
        rows.append(_cells(line))
    return rows


def test_markdown_heading_of_a_single_regression() -> None:
    result = _result([P95_WORSE, P95_LIMIT])
    assert to_markdown(result).splitlines()[0] == (
        "## asrtk gate: FAIL — p95 change +14% (CI +11%…+17%) over the allowed +10%")


@pytest.mark.parametrize(("result", "heading"), [
    (PASS, "## asrtk gate: PASS — 4 checks within limits"),
    (FAIL, "## asrtk gate: FAIL — p95 change +14% (CI +11%…+17%) over the allowed +10% (and 1 more)"),
    (_result([P95_STRADDLES, ERRORS]),
     "## asrtk gate: INCONCLUSIVE — p95 change +8% (CI +3%…+13%) straddles the allowed +10%"),
    (_result([CPU_NONE, ERRORS]),
     "## asrtk gate: INCONCLUSIVE — cpu\\_per\\_request change: cpu\\_per\\_request: not measured on both sides"),
    (INCONCLUSIVE, "## asrtk gate: INCONCLUSIVE — " + "; ".join(REASONS)),
    (replace(INCONCLUSIVE, inconclusive_policy="pass", exit_code=0),
     "## asrtk gate: INCONCLUSIVE (treated as pass, exit 0) — " + "; ".join(REASONS)),
])
def test_markdown_headings(result: GateResult, heading: str) -> None:
    assert to_markdown(result).splitlines()[0] == heading


def test_markdown_checks_table() -> None:
    rows = _table(to_markdown(FAIL), "| figure |")
    assert rows == [
        ["p95 change", "1.2 s", "1.37 s", "+14% (+11%…+17%)", "+10%", "FAIL"],
        ["p95\\<=1.2s", "–", "842 ms", "–", "\\<= 1.2 s", "PASS"],
        ["p99\\<\\&\"\\>\\|x", "–", "2.5 s", "–", "\\<= 2 s", "FAIL"],
        ["cpu\\_per\\_request change", "12.3 ms", "n/a", "n/a", "+10%", "INCONCLUSIVE"],
        ["rps\\>=40", "–", "42.5 rps", "–", "\\>= 40 rps", "PASS"],
    ]
    assert "| p99\\<\\&\"\\>\\|x |" in to_markdown(FAIL)  # the raw row: `|` escaped, never a new cell


def test_markdown_names_the_reasons_and_the_runs() -> None:
    md = to_markdown(INCONCLUSIVE)
    assert "**Inconclusive because**" in md
    for reason in REASONS:
        assert f"- {md_text(reason)}" in md
    assert f"- p95 change: {md_text(P95_STRADDLES.message)}" in md
    runs = _table(md, "|  | run |")
    assert [r[0] for r in runs] == ["current", "current", "current", "baseline"]
    assert runs[1] == ["current", "`cur-1`", "pr-7 \\| try 1", "`a1b2c3d4e5f6`", "feature",
                       "http://127.0.0.1:8000", "**yes**", "valid"]
    assert runs[0][6] == "no" and runs[3][3] == "`0123456789ab`"


def test_markdown_reproduce_hint_quotes_for_the_shell() -> None:
    assert reproduce_command(FAIL) == (
        "asrtk gate --current results/cur-0 --baseline results/base-0 --threshold 'p95<=1.2s' "
        "--threshold 'p99<&\">|x' --threshold 'rps>=40' --compare p95,cpu_per_request --max-regression 10%")
    assert reproduce_command(THRESHOLDS_ONLY) == (
        "asrtk gate --current results/cur-0 --threshold 'p95<=1.2s' --threshold 'error_rate<=1%' "
        "--threshold 'rps>=40'")
    assert f"Reproduce (judges the same run directories again): `{reproduce_command(PASS)}`" in to_markdown(PASS)
    assert reproduce_command(replace(INCONCLUSIVE, confidence=0.9, inconclusive_policy="fail")) == (
        "asrtk gate --current results/cur-0 --current results/cur-1 --current results/cur-2 "
        "--baseline results/base-0 --threshold 'error_rate<=1%' --compare p95,cpu_per_request "
        "--max-regression 10% --confidence 90% --inconclusive fail")


def test_md_text_keeps_one_line_and_escapes_markup() -> None:
    assert md_text("a|b\nc *d* `e` [f](g) <h> \\ ~i~ &j") == (
        "a\\|b c \\*d\\* \\`e\\` \\[f\\](g) \\<h\\> \\\\ \\~i\\~ \\&j")


# ----------------------------------------------------------------------------- JSON


def test_json_is_as_dict_and_round_trips_strict_json() -> None:
    for result in RESULTS.values():
        doc = to_json(result)
        assert doc == result.as_dict()
        assert json.loads(json.dumps(doc, allow_nan=False)) == doc
        assert doc["schema"] == "asrtk.gate/v1"


def test_json_writes_non_finite_numbers_as_null() -> None:
    result = _result([replace(P95_WORSE, change=float("inf"), ci=(float("-inf"), float("nan")))])
    check = to_json(result)["checks"][0]
    assert check["change"] is None and check["ci"] == [None, None]
    json.dumps(to_json(result), allow_nan=False)


# ----------------------------------------------------------------------------- files


def test_write_outputs_writes_every_file_asked_for(tmp_path: Path) -> None:
    junit, md, js = tmp_path / "out" / "gate.xml", tmp_path / "summary.md", tmp_path / "gate.json"
    write_outputs(FAIL, junit, md, js)
    assert junit.read_text(encoding="utf-8") == to_junit(FAIL)
    assert md.read_text(encoding="utf-8") == to_markdown(FAIL)
    assert json.loads(js.read_text(encoding="utf-8")) == to_json(FAIL)
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["gate.json", "gate.xml", "out", "summary.md"]


def test_write_outputs_appends_to_an_existing_step_summary(tmp_path: Path) -> None:
    md = tmp_path / "step_summary"
    md.write_text("### tests\n12 passed", encoding="utf-8")
    write_outputs(PASS, None, md, None)
    write_outputs(FAIL, None, md, None)
    text = md.read_text(encoding="utf-8")
    assert text == "### tests\n12 passed\n\n" + to_markdown(PASS) + "\n" + to_markdown(FAIL)
    assert text.count("## asrtk gate: ") == 2


def test_write_outputs_writes_nothing_it_was_not_asked_for(tmp_path: Path) -> None:
    write_outputs(PASS, None, None, None)
    assert list(tmp_path.iterdir()) == []


# ----------------------------------------------------------------------------- docs/ci.md and its examples


def _tool(name: str) -> str:
    """A binary from the test extras: beside this Python first (the venv), else on PATH."""
    here = Path(sys.executable).parent / name
    found = str(here) if here.exists() else shutil.which(name)
    if not found:
        pytest.fail(f"{name} not found: install the test extras (pip install -e '.[test]')")
    return found


def _actionlint(path_or_text: Path | str) -> subprocess.CompletedProcess[str]:
    args = [_tool("actionlint"), "-no-color", "-oneline", "-shellcheck", _tool("shellcheck")]
    if isinstance(path_or_text, Path):
        return subprocess.run([*args, str(path_or_text)], capture_output=True, text=True, timeout=60)
    return subprocess.run([*args, "-"], input=path_or_text, capture_output=True, text=True, timeout=60)


def test_ci_md_includes_both_examples_verbatim() -> None:
    doc = CI_MD.read_text(encoding="utf-8")
    for example in (GITHUB_EXAMPLE, GITLAB_EXAMPLE):
        assert f"```yaml\n{example.read_text(encoding='utf-8')}```\n" in doc, (
            f"docs/ci.md must include {example.relative_to(ROOT)} verbatim in a ```yaml block")


def test_the_github_workflow_passes_actionlint() -> None:
    proc = _actionlint(GITHUB_EXAMPLE)
    assert (proc.returncode, proc.stdout + proc.stderr) == (0, "")


def test_actionlint_does_report_a_broken_workflow() -> None:
    broken = ("on: push\njobs:\n  a:\n    runs-on: ubuntu-latest\n    steps:\n"
              "      - run: echo $FOO\n        if: ${{ github.nope }}\n")
    proc = _actionlint(broken)
    assert proc.returncode == 1
    assert "SC2086" in proc.stdout  # ShellCheck ran on the script


def _gate_commands(scripts: list[str]) -> list[str]:
    """Every `asrtk gate` command in these shell snippets, continuation lines joined."""
    text = "\n".join(scripts).replace("\\\n", " ")
    return [m.group(0) for m in re.finditer(r"(?<![\w-])asrtk gate --.*", text)]


def _flags(command: str) -> set[str]:
    return set(re.findall(r"(?<![\w-])--[a-z][a-z-]*", command))


def test_the_gitlab_job_reports_junit_and_calls_the_gate() -> None:
    doc = yaml.safe_load(GITLAB_EXAMPLE.read_text(encoding="utf-8"))
    jobs = {name: job for name, job in doc.items() if isinstance(job, dict) and "script" in job}
    gates = {name: job for name, job in jobs.items() if _gate_commands(job["script"])}
    assert gates, "no job's script calls `asrtk gate`"
    for name, job in gates.items():
        junit = job["artifacts"]["reports"]["junit"]
        (command,) = _gate_commands(job["script"])
        assert f"--junit {junit}" in command, name
        assert job["artifacts"]["when"] == "always"
        assert any(r.get("if") == '$CI_PIPELINE_SOURCE == "merge_request_event"' for r in job["rules"])
        assert job["allow_failure"] == {"exit_codes": [4]}
        assert _flags(command) <= GATE_FLAGS, _flags(command) - GATE_FLAGS


def test_the_github_workflow_calls_the_gate_with_known_flags_only() -> None:
    doc = yaml.safe_load(GITHUB_EXAMPLE.read_text(encoding="utf-8"))
    steps = [s for job in doc["jobs"].values() for s in job["steps"]]
    (command,) = _gate_commands([s["run"] for s in steps if "run" in s])
    assert _flags(command) <= GATE_FLAGS, _flags(command) - GATE_FLAGS
    assert '--summary-md "$GITHUB_STEP_SUMMARY"' in command and "--junit gate.xml" in command
    upload = next(s for s in steps if s.get("uses", "").startswith("actions/upload-artifact@"))
    assert upload["if"] == "always()" and "gate.xml" in upload["with"]["path"]


# ----------------------------------------------------------------------------- fixture


FIXTURE = ROOT / "tests" / "data" / "junit" / "gate-fail.xml"
UPDATE_ENV = "ASRTK_UPDATE_FIXTURES"


def test_the_committed_junit_example_is_what_the_gate_writes(schema: xmlschema.XMLSchema) -> None:
    """tests/data/junit/gate-fail.xml: the JUnit file of FAIL, to read (and to point CI tools at)."""
    text = to_junit(FAIL)
    if os.environ.get(UPDATE_ENV) == "1":
        FIXTURE.write_text(text, encoding="utf-8")
    schema.validate(str(FIXTURE))
    assert FIXTURE.read_text(encoding="utf-8") == text, (
        f"{FIXTURE.relative_to(ROOT)} is out of date: {UPDATE_ENV}=1 .venv/bin/python -m pytest "
        f"tests/unit/test_gate_outputs.py -k committed_junit")
