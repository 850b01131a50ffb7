"""The files CI systems read from ``asrtk gate``: JUnit XML, a Markdown summary, JSON.

Pure renderers of one :class:`~toolkit.gate.model.GateResult` (data in, text out);
:func:`write_outputs` is the only function that touches the file system, and only the paths it
is given. The formats are documented in ``docs/ci.md``.

JUnit: one ``<testsuite>``, one ``<testcase>`` per check; a failed check is a ``<failure>``, an
inconclusive one ``<skipped>`` (neither pass nor fail in CI's test view); gate-level reasons
(host disturbed, load generator invalid, not like for like) add a ``verdict`` test case. The
report has failures exactly when the exit code is 3: an inconclusive verdict under
``--inconclusive fail`` makes the ``verdict`` case a failure.
"""

from __future__ import annotations

import json
import math
import re
import shlex
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

from toolkit import atomic
from toolkit.gate.expr import FIGURES
from toolkit.gate.model import EXIT_CODES, Check, GateResult, RunRef

NA = "n/a"
CLASSNAMES = {"threshold": "asrtk.gate.threshold", "compare": "asrtk.gate.compare"}
VERDICT_CASE = "verdict"
VERDICT_CLASSNAME = "asrtk.gate"
SHORT_COMMIT = 12

# Characters XML 1.0 cannot carry at all, even escaped (ElementTree would write them as they are).
_XML_INVALID = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")
# Markdown punctuation that could start emphasis, code, a link, HTML or end a table cell.
_MD_SPECIAL = re.compile(r"([\\`*_\[\]<>|~&])")


# ----------------------------------------------------------------------------- numbers


def _finite(v: Any) -> float | None:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        return None
    return float(v)


def _sig(x: float, digits: int = 3) -> str:
    """``x`` with ``digits`` significant digits and never an exponent: 14.0 -> '14', 0.0123 -> '0.0123'."""
    if x == 0:
        return "0"
    decimals = max(0, digits - 1 - math.floor(math.log10(abs(x))))
    text = f"{x:.{decimals}f}"
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


def fmt_value(v: Any, unit: str = "") -> str:
    """A figure in its unit, readably: 0.0123 s -> '12.3 ms', 1.37 s -> '1.37 s', 0.012 ratio -> '1.2%',
    41.96 rps -> '42 rps'. None (not measured) and non-finite values -> 'n/a'."""
    x = _finite(v)
    if x is None:
        return NA
    if unit == "s":
        return f"{_sig(x * 1000)} ms" if abs(x) < 1.0 else f"{_sig(x)} s"
    if unit == "ratio":
        return f"{_sig(x * 100)}%"
    return f"{_sig(x)} {unit}" if unit else _sig(x)


def fmt_change(v: Any) -> str:
    """A relative change, signed: 0.14 -> '+14%', -0.031 -> '-3.1%', 0 -> '0%'."""
    x = _finite(v)
    if x is None:
        return NA
    text = _sig(x * 100)
    return f"{'+' if x > 0 and not text.startswith('-') else ''}{text}%"


def fmt_interval(ci: tuple[float, float] | list[float] | None, fmt: Any) -> str:
    """``(0.11, 0.17)`` -> '+11%…+17%' (with ``fmt_change``); '' when there is none."""
    if not ci:
        return ""
    return f"{fmt(ci[0])}…{fmt(ci[1])}"


def _ci_text(check: Check) -> str:
    """The check's interval in its own terms: a change for ``compare``, the figure for ``threshold``."""
    if check.kind == "compare":
        return fmt_interval(check.ci, fmt_change)
    return fmt_interval(check.ci, lambda v: fmt_value(v, check.unit))


def _measured_text(check: Check) -> str:
    """What was measured against ``allowed``: the change for ``compare``, the figure for ``threshold``."""
    if check.kind == "compare":
        text = fmt_change(check.change)
    else:
        text = fmt_value(check.measured, check.unit)
    ci = _ci_text(check)
    return f"{text} (CI {ci})" if ci else text


def _allowed_text(check: Check) -> str:
    return check.allowed or NA


def _summary_line(check: Check) -> str:
    """'p95 +14% (CI +11%…+17%) over the allowed +10%': the verdict of one check in one line."""
    measured = _measured_text(check)
    if check.verdict == "fail":
        return f"{check.name} {measured} over the allowed {_allowed_text(check)}"
    if check.verdict == "inconclusive":
        if check.kind == "compare" and _finite(check.change) is not None and check.ci:
            return f"{check.name} {measured} straddles the allowed {_allowed_text(check)}"
        return f"{check.name}: {check.message or 'inconclusive'}"
    return f"{check.name} {measured} within {_allowed_text(check)}"


def _policy_note(result: GateResult) -> str:
    """' (treated as fail, exit 3)' when ``--inconclusive`` mapped the verdict to another exit code."""
    if result.verdict == "inconclusive" and result.exit_code != EXIT_CODES["inconclusive"]:
        treated = "fail" if result.exit_code == EXIT_CODES["fail"] else "pass"
        return f" (treated as {treated}, exit {result.exit_code})"
    return ""


def headline(result: GateResult) -> str:
    """The verdict in one line: 'FAIL — p95 +14% (CI +11%…+17%) over the allowed +10%'."""
    failed = [c for c in result.checks if c.verdict == "fail"]
    unsure = [c for c in result.checks if c.verdict == "inconclusive"]
    word = result.verdict.upper() + _policy_note(result)
    if result.verdict == "fail" and failed:
        more = f" (and {len(failed) - 1} more)" if len(failed) > 1 else ""
        return f"{word} — {_summary_line(failed[0])}{more}"
    if result.verdict == "inconclusive":
        if result.reasons:
            why = "; ".join(result.reasons)
        elif unsure:
            why = _summary_line(unsure[0]) + (f" (and {len(unsure) - 1} more)" if len(unsure) > 1 else "")
        else:
            why = "no verdict possible"
        return f"{word} — {why}"
    n = len(result.checks)
    return f"{word} — " + (f"{n} check{'s' if n != 1 else ''} within limits" if n else "no checks")


# ----------------------------------------------------------------------------- JUnit XML


def _x(text: Any) -> str:
    """Text XML 1.0 can hold: characters it forbids (control codes) become U+FFFD."""
    return _XML_INVALID.sub("\ufffd", "" if text is None else str(text))


def _junit_time(seconds: float | None) -> str | None:
    x = _finite(seconds)
    return f"{x:.3f}" if x is not None and x >= 0 else None


def _check_detail(check: Check, confidence: float) -> str:
    lines = [check.message] if check.message else []
    lines.append(f"figure: {check.figure} ({check.kind})")
    if check.kind == "compare":
        lines += [f"baseline: {fmt_value(check.baseline, check.unit)}",
                  f"current: {fmt_value(check.measured, check.unit)}",
                  f"change: {fmt_change(check.change)}"]
    else:
        lines.append(f"measured: {fmt_value(check.measured, check.unit)}")
    if check.ci:
        lines.append(f"{_sig(confidence * 100)}% CI: {_ci_text(check)}")
    lines.append(f"allowed: {_allowed_text(check)}")
    return "\n".join(lines)


def _check_message(check: Check) -> str:
    """The failure message CI shows first; ``check.message`` leads the failure's text."""
    return f"measured {_measured_text(check)}, allowed {_allowed_text(check)}"


def _run_lines(result: GateResult) -> str:
    lines = [f"{role} {_run_text(r)}" for role, refs in (("current", result.runs), ("baseline", result.baselines))
             for r in refs]
    hint = reproduce_command(result)
    if hint:
        lines.append(f"reproduce: {hint}")
    return "\n".join(lines)


def _run_text(ref: RunRef) -> str:
    parts = [ref.run_id, ref.path]
    if ref.git_commit:
        parts.append(f"commit {ref.git_commit}" + (f" ({ref.git_branch})" if ref.git_branch else ""))
    if ref.label:
        parts.append(f"label {ref.label}")
    if ref.disturbed:
        parts.append("host disturbed")
    if ref.loadgen_valid is False:
        parts.append("load generator invalid")
    return ", ".join(parts)


def _commits(refs: list[RunRef]) -> str:
    return ",".join(dict.fromkeys(r.git_commit for r in refs if r.git_commit))


def _properties(result: GateResult) -> list[tuple[str, str]]:
    props: list[tuple[str, Any]] = [
        ("schema", result.schema),
        ("verdict", result.verdict),
        ("exit_code", result.exit_code),
        ("mode", result.mode),
        ("scenario", result.scenario),
        ("inconclusive_policy", result.inconclusive_policy),
        ("confidence", result.confidence),
        ("max_regression", result.max_regression),
        ("run_ids", ",".join(r.run_id for r in result.runs)),
        ("baseline_run_ids", ",".join(r.run_id for r in result.baselines)),
        ("git_commit", _commits(result.runs)),
        ("baseline_git_commit", _commits(result.baselines)),
        ("reasons", "; ".join(result.reasons)),
    ]
    return [(k, str(v)) for k, v in props if v is not None and v != ""]


def to_junit(result: GateResult) -> str:
    """The verdict as JUnit XML (validated in the tests against Jenkins' ``junit-10.xsd``)."""
    cases: list[ET.Element] = []
    counts = {"failures": 0, "errors": 0, "skipped": 0}

    for check in result.checks:
        case = ET.Element("testcase", {"classname": CLASSNAMES.get(check.kind, f"asrtk.gate.{_x(check.kind)}"),
                                       "name": _x(check.name)})
        if check.verdict == "fail":
            counts["failures"] += 1
            sub = ET.SubElement(case, "failure", {"message": _x(_check_message(check)),
                                                  "type": "regression" if check.kind == "compare" else "threshold"})
            sub.text = _x(_check_detail(check, result.confidence))
        elif check.verdict == "inconclusive":
            counts["skipped"] += 1
            why = check.message or _check_message(check)
            sub = ET.SubElement(case, "skipped", {"message": _x(f"inconclusive: {why}")})
            sub.text = _x(_check_detail(check, result.confidence))
        elif check.verdict != "pass":
            counts["errors"] += 1
            sub = ET.SubElement(case, "error", {"message": _x(f"unknown verdict {check.verdict!r}"), "type": "verdict"})
        cases.append(case)

    treated_as_fail = result.verdict == "inconclusive" and result.exit_code == EXIT_CODES["fail"]
    if result.reasons or treated_as_fail:
        case = ET.Element("testcase", {"classname": VERDICT_CLASSNAME, "name": VERDICT_CASE})
        why = "; ".join(result.reasons) or "checks inconclusive"
        if treated_as_fail:
            counts["failures"] += 1
            sub = ET.SubElement(case, "failure", {"message": _x(f"inconclusive (--inconclusive fail): {why}"),
                                                  "type": "inconclusive"})
        else:
            counts["skipped"] += 1
            sub = ET.SubElement(case, "skipped", {"message": _x(f"inconclusive: {why}")})
        sub.text = _x("\n".join(result.reasons) or why)
        cases.append(case)

    tests = str(len(cases))
    time = _junit_time(result.duration_s)
    root = ET.Element("testsuites", {"name": "asrtk gate", "tests": tests,
                                     "failures": str(counts["failures"]), "errors": str(counts["errors"])})
    suite = ET.SubElement(root, "testsuite", {"name": _x(f"asrtk gate: {result.scenario or 'unnamed scenario'}"),
                                              "tests": tests, **{k: str(v) for k, v in counts.items()}})
    if time is not None:
        root.set("time", time)
        suite.set("time", time)
    if result.created:
        suite.set("timestamp", _x(result.created))
    props = ET.SubElement(suite, "properties")
    for name, value in _properties(result):
        ET.SubElement(props, "property", {"name": name, "value": _x(value)})
    suite.extend(cases)
    out = ET.SubElement(suite, "system-out")
    out.text = _x(f"asrtk gate: {headline(result)}\n{_run_lines(result)}\n")
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


# ----------------------------------------------------------------------------- Markdown


def md_text(text: Any) -> str:
    """Text safe in a GitHub-/GitLab-flavoured Markdown line or table cell: one line, with the
    punctuation that would start markup (and the cell separator ``|``) backslash-escaped."""
    one_line = " ".join(str(text).split())
    return _MD_SPECIAL.sub(r"\\\1", one_line)


def md_code(text: Any, *, in_table: bool = False) -> str:
    """``text`` as a code span (fenced with more backticks than it holds); in a table, ``|`` is
    escaped too (GFM splits cells before it reads code spans)."""
    one_line = " ".join(str(text).split())
    longest = max((len(m) for m in re.findall(r"`+", one_line)), default=0)
    fence = "`" * (longest + 1)
    pad = " " if one_line.startswith("`") or one_line.endswith("`") else ""
    span = f"{fence}{pad}{one_line}{pad}{fence}"
    return span.replace("|", "\\|") if in_table else span


def _md_table(header: list[str], rows: list[list[str]]) -> list[str]:
    """Cells must already be escaped (:func:`md_text`, :func:`md_code`)."""
    return ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|",
            *("| " + " | ".join(r) + " |" for r in rows)]


def _check_row(check: Check) -> list[str]:
    compare = check.kind == "compare"
    current = fmt_value(check.measured, check.unit)
    if not compare and check.ci:
        current += f" ({_ci_text(check)})"
    change = "–"
    if compare:
        change = fmt_change(check.change) + (f" ({_ci_text(check)})" if check.ci else "")
    return [md_text(check.name), md_text(fmt_value(check.baseline, check.unit) if compare else "–"),
            md_text(current), md_text(change), md_text(_allowed_text(check)), check.verdict.upper()]


def _flag(v: bool | None, yes: str, no: str) -> str:
    return "–" if v is None else (yes if v else no)


def _run_row(role: str, ref: RunRef) -> list[str]:
    commit = md_code(ref.git_commit[:SHORT_COMMIT], in_table=True) if ref.git_commit else "–"
    return [role, md_code(ref.run_id, in_table=True), md_text(ref.label or "–"), commit,
            md_text(ref.git_branch or "–"), md_text(ref.target or "–"),
            _flag(ref.disturbed, "**yes**", "no"), _flag(ref.loadgen_valid, "valid", "**invalid**")]


def _describe(result: GateResult) -> str:
    mode = {"compare": "current runs against baseline runs", "ab": "interleaved A/B of two builds",
            "thresholds": "absolute thresholds, no baseline"}.get(result.mode, result.mode)
    parts = [f"Scenario {md_code(result.scenario) if result.scenario else '(unnamed)'}", md_text(mode)]
    if result.max_regression is not None:
        parts.append(f"max regression {md_text(fmt_change(result.max_regression))}")
    parts.append(f"{md_text(_sig(result.confidence * 100))}% confidence")
    if result.duration_s is not None:
        parts.append(f"took {md_text(fmt_value(result.duration_s, 's'))}")
    parts.append(f"exit code {result.exit_code}")
    return ", ".join(parts) + "."


_FIGURE_NAMES = {f.key: f.name for f in FIGURES.values()}


def reproduce_command(result: GateResult) -> str:
    """One shell command that judges the same recorded runs again (``''`` when there are none)."""
    if not result.runs:
        return ""
    args = ["asrtk", "gate"]
    for ref in result.runs:
        args += ["--current", ref.path]
    for ref in result.baselines:
        args += ["--baseline", ref.path]
    for check in result.checks:
        if check.kind == "threshold":
            args += ["--threshold", check.name]
    compared = [_FIGURE_NAMES.get(c.figure, c.figure) for c in result.checks if c.kind == "compare"]
    if result.baselines and compared:
        args += ["--compare", ",".join(dict.fromkeys(compared))]
    if result.baselines and result.max_regression is not None:
        args += ["--max-regression", fmt_change(result.max_regression).lstrip("+")]
    if not math.isclose(result.confidence, 0.95):
        args += ["--confidence", f"{_sig(result.confidence * 100)}%"]
    if result.inconclusive_policy != "inconclusive":
        args += ["--inconclusive", result.inconclusive_policy]
    return shlex.join(args)


def to_markdown(result: GateResult) -> str:
    """The verdict for ``$GITHUB_STEP_SUMMARY`` or a merge-request comment (GitHub-flavoured)."""
    lines = [f"## asrtk gate: {md_text(headline(result))}", "", _describe(result), ""]
    if result.checks:
        lines += _md_table(["figure", "baseline", "current", "change (CI)", "allowed", "verdict"],
                           [_check_row(c) for c in result.checks])
        lines.append("")
    notes = [c for c in result.checks if c.message and c.verdict != "pass"]
    if notes:
        lines += [f"- {md_text(c.name)}: {md_text(c.message)}" for c in notes] + [""]
    if result.reasons:
        lines += ["**Inconclusive because**", ""] + [f"- {md_text(r)}" for r in result.reasons] + [""]
    refs = [("current", r) for r in result.runs] + [("baseline", r) for r in result.baselines]
    if refs:
        lines += ["**Runs compared**" if result.baselines else "**Runs judged**", ""]
        lines += _md_table(["", "run", "label", "commit", "branch", "target", "host disturbed", "load generator"],
                           [_run_row(role, r) for role, r in refs])
        lines.append("")
    hint = reproduce_command(result)
    if hint:
        lines += [f"Reproduce (judges the same run directories again): {md_code(hint)}", ""]
    return "\n".join(lines)


# ----------------------------------------------------------------------------- JSON


def _json_safe(v: Any) -> Any:
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if isinstance(v, dict):
        return {k: _json_safe(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_json_safe(x) for x in v]
    return v


def to_json(result: GateResult) -> dict[str, Any]:
    """``result.as_dict()`` (schema ``asrtk.gate/v1``, docs/ci.md), strict-JSON safe: a non-finite
    number (a change against a zero baseline) becomes null."""
    return _json_safe(result.as_dict())


# ----------------------------------------------------------------------------- files


def write_outputs(result: GateResult, junit: Path | None = None, summary_md: Path | None = None,
                  json_path: Path | None = None) -> None:
    """Write the requested files atomically. ``summary_md`` is appended to when it exists (every
    step of a GitHub job appends to ``$GITHUB_STEP_SUMMARY``), created otherwise."""
    if junit is not None:
        atomic.write_text(Path(junit), to_junit(result))
    if json_path is not None:
        atomic.write_text(Path(json_path), json.dumps(to_json(result), indent=2, allow_nan=False) + "\n")
    if summary_md is not None:
        path = Path(summary_md)
        before = path.read_text(encoding="utf-8") if path.exists() else ""
        if before and not before.endswith("\n\n"):
            before += "\n" if before.endswith("\n") else "\n\n"
        atomic.write_text(path, before + to_markdown(result))
