"""The offline check of the Kubernetes manifests (deploy/kubernetes/check.py) finds what it
claims to find: schema violations of built-in kinds and of custom resources, missing probes,
resources, disruption budgets and autoscalers, secrets in plain sight, and a chart whose
consumer groups drift from the services' StreamSpecs. No helm needed: these feed it objects."""

from __future__ import annotations

import copy
import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
LABELS = {"app.kubernetes.io/name": "claims"}


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "kubernetes_check", ROOT / "deploy" / "kubernetes" / "check.py"
    )
    assert spec
    assert spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


check = _load()


@pytest.fixture(scope="module")
def custom() -> dict[tuple[str, str], Any]:
    return check.custom_schemas()


def problems_of(docs: list[dict[str, Any]], custom: dict[tuple[str, str], Any]) -> list[str]:
    report = check.Report()
    check.validate_schemas(docs, custom, report)
    return report.problems


def topic(**spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "kafka.strimzi.io/v1",
        "kind": "KafkaTopic",
        "metadata": {"name": "portal.claims.claim.v1", "labels": {"strimzi.io/cluster": "k"}},
        "spec": {"topicName": "portal.claims.claim.v1", "partitions": 12, "replicas": 3, **spec},
    }


def deployment() -> dict[str, Any]:
    probe = {"httpGet": {"path": "/health/live", "port": "http"}}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "portal-claims"},
        "spec": {
            "selector": {"matchLabels": {"app.kubernetes.io/name": "claims"}},
            "template": {
                "metadata": {"labels": {"app.kubernetes.io/name": "claims"}},
                "spec": {
                    "containers": [
                        {
                            "name": "claims",
                            "image": "registry.example.com/portal/platform:1",
                            "livenessProbe": probe,
                            "readinessProbe": {"httpGet": {"path": "/health/ready", "port": 1}},
                            "resources": {
                                "requests": {"cpu": "250m", "memory": "384Mi"},
                                "limits": {"memory": "768Mi"},
                            },
                            "env": [{"name": "PORTAL_HTTP_PORT", "value": "8005"}],
                        }
                    ]
                },
            },
        },
    }


def pdb() -> dict[str, Any]:
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": {"name": "portal-claims"},
        "spec": {"minAvailable": 1, "selector": {"matchLabels": LABELS}},
    }


def hpa() -> dict[str, Any]:
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": "portal-claims"},
        "spec": {
            "scaleTargetRef": {"kind": "Deployment", "name": "portal-claims"},
            "minReplicas": 2,
            "maxReplicas": 4,
        },
    }


def test_vendored_crds_are_the_published_files() -> None:
    report = check.Report()
    check.verify_vendored(report)
    assert report.problems == []


def test_a_valid_custom_resource_passes(custom: dict[tuple[str, str], Any]) -> None:
    assert problems_of([topic(config={"retention.ms": -1})], custom) == []


def test_a_custom_resource_with_a_wrong_type_or_an_unknown_field_fails(
    custom: dict[tuple[str, str], Any],
) -> None:
    wrong_type = problems_of([topic(partitions="twelve")], custom)
    unknown = problems_of([topic(partitionz=12)], custom)
    assert any("spec.partitions" in p and "'twelve'" in p for p in wrong_type)
    assert any("partitionz" in p for p in unknown)


def test_string_maps_are_honoured(custom: dict[tuple[str, str], Any]) -> None:
    scaled = {
        "apiVersion": "keda.sh/v1alpha1",
        "kind": "ScaledObject",
        "metadata": {"name": "portal-claims"},
        "spec": {
            "scaleTargetRef": {"name": "portal-claims"},
            "triggers": [{"type": "kafka", "metadata": {"lagThreshold": "2000"}}],
        },
    }
    assert problems_of([scaled], custom) == []
    broken = copy.deepcopy(scaled)
    broken["spec"]["triggers"][0]["metadata"]["lagThreshold"] = 2000  # map of strings
    assert any("lagThreshold" in p for p in problems_of([broken], custom))


def test_a_built_in_kind_is_validated_strictly_for_each_kubernetes_version(
    custom: dict[tuple[str, str], Any],
) -> None:
    assert problems_of([deployment()], custom) == []
    typo = deployment()
    typo["spec"]["replica"] = 2
    found = problems_of([typo], custom)
    assert len(found) == len(check.KUBE_VERSIONS)
    assert all("replica" in p for p in found)


def test_an_unknown_kind_is_a_problem(custom: dict[tuple[str, str], Any]) -> None:
    unknown = {"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}}
    assert any("neither Kubernetes" in p for p in problems_of([unknown], custom))


def test_workloads_need_probes_resources_a_budget_and_one_autoscaler() -> None:
    good = check.Report()
    check.check_workloads([deployment(), pdb(), hpa()], good)
    assert good.problems == []

    bare = deployment()
    container = bare["spec"]["template"]["spec"]["containers"][0]
    del container["readinessProbe"]
    del container["resources"]["limits"]
    found = check.Report()
    check.check_workloads([bare], found)
    assert any("readinessProbe must GET /health/ready" in p for p in found.problems)
    assert any("resources.limits.memory" in p for p in found.problems)
    assert any("0 PodDisruptionBudgets" in p for p in found.problems)
    assert any("exactly one autoscaler" in p for p in found.problems)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("PORTAL_DATA_KEY", "ZGV2ZWxvcG1lbnQ"),
        ("PORTAL_SMTP_PASSWORD", "hunter2"),
        ("PORTAL_SERVICE_CREDENTIALS", "{}"),
        ("PORTAL_DATABASE_URL", "postgresql://claims:hunter2@db:5432/portal"),
    ],
)
def test_a_secret_in_plain_sight_is_refused(name: str, value: str) -> None:
    doc = deployment()
    doc["spec"]["template"]["spec"]["containers"][0]["env"].append({"name": name, "value": value})
    report = check.Report()
    check.check_secrets([doc], report)
    assert any(name in p for p in report.problems)


def test_secrets_by_reference_and_rendered_secrets() -> None:
    doc = deployment()
    doc["spec"]["template"]["spec"]["containers"][0]["env"] += [
        {"name": "PORTAL_DATA_KEY", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}},
        {
            "name": "PORTAL_DATABASE_URL",
            "value": "postgresql://$(PORTAL_DB_USERNAME):$(PORTAL_DB_PASSWORD)@db:5432/portal",
        },
    ]
    secret = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "keys"}, "data": {}}
    report = check.Report()
    check.check_secrets([doc, secret], report)
    assert report.problems == [
        "Secret/keys: the chart renders no Secret: reference an existing one"
    ]


def test_the_charts_consumer_groups_are_the_stream_specs() -> None:
    values = yaml.safe_load((check.CHART / "values.yaml").read_text())
    report = check.Report()
    check.check_streams([], values, report)
    assert report.problems == []

    values["services"]["loyalty"]["consumerGroups"]["loyalty.facts"].remove(
        "portal.claims.claim.v1"
    )
    del values["services"]["claims"]
    drifted = check.Report()
    check.check_streams([], values, drifted)
    assert any("values.services.loyalty: consumerGroups" in p for p in drifted.problems)
    assert any("values.services.claims" in p and "missing" in p for p in drifted.problems)


def test_every_group_needs_its_trigger_and_dead_letter_topic() -> None:
    values = yaml.safe_load((check.CHART / "values.yaml").read_text())
    only = {"apiVersion": "kafka.strimzi.io/v1", "kind": "KafkaTopic", "spec": {"topicName": "x"}}
    loyalty = deployment()
    loyalty["metadata"]["name"] = "portal-loyalty"
    report = check.Report()
    check.check_streams([only, loyalty], values, report)
    assert any("KafkaTopic/portal.dlq.claims.handling" in p for p in report.problems)
    assert any("KafkaTopic/portal.contracts.policy.v1" in p for p in report.problems)
    missing = "no kafka trigger loyalty.facts portal.claims.claim.v1"
    assert any(missing in p for p in report.problems)
