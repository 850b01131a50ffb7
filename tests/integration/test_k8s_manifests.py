"""`asrtk generate k8s` output checked by the real tools, as a user applying it would meet them.

- core objects: the `kubernetes-validate --strict` CLI (bundled schemas) for three Kubernetes minors;
- ServiceMonitor / PrometheusRule: prometheus-operator's published models (npm
  @kubernetes-models/prometheus-operator, generated from the operator's CRDs): their JSON-schema
  validators (types, enums, patterns) and their TypeScript types with excess-property checks (tsc),
  which refuse a field the CRD does not have;
- the PrometheusRule's groups: `promtool check rules`;
- the prometheus-adapter config: the documented config format as a JSON schema, and its
  metricsQuery, with the adapter's templates filled in, as PromQL through promtool.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest
import yaml

from toolkit import generators

ROOT = Path(__file__).resolve().parents[2]
PROMTOOL = shutil.which("promtool")
NPM = shutil.which("npm")
NODE = shutil.which("node")
VALIDATE = Path(sys.executable).with_name("kubernetes-validate")
VERSIONS = ("1.29.0", "1.33.0", "1.37.0")
NPM_PACKAGES = ("@kubernetes-models/prometheus-operator@6.0.0", "typescript@5.9.3")
MODELS = "@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1"
pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not (PROMTOOL and NPM and NODE), reason="promtool / node / npm are not installed "
                       "(scripts/test.sh installs them)"),
]

# prometheus-adapter's documented configuration (docs/config.md of kubernetes-sigs/prometheus-adapter):
# a list of discovery rules, each with these keys and no others
ADAPTER_SCHEMA = {
    "type": "object", "additionalProperties": False, "required": ["rules"],
    "properties": {"rules": {"type": "array", "minItems": 1, "items": {
        "type": "object", "additionalProperties": False, "required": ["seriesQuery", "metricsQuery"],
        "properties": {
            "seriesQuery": {"type": "string", "minLength": 1},
            "seriesFilters": {"type": "array", "items": {
                "type": "object", "additionalProperties": False,
                "properties": {"is": {"type": "string"}, "isNot": {"type": "string"}}}},
            "resources": {"type": "object", "additionalProperties": False, "properties": {
                "template": {"type": "string"},
                "overrides": {"type": "object", "additionalProperties": {
                    "type": "object", "additionalProperties": False, "required": ["resource"],
                    "properties": {"group": {"type": "string"}, "resource": {"type": "string"}}}}}},
            "name": {"type": "object", "additionalProperties": False, "required": ["matches"],
                     "properties": {"matches": {"type": "string"}, "as": {"type": "string"}}},
            "metricsQuery": {"type": "string", "minLength": 1},
        }}}},
}


@pytest.fixture(scope="module")
def example(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The checked-in example's command run through the real CLI."""
    out = tmp_path_factory.mktemp("k8s")
    cmd = generators.K8S_EXAMPLE_COMMAND.split()
    cmd[cmd.index("--out") + 1] = str(out)
    r = subprocess.run([sys.executable, "-m", "toolkit", *cmd[1:]], cwd=ROOT, capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    return out


@pytest.fixture(scope="module")
def models(asrtk_cache_dir: Path) -> Path:
    """prometheus-operator's models and TypeScript from npm, pinned, installed once per run."""
    prefix = asrtk_cache_dir / "npm-k8s"
    if not (prefix / "node_modules" / ".bin" / "tsc").exists():
        prefix.mkdir(parents=True, exist_ok=True)
        (prefix / "package.json").write_text(json.dumps({"name": "asrtk-k8s-check", "private": True}))
        r = subprocess.run([NPM, "install", "--no-audit", "--no-fund", "--silent", *NPM_PACKAGES],  # type: ignore[list-item]
                           cwd=prefix, capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, r.stdout + r.stderr
    return prefix


def _docs(path: Path) -> list[dict]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def test_every_core_object_validates_strictly_on_three_minors(example: Path) -> None:
    files = sorted(str(p) for p in (example / "k8s").glob("*.yaml"))
    assert len(files) >= 7
    for version in VERSIONS:
        r = subprocess.run([str(VALIDATE), "--strict", "-k", version, *files], capture_output=True, text=True,
                           timeout=120)
        out = r.stdout + r.stderr
        assert r.returncode == 0, out
        lines = [ln for ln in out.splitlines() if ln.strip()]
        passed = [ln for ln in lines if ln.startswith("INFO") and "passed" in ln]
        others = [ln for ln in lines if not (ln.startswith("INFO") and "passed" in ln)]
        assert len(passed) >= 7, out  # Deployment, Service, HPA, PDB, three dashboard ConfigMaps
        # the only objects without a bundled schema are prometheus-operator's, checked below
        assert all("Couldn't find schema for kind" in ln and ("ServiceMonitor" in ln or "PrometheusRule" in ln)
                   for ln in others), out
        assert len(others) == 2, out


def _check_operator_objects(models: Path, objects: list[dict], work: Path) -> subprocess.CompletedProcess:
    """Validate with the models' JSON-schema validators (node) and their TypeScript types (tsc)."""
    kinds = sorted({o["kind"] for o in objects})
    imports = "\n".join(f'import {{ {k} }} from "{MODELS}/{k}";' for k in kinds)
    (work / "objects.json").write_text(json.dumps(objects))
    (models / "validate.mjs").write_text(
        f"{imports}\nimport fs from 'fs';\nconst kinds = {{ {', '.join(kinds)} }};\n"
        "for (const o of JSON.parse(fs.readFileSync(process.argv[2]))) { new kinds[o.kind](o).validate(); "
        "console.log('valid', o.kind, o.metadata.name); }\n")
    types = "\n".join(f'import type {{ I{k} }} from "{MODELS}/{k}";' for k in kinds)
    body = "\n".join(f"export const o{i}: I{o['kind']} = {json.dumps(o)};" for i, o in enumerate(objects))
    (models / "objects.ts").write_text(types + "\n" + body + "\n")  # next to node_modules: imports resolve there
    r = subprocess.run([NODE, str(models / "validate.mjs"), str(work / "objects.json")],  # type: ignore[list-item]
                       cwd=models, capture_output=True, text=True, timeout=120)
    if r.returncode != 0:
        return r
    return subprocess.run([str(models / "node_modules" / ".bin" / "tsc"), "--noEmit", "--strict", "--skipLibCheck",
                           "--module", "nodenext", "--moduleResolution", "nodenext", "objects.ts"],
                          cwd=models, capture_output=True, text=True, timeout=180)


def test_prometheus_operator_objects_match_the_operator_models(example: Path, models: Path, tmp_path: Path) -> None:
    objects = _docs(example / "k8s" / "servicemonitor.yaml") + _docs(example / "k8s" / "prometheusrule.yaml")
    assert [o["kind"] for o in objects] == ["ServiceMonitor", "PrometheusRule"]
    r = _check_operator_objects(models, objects, tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    # the same checks refuse what the CRDs do not allow: a field it lacks, a malformed duration
    bad = json.loads(json.dumps(objects))
    bad[0]["spec"]["endpoints"][0]["scrapeEvery"] = "15s"
    r = _check_operator_objects(models, bad, tmp_path)
    assert r.returncode != 0 and "scrapeEvery" in r.stdout + r.stderr
    bad = json.loads(json.dumps(objects))
    bad[0]["spec"]["endpoints"][0]["interval"] = "every 15 seconds"
    r = _check_operator_objects(models, bad, tmp_path)
    assert r.returncode != 0 and "interval" in r.stdout + r.stderr


def test_prometheusrule_groups_pass_promtool(example: Path, tmp_path: Path) -> None:
    (rule,) = _docs(example / "k8s" / "prometheusrule.yaml")
    path = tmp_path / "rules.yml"
    path.write_text(yaml.safe_dump({"groups": rule["spec"]["groups"]}))
    r = subprocess.run([PROMTOOL, "check", "rules", str(path)], capture_output=True, text=True, timeout=60)  # type: ignore[list-item]
    assert r.returncode == 0 and "SUCCESS" in r.stdout + r.stderr, r.stdout + r.stderr


def test_adapter_config_has_the_documented_shape_and_valid_promql(example: Path, tmp_path: Path) -> None:
    cfg = yaml.safe_load((example / "prometheus-adapter" / "config.yaml").read_text())
    jsonschema.validate(cfg, ADAPTER_SCHEMA)
    (rule,) = cfg["rules"]
    hpa = _docs(example / "k8s" / "hpa.yaml")[0]
    assert rule["name"]["as"] == hpa["spec"]["metrics"][0]["pods"]["metric"]["name"]
    # the adapter fills in <<.Series>>, <<.LabelMatchers>> and <<.GroupBy>> per request
    query = (rule["metricsQuery"].replace("<<.Series>>", "asrtk_inflight_requests")
             .replace("<<.LabelMatchers>>", 'namespace="speech",pod=~"asrtk-.*"').replace("<<.GroupBy>>", "pod"))
    series = rule["seriesQuery"]
    path = tmp_path / "adapter-queries.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "adapter", "rules": [
        {"record": "adapter:metrics_query", "expr": query}, {"record": "adapter:series_query", "expr": series}]}]}))
    r = subprocess.run([PROMTOOL, "check", "rules", str(path)], capture_output=True, text=True, timeout=60)  # type: ignore[list-item]
    assert r.returncode == 0, r.stdout + r.stderr
    with pytest.raises(jsonschema.ValidationError):  # the schema is not a rubber stamp
        jsonschema.validate({"rules": [{**rule, "metricQuery": rule["metricsQuery"]}]}, ADAPTER_SCHEMA)
