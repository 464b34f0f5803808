#!/usr/bin/env python3
"""Offline checks of deploy/k8s (run by `make check-deploy`, from the repository root):

- core kinds (Namespace, ConfigMap, Secret, Deployment, PodDisruptionBudget, HPA) against the
  Kubernetes OpenAPI schemas bundled with PyPI's kubernetes-validate, strictly;
- the custom resources (KEDA ScaledObject, Prometheus Operator PodMonitor, CloudNativePG
  Cluster) against the schemas below: the fields these manifests use, with their types;
- consistency with the code: every file in kustomization.yaml exists, each Deployment runs an
  executable Package.swift builds and probes /healthz and /readyz on the metrics port, and every
  Sundial metric a Prometheus trigger queries is one MetricNames.swift defines.
"""
import glob, re, subprocess, sys
import jsonschema, yaml

ROOT = "deploy/k8s"
failures = []

def fail(msg):
    failures.append(msg)

def string(**kw): return {"type": "string", **kw}
def integer(**kw): return {"type": "integer", **kw}
def obj(props, required=(), extra=False):
    return {"type": "object", "properties": props, "required": list(required), "additionalProperties": extra}
metadata = obj({"name": string(), "namespace": string(), "labels": {"type": "object"}}, ["name"])
trigger = obj({
    "type": string(enum=["nats-jetstream", "prometheus", "cpu", "memory"]),
    "metadata": {"type": "object", "additionalProperties": {"type": "string"}},
}, ["type", "metadata"])
CRD_SCHEMAS = {
    ("keda.sh/v1alpha1", "ScaledObject"): obj({
        "apiVersion": string(), "kind": string(), "metadata": metadata,
        "spec": obj({
            "scaleTargetRef": obj({"name": string(), "kind": string(), "apiVersion": string()}, ["name"]),
            "minReplicaCount": integer(minimum=0), "maxReplicaCount": integer(minimum=1),
            "pollingInterval": integer(minimum=1), "cooldownPeriod": integer(minimum=0),
            "triggers": {"type": "array", "items": trigger, "minItems": 1},
        }, ["scaleTargetRef", "triggers"]),
    }, ["apiVersion", "kind", "metadata", "spec"]),
    ("monitoring.coreos.com/v1", "PodMonitor"): obj({
        "apiVersion": string(), "kind": string(), "metadata": metadata,
        "spec": obj({
            "selector": obj({"matchLabels": {"type": "object", "additionalProperties": {"type": "string"}}}),
            "podMetricsEndpoints": {"type": "array", "minItems": 1, "items": obj(
                {"port": string(), "path": string(pattern="^/"), "interval": string(pattern="^[0-9]+[smh]$")}, ["port"])},
        }, ["selector", "podMetricsEndpoints"]),
    }, ["apiVersion", "kind", "metadata", "spec"]),
    ("postgresql.cnpg.io/v1", "Cluster"): obj({
        "apiVersion": string(), "kind": string(), "metadata": metadata,
        "spec": obj({
            "instances": integer(minimum=1), "imageName": string(),
            "primaryUpdateStrategy": string(enum=["unsupervised", "supervised"]),
            "minSyncReplicas": integer(minimum=0), "maxSyncReplicas": integer(minimum=0),
            "postgresql": obj({"parameters": {"type": "object", "additionalProperties": {"type": "string"}}}),
            "bootstrap": obj({"initdb": obj({"database": string(), "owner": string()})}),
            "storage": obj({"size": string(pattern="^[0-9]+(Mi|Gi|Ti)$")}, ["size"]),
            "monitoring": obj({"enablePodMonitor": {"type": "boolean"}}),
        }, ["instances", "storage"]),
    }, ["apiVersion", "kind", "metadata", "spec"]),
}

metric_names = set(re.findall(r'"(sundial_[a-z0-9_]+)"', open("Sources/SundialObservability/MetricNames.swift").read()))
products = set(re.findall(r'\.executable\(name: "([^"]+)"', open("Package.swift").read()))

core_files = []
documents = {}
for path in sorted(glob.glob(f"{ROOT}/**/*.yaml", recursive=True)):
    if path.endswith("nats-values.yaml") or path.endswith("kustomization.yaml"):
        continue
    docs = [d for d in yaml.safe_load_all(open(path)) if d]
    documents[path] = docs
    if all((d.get("apiVersion"), d.get("kind")) not in CRD_SCHEMAS for d in docs):
        core_files.append(path)
    for d in docs:
        schema = CRD_SCHEMAS.get((d.get("apiVersion"), d.get("kind")))
        if schema is None:
            continue
        try:
            jsonschema.validate(d, schema)
        except jsonschema.ValidationError as e:
            fail(f"{path}: {d.get('kind')} {d.get('metadata', {}).get('name')}: {e.message} at {list(e.absolute_path)}")
        for t in d.get("spec", {}).get("triggers", []):
            if t["type"] == "prometheus":
                for name in re.findall(r"\bsundial_[a-z0-9_]+", t["metadata"].get("query", "")):
                    if name not in metric_names:
                        fail(f"{path}: trigger queries {name}, which Sundial does not export")

result = subprocess.run([".venv/bin/kubernetes-validate", "--strict", "--quiet", *core_files], capture_output=True, text=True)
if result.returncode != 0:
    fail("kubernetes-validate: " + (result.stdout + result.stderr).strip())

kustomization = yaml.safe_load(open(f"{ROOT}/kustomization.yaml"))
for resource in kustomization["resources"]:
    if not glob.glob(f"{ROOT}/{resource}"):
        fail(f"kustomization.yaml lists {resource}, which does not exist")

config = yaml.safe_load(open(f"{ROOT}/configmap.yaml"))["data"]
metrics_port = int(config["SUNDIAL_METRICS_ADDRESS"].rsplit(":", 1)[1])
for path, docs in documents.items():
    for d in docs:
        if d.get("kind") != "Deployment":
            continue
        for c in d["spec"]["template"]["spec"]["containers"]:
            binary = c["command"][0].rsplit("/", 1)[-1]
            if binary not in products:
                fail(f"{path}: runs {binary}, which Package.swift does not build")
            ports = {p["name"]: p["containerPort"] for p in c.get("ports", [])}
            if ports.get("metrics") != metrics_port:
                fail(f"{path}: port 'metrics' is not SUNDIAL_METRICS_ADDRESS's {metrics_port}")
            if c["livenessProbe"]["httpGet"]["path"] != "/healthz" or c["readinessProbe"]["httpGet"]["path"] != "/readyz":
                fail(f"{path}: probes must be /healthz (liveness) and /readyz (readiness)")

values = yaml.safe_load(open(f"{ROOT}/nats-values.yaml"))
if values["config"]["cluster"]["replicas"] != 3 or not values["config"]["jetstream"]["enabled"]:
    fail("nats-values.yaml: a 3-node JetStream cluster is expected")

if failures:
    print("\n".join("check-k8s: " + f for f in failures), file=sys.stderr)
    sys.exit(1)
print(f"check-k8s: ok ({len(core_files)} core files, {sum(len(d) for d in documents.values())} resources)")
