"""Offline check of the Kubernetes manifests (`scripts/check-kubernetes`, part of `make lint`).

1. `helm lint --strict` and `helm template` of deploy/kubernetes/portal, with its default
   values and with every file in portal/ci/ (other shapes the chart must also render);
   helm checks the values against portal/values.schema.json (which also refuses a
   secret-looking variable in a service's `env`).
2. Every rendered object of a built-in kind is validated against the Kubernetes OpenAPI
   schemas that `kubernetes-validate` ships, strictly (an unknown field is an error), for
   the oldest Kubernetes the chart supports and the newest the package knows.
3. Every custom resource (Strimzi, CloudNativePG, the Barman Cloud plugin, KEDA, External
   Secrets) is validated against the openAPIV3Schema of the CRD vendored in
   deploy/kubernetes/crds/ (checked against SHA256SUMS first), also strictly: unknown
   fields are errors unless the schema preserves them. CEL rules
   (x-kubernetes-validations) are not evaluated; they are counted in the summary.
4. The platform's own rules: probes on /health/live and /health/ready, requests and limits,
   one PodDisruptionBudget and one autoscaler per workload; a KafkaTopic for every topic
   and dead-letter topic, and a KEDA kafka trigger for every consumer group and topic, as
   the services' StreamSpecs declare them; no Secret rendered and no secret-looking
   environment variable with a literal value.
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import re
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "deploy" / "kubernetes" / "portal"
CRDS = ROOT / "deploy" / "kubernetes" / "crds"
SERVICES = ROOT / "services"
#: The oldest Kubernetes the chart supports (Chart.yaml kubeVersion) and the newest whose
#: schemas kubernetes-validate ships.
KUBE_VERSIONS = ("1.31", "1.37")
RELEASE = "portal"

Doc = dict[str, Any]
#: libyaml's safe loader when PyYAML has it (the CRDs are 1.5 MB of YAML).
YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

#: Environment variables whose value is a secret: they must come from a Secret.
SECRET_NAME = re.compile(r"(PASSWORD|SECRET|PEPPER|_KEY$|_KEYS$|CREDENTIAL|TOKEN$|REDIS_URL)")
#: A URL with a password in it, unless the password is a $(VARIABLE) the kubelet fills in.
URL_PASSWORD = re.compile(r"://[^/\s:@]+:(?!\$\()[^@\s]+@")


@dataclass
class Report:
    problems: list[str] = field(default_factory=list)
    kinds: Counter[str] = field(default_factory=Counter)
    cel_rules_skipped: int = 0

    def add(self, where: str, message: str) -> None:
        self.problems.append(f"{where}: {message}")


def name_of(doc: Doc) -> str:
    return f"{doc.get('kind')}/{doc.get('metadata', {}).get('name')}"


# --- rendering ------------------------------------------------------------------------


def values_sets() -> list[tuple[str, list[Path]]]:
    """The default values, then each file of portal/ci/ on top of them."""
    return [("default values", [])] + [
        (f"ci/{path.name}", [path]) for path in sorted((CHART / "ci").glob("*.yaml"))
    ]


def helm(helm_bin: str, *args: str) -> str:
    done = subprocess.run(  # noqa: S603 - our own helm binary and arguments
        [helm_bin, *args], capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"helm {args[0]} failed:\n{done.stdout}{done.stderr}")
    return done.stdout


def render(helm_bin: str, values: list[Path]) -> list[Doc]:
    options = [arg for path in values for arg in ("-f", str(path))]
    helm(helm_bin, "lint", "--strict", str(CHART), *options)
    rendered = helm(
        helm_bin, "template", RELEASE, str(CHART), "--namespace", "portal",
        "--kube-version", KUBE_VERSIONS[0], *options,
    )  # fmt: skip
    return [doc for doc in yaml.load_all(rendered, Loader=YAML_LOADER) if doc]


# --- schemas --------------------------------------------------------------------------


def verify_vendored(report: Report) -> None:
    """The vendored CRDs are exactly the files SHA256SUMS names (deploy/kubernetes/crds)."""
    listed = {}
    for line in (CRDS / "SHA256SUMS").read_text().splitlines():
        digest, _, path = line.partition("  ")
        listed[path] = digest
    present = {str(p.relative_to(CRDS)) for p in CRDS.glob("*/*.yaml")}
    for path in sorted(present - listed.keys()):
        report.add(f"crds/{path}", "not in SHA256SUMS (run deploy/kubernetes/crds/update)")
    for path, digest in sorted(listed.items()):
        file = CRDS / path
        if not file.exists():
            report.add(f"crds/{path}", "listed in SHA256SUMS but missing")
        elif hashlib.sha256(file.read_bytes()).hexdigest() != digest:
            report.add(f"crds/{path}", "differs from its published version (SHA256SUMS)")


def strict_schema(node: Any) -> Any:
    """A CRD's structural OpenAPI v3 schema as a JSON Schema (draft 4) that refuses unknown
    fields the way the API server's strict field validation does."""
    if isinstance(node, list):
        return [strict_schema(item) for item in node]
    if not isinstance(node, dict):
        return node
    schema = {
        key: strict_schema(value)
        for key, value in node.items()
        if key not in ("x-kubernetes-validations", "description")
    }
    if schema.pop("x-kubernetes-int-or-string", False):
        schema.pop("type", None)
        schema["anyOf"] = [{"type": "integer"}, {"type": "string"}]
    if schema.pop("nullable", False) and isinstance(schema.get("type"), str):
        schema["type"] = [schema["type"], "null"]
    preserve = schema.pop("x-kubernetes-preserve-unknown-fields", False)
    if "properties" in schema and "additionalProperties" not in schema and not preserve:
        schema["additionalProperties"] = False
    return schema


def count_cel_rules(node: Any) -> int:
    if isinstance(node, list):
        return sum(count_cel_rules(item) for item in node)
    if not isinstance(node, dict):
        return 0
    own = len(node.get("x-kubernetes-validations", []))
    return own + sum(count_cel_rules(v) for k, v in node.items() if k != "x-kubernetes-validations")


@dataclass(frozen=True)
class CustomSchema:
    validator: jsonschema.Draft4Validator
    cel_rules: int


def custom_schemas() -> dict[tuple[str, str], CustomSchema]:
    """(apiVersion, kind) -> the validator of every served version of every vendored CRD."""
    found = {}
    for path in sorted(CRDS.glob("*/*.yaml")):
        crd = yaml.load(path.read_text(), Loader=YAML_LOADER)  # noqa: S506 - a safe loader
        group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
        for version in crd["spec"]["versions"]:
            if not version.get("served", True):
                continue
            openapi = version["schema"]["openAPIV3Schema"]
            schema = strict_schema(copy.deepcopy(openapi))
            jsonschema.Draft4Validator.check_schema(schema)
            found[(f"{group}/{version['name']}", kind)] = CustomSchema(
                jsonschema.Draft4Validator(schema), count_cel_rules(openapi)
            )
    return found


def validate_schemas(
    docs: Iterable[Doc], custom: Mapping[tuple[str, str], CustomSchema], report: Report
) -> None:
    for doc in docs:
        where = name_of(doc)
        report.kinds[doc.get("kind", "?")] += 1
        key = (doc.get("apiVersion", ""), doc.get("kind", ""))
        if key in custom:
            schema = custom[key]
            report.cel_rules_skipped += schema.cel_rules
            for error in sorted(schema.validator.iter_errors(doc), key=lambda e: e.path):
                path = ".".join(str(p) for p in error.absolute_path) or "(root)"
                report.add(where, f"{path}: {error.message}")
            continue
        for version in KUBE_VERSIONS:
            try:
                kubernetes_validate.validate(doc, version, strict=True)
            except kubernetes_validate.SchemaNotFoundError:
                found = f"neither Kubernetes {version} nor a vendored CRD"
                report.add(where, f"{key[0]} {key[1]}: {found}")
            except kubernetes_validate.ValidationError as error:
                path = ".".join(str(p) for p in error.absolute_path) or "(root)"
                report.add(where, f"Kubernetes {version}: {path}: {error.message}")


# --- the platform's rules -------------------------------------------------------------


def containers(doc: Doc) -> list[Doc]:
    return list(doc.get("spec", {}).get("template", {}).get("spec", {}).get("containers", []))


def env_of(doc: Doc) -> Iterator[Doc]:
    spec = doc.get("spec", {}).get("template", {}).get("spec", {})
    for container in spec.get("containers", []) + spec.get("initContainers", []):
        yield from container.get("env", [])


def check_workloads(docs: list[Doc], report: Report) -> None:
    workloads = [d for d in docs if d["kind"] in ("Deployment", "StatefulSet")]
    pdbs = [d for d in docs if d["kind"] == "PodDisruptionBudget"]
    scalers = Counter(
        (d["spec"]["scaleTargetRef"]["kind"], d["spec"]["scaleTargetRef"]["name"])
        for d in docs
        if d["kind"] in ("ScaledObject", "HorizontalPodAutoscaler")
    )
    for workload in workloads:
        where = name_of(workload)
        labels = workload["spec"]["template"]["metadata"]["labels"]
        for container in containers(workload):
            probes = {
                "livenessProbe": "/health/live",
                "readinessProbe": "/health/ready",
            }
            for probe, path in probes.items():
                got = container.get(probe, {}).get("httpGet", {}).get("path")
                if got != path:
                    report.add(where, f"{container['name']}: {probe} must GET {path}, not {got}")
            resources = container.get("resources", {})
            for need in ("requests.cpu", "requests.memory", "limits.memory"):
                part, resource = need.split(".")
                if resource not in resources.get(part, {}):
                    report.add(where, f"{container['name']}: no resources.{need}")
        covered = [
            p for p in pdbs
            if p["spec"]["selector"]["matchLabels"].items() <= labels.items()
        ]  # fmt: skip
        if len(covered) != 1:
            report.add(where, f"{len(covered)} PodDisruptionBudgets select it (want 1)")
        if scalers[(workload["kind"], workload["metadata"]["name"])] != 1:
            report.add(where, "needs exactly one autoscaler (ScaledObject or HPA)")


def check_secrets(docs: list[Doc], report: Report) -> None:
    for doc in docs:
        if doc["kind"] == "Secret":
            report.add(name_of(doc), "the chart renders no Secret: reference an existing one")
        for variable in env_of(doc):
            value = variable.get("value")
            if value is None:
                continue
            if SECRET_NAME.search(variable["name"]):
                report.add(name_of(doc), f"{variable['name']} has a literal value: use a Secret")
            if URL_PASSWORD.search(str(value)):
                report.add(name_of(doc), f"{variable['name']} has a password in its URL")


def declared_streams() -> dict[str, tuple[dict[str, list[str]], list[str]]]:
    """service -> (consumer group -> topics, published topics), from each service's
    StreamSpec (`<service>.entrypoints.stream:STREAM`)."""
    from servicekit.asyncapi_cli import load_spec

    streams = {}
    for path in sorted(SERVICES.glob("*/src/*/entrypoints/stream.py")):
        service = path.parents[1].name
        spec = load_spec(service)
        streams[service] = (
            {group: sorted(topics) for group, topics in spec.consumes.items()},
            sorted(spec.publishes),
        )
    return streams


def platform_topics() -> set[str]:
    from contracts_schemas import topics

    return {
        value
        for name, value in vars(topics).items()
        if name.isupper() and isinstance(value, str) and not name.endswith("_PREFIX")
    }


def check_streams(docs: list[Doc], values: Doc, report: Report) -> None:
    """The chart's consumer groups, topics and triggers are the ones the code declares."""
    streams = declared_streams()
    services = values["services"]
    for service in sorted(p.name for p in SERVICES.iterdir() if (p / "pyproject.toml").exists()):
        if service not in services:
            report.add(f"values.services.{service}", "a service of the repository is missing")
    topics = {d["spec"]["topicName"]: d for d in docs if d["kind"] == "KafkaTopic"}
    triggers = {
        (d["metadata"]["name"], t["metadata"]["consumerGroup"], t["metadata"]["topic"])
        for d in docs
        if d["kind"] == "ScaledObject"
        for t in d["spec"]["triggers"]
        if t["type"] == "kafka"
    }
    workloads = {d["metadata"]["name"] for d in docs if d["kind"] in ("Deployment", "StatefulSet")}
    for topic in sorted(platform_topics()):
        if topics and topic not in topics:
            report.add(f"KafkaTopic/{topic}", "a topic of contracts_schemas.topics is missing")
    for service, config in sorted(services.items()):
        consumes, publishes = streams.get(service, ({}, []))
        chart_groups = {g: sorted(t) for g, t in (config.get("consumerGroups") or {}).items()}
        where = f"values.services.{service}"
        if chart_groups != consumes:
            report.add(where, f"consumerGroups {chart_groups} != the StreamSpec's {consumes}")
        if sorted(config.get("publishes") or []) != publishes:
            chart = config.get("publishes")
            report.add(where, f"publishes {chart} != the StreamSpec's {publishes}")
        if config.get("enabled") is False:
            continue
        for group, consumed in consumes.items():
            if topics and f"portal.dlq.{group}" not in topics:
                report.add(f"KafkaTopic/portal.dlq.{group}", "dead-letter topic missing")
            for topic in consumed:
                rendered = f"{RELEASE}-{service}" in workloads
                if rendered and (f"{RELEASE}-{service}", group, topic) not in triggers:
                    where = f"ScaledObject/{RELEASE}-{service}"
                    report.add(where, f"no kafka trigger {group} {topic}")


def chart_values(extra: list[Path]) -> Doc:
    values: Doc = yaml.safe_load((CHART / "values.yaml").read_text())
    for path in extra:
        merge(values, yaml.safe_load(path.read_text()) or {})
    return values


def merge(into: Doc, over: Mapping[str, Any]) -> None:
    for key, value in over.items():
        if isinstance(value, Mapping) and isinstance(into.get(key), dict):
            merge(into[key], value)
        else:
            into[key] = value


# --- main -----------------------------------------------------------------------------


def check(helm_bin: str) -> Report:
    report = Report()
    verify_vendored(report)
    custom = custom_schemas()
    for label, files in values_sets():
        try:
            docs = render(helm_bin, files)
        except RuntimeError as error:
            report.add(label, str(error))
            continue
        before = len(report.problems)
        validate_schemas(docs, custom, report)
        check_workloads(docs, report)
        check_secrets(docs, report)
        check_streams(docs, chart_values(files), report)
        report.problems[before:] = [f"[{label}] {p}" for p in report.problems[before:]]
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--helm", default="helm", help="the helm binary")
    args = parser.parse_args(argv)
    started = time.monotonic()
    report = check(args.helm)
    seconds = time.monotonic() - started
    for problem in report.problems:
        print(problem)
    kinds = ", ".join(f"{n} {k}" for k, n in sorted(report.kinds.items()))
    print(
        f"check-kubernetes: {len(values_sets())} value sets, {sum(report.kinds.values())} "
        f"objects ({kinds}); Kubernetes {' and '.join(KUBE_VERSIONS)} schemas and "
        f"{len(list(CRDS.glob('*/*.yaml')))} vendored CRDs; "
        f"{report.cel_rules_skipped} CEL rules not evaluated; "
        f"{len(report.problems)} problems in {seconds:.1f} s"
    )
    return 1 if report.problems else 0


if __name__ == "__main__":
    sys.exit(main())
