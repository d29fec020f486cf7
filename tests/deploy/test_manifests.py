"""Offline checks of the deployment artefacts (issue 3).

* ``deploy/k8s/overlays/{dev,prod}`` are rendered with ``kubectl kustomize`` and
  every object is validated against the Kubernetes OpenAPI schemas shipped by
  ``kubernetes-validate`` (strict mode: unknown fields are errors). KEDA
  ``ScaledObject`` is a CRD without a bundled schema, so its structure is
  asserted by hand.
* ``docker-compose.gpu.yml`` is interpolated the way Compose does it and parsed by
  ``compose-spec`` (strict Compose Specification model).
* ``deploy/prometheus/prometheus.yml`` is checked for the expected scrape jobs.

Nothing here talks to a cluster, a Docker daemon or the network.
"""

from __future__ import annotations

import functools
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
K8S_DIR = ROOT / "deploy" / "k8s"
COMPOSE_FILE = ROOT / "docker-compose.gpu.yml"
PROMETHEUS_FILE = ROOT / "deploy" / "prometheus" / "prometheus.yml"

OVERLAYS = ("dev", "prod")
# Oldest Kubernetes minor the manifests target (preStop `sleep`, PDB
# unhealthyPodEvictionPolicy, grpc probes, matchLabelKeys are all available).
K8S_VERSION = "1.31.0"
NAMESPACE = "docfactory"
CRD_API_GROUPS = ("keda.sh/", "cert-manager.io/")

VLLM_DEPLOYMENTS = ("vllm-chat", "vllm-embed")
DOCFACTORY_DEPLOYMENTS = ("docfactory-api", "docfactory-worker", "docfactory-dossier-worker")
WORKER_DEPLOYMENTS = ("docfactory-worker", "docfactory-dossier-worker")
# Every long-running process a user can start, by its `docfactory` subcommand: each must run in
# both Kubernetes and Compose (a run nobody executes stays QUEUED; issue 25).
PROCESS_KINDS = {
    "api": ("serve",),
    "bulk worker": ("worker",),
    "dossier worker": ("dossier", "worker"),
    "console": ("console",),
}
GPU = "nvidia.com/gpu"

Obj = dict[str, Any]

KUBECTL = shutil.which("kubectl")
requires_kubectl = pytest.mark.skipif(
    KUBECTL is None,
    reason="kubectl not found on PATH: it is needed to render the kustomize overlays "
    "(`kubectl kustomize deploy/k8s/overlays/<env>`)",
)


# --------------------------------------------------------------------------- helpers


@functools.cache
def _render(overlay: str) -> tuple[Obj, ...]:
    assert KUBECTL is not None
    proc = subprocess.run(
        [KUBECTL, "kustomize", str(K8S_DIR / "overlays" / overlay)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, f"kubectl kustomize {overlay} failed:\n{proc.stderr}"
    docs = tuple(d for d in yaml.safe_load_all(proc.stdout) if d)
    assert docs, f"overlay {overlay} rendered no objects"
    return docs


@pytest.fixture(params=OVERLAYS)
def overlay(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def objs(overlay: str) -> tuple[Obj, ...]:
    if KUBECTL is None:
        pytest.skip("kubectl not found on PATH: cannot render kustomize overlays")
    return _render(overlay)


def of_kind(objs: tuple[Obj, ...], kind: str) -> list[Obj]:
    return [o for o in objs if o["kind"] == kind]


def named(objs: tuple[Obj, ...], kind: str, name: str) -> Obj:
    matches = [o for o in of_kind(objs, kind) if o["metadata"]["name"] == name]
    assert len(matches) == 1, f"expected exactly one {kind}/{name}, found {len(matches)}"
    return matches[0]


def is_crd_object(obj: Obj) -> bool:
    return obj["apiVersion"].startswith(CRD_API_GROUPS)


def workloads(objs: tuple[Obj, ...]) -> list[Obj]:
    return [o for o in objs if o["kind"] in ("Deployment", "StatefulSet")]


def pod_spec(workload: Obj) -> Obj:
    return workload["spec"]["template"]["spec"]


def containers(workload: Obj) -> list[Obj]:
    return pod_spec(workload)["containers"]


def selector_matches(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def port_number(container: Obj, port: int | str) -> int:
    if isinstance(port, int):
        return port
    for p in container.get("ports", []):
        if p.get("name") == port:
            return p["containerPort"]
    raise AssertionError(f"container {container['name']} has no port named {port!r}")


def configmap_keys(objs: tuple[Obj, ...], name: str) -> set[str]:
    return set(named(objs, "ConfigMap", name).get("data", {}))


def env_names(objs: tuple[Obj, ...], container: Obj) -> set[str]:
    names = {e["name"] for e in container.get("env", [])}
    for src in container.get("envFrom", []):
        if "configMapRef" in src:
            names |= configmap_keys(objs, src["configMapRef"]["name"])
    return names


# ------------------------------------------------------------------ kubernetes: schema


@requires_kubectl
def test_every_object_is_schema_valid(objs: tuple[Obj, ...]) -> None:
    kubernetes_validate = pytest.importorskip("kubernetes_validate")
    errors = []
    for obj in objs:
        if is_crd_object(obj):
            continue  # no bundled schema; asserted structurally below
        try:
            kubernetes_validate.validate(obj, K8S_VERSION, strict=True)
        except kubernetes_validate.SchemaNotFoundError as exc:
            errors.append(f"{obj['kind']}/{obj['metadata']['name']}: {exc.message}")
        except kubernetes_validate.ValidationError as exc:
            path = "/".join(str(p) for p in exc.absolute_path)
            errors.append(f"{obj['kind']}/{obj['metadata']['name']} at {path}: {exc.message}")
    assert not errors, "schema violations:\n" + "\n".join(errors)


@requires_kubectl
def test_only_known_crds(objs: tuple[Obj, ...]) -> None:
    crds = {(o["apiVersion"], o["kind"]) for o in objs if is_crd_object(o)}
    assert crds == {
        ("keda.sh/v1alpha1", "ScaledObject"),
        ("cert-manager.io/v1", "Issuer"),
        ("cert-manager.io/v1", "Certificate"),
    }


@requires_kubectl
def test_everything_lives_in_the_docfactory_namespace(objs: tuple[Obj, ...]) -> None:
    ns = named(objs, "Namespace", NAMESPACE)
    assert ns["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    for obj in objs:
        if obj["kind"] != "Namespace":
            assert obj["metadata"].get("namespace") == NAMESPACE, obj["metadata"]["name"]


@requires_kubectl
def test_names_are_unique(objs: tuple[Obj, ...]) -> None:
    keys = [(o["kind"], o["metadata"]["name"]) for o in objs]
    assert len(keys) == len(set(keys))


# ------------------------------------------------------------------ kubernetes: secrets


@requires_kubectl
def test_no_secret_material_in_repo(objs: tuple[Obj, ...]) -> None:
    for secret in of_kind(objs, "Secret"):
        assert not secret.get("data") and not secret.get("stringData"), secret["metadata"]["name"]
    secret_like = re.compile(r"PASSWORD|SECRET|ACCESS_KEY|API_KEY|DATABASE_URL|TOKEN")
    for cm in of_kind(objs, "ConfigMap"):
        leaked = [k for k in cm.get("data", {}) if secret_like.search(k)]
        assert not leaked, f"secret-looking keys in ConfigMap {cm['metadata']['name']}: {leaked}"
    for wl in workloads(objs):
        for c in containers(wl):
            for e in c.get("env", []):
                if secret_like.search(e["name"]):
                    assert "secretKeyRef" in e.get("valueFrom", {}), (
                        f"{wl['metadata']['name']}/{c['name']}: {e['name']} must come from a Secret"
                    )


@requires_kubectl
def test_docfactory_gets_credentials_and_keys_from_secrets(objs: tuple[Obj, ...]) -> None:
    s3 = {"DOCFACTORY_S3_ACCESS_KEY", "DOCFACTORY_S3_SECRET_KEY"}
    for name in DOCFACTORY_DEPLOYMENTS:
        dep = named(objs, "Deployment", name)
        (c,) = containers(dep)
        refs = {
            e["name"]: e["valueFrom"]["secretKeyRef"]["name"]
            for e in c.get("env", [])
            if "secretKeyRef" in e.get("valueFrom", {})
        }
        assert "DOCFACTORY_DATABASE_URL" in refs, name
        if name == "docfactory-dossier-worker":
            assert not s3 & set(refs), "dossier workers read no object store"
        else:
            assert set(refs) >= s3, name
        if name in WORKER_DEPLOYMENTS:
            # the plain key durable workers call the API with (the keys file holds hashes only)
            assert refs["DOCFACTORY_WORKER_API_KEY"] == "docfactory-worker-api-key", name
        volumes = {v["name"]: v for v in pod_spec(dep)["volumes"]}
        keys_secret = [v for v in volumes.values() if "secret" in v]
        assert keys_secret, f"{name}: API keys file must be mounted from a Secret"
        mounts = {m["name"]: m["mountPath"] for m in c["volumeMounts"]}
        keys_file = next(
            f"{mounts[v['name']]}/{item['path']}"
            for v in keys_secret
            for item in v["secret"].get("items", [])
        )
        cm_name = next(s["configMapRef"]["name"] for s in c["envFrom"] if "configMapRef" in s)
        assert named(objs, "ConfigMap", cm_name)["data"]["DOCFACTORY_KEYS_FILE"] == keys_file


# ------------------------------------------------------------------ kubernetes: vLLM


@requires_kubectl
@pytest.mark.parametrize("name", VLLM_DEPLOYMENTS)
def test_vllm_requests_gpus_and_tolerates_gpu_taint(objs: tuple[Obj, ...], name: str) -> None:
    dep = named(objs, "Deployment", name)
    (c,) = containers(dep)
    limits = c["resources"]["limits"]
    assert int(limits[GPU]) >= 1
    requests = c["resources"].get("requests", {})
    if GPU in requests:
        assert requests[GPU] == limits[GPU]
    tolerations = pod_spec(dep).get("tolerations", [])
    assert any(t.get("key") == GPU and t.get("effect") == "NoSchedule" for t in tolerations)
    assert pod_spec(dep)["nodeSelector"] == {"nvidia.com/gpu.present": "true"}


@requires_kubectl
@pytest.mark.parametrize("name", VLLM_DEPLOYMENTS)
def test_vllm_probes_hit_health_on_8000(objs: tuple[Obj, ...], name: str) -> None:
    (c,) = containers(named(objs, "Deployment", name))
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        http = c[probe]["httpGet"]
        assert http["path"] == "/health", probe
        assert port_number(c, http["port"]) == 8000, probe


@requires_kubectl
@pytest.mark.parametrize("name", VLLM_DEPLOYMENTS)
def test_vllm_runs_offline_from_model_cache(objs: tuple[Obj, ...], name: str) -> None:
    dep = named(objs, "Deployment", name)
    (c,) = containers(dep)
    env = {e["name"]: e.get("value") for e in c["env"]}
    assert env["HF_HUB_OFFLINE"] == "1"
    assert env["HF_HOME"].startswith("/models")
    claims = [
        v["persistentVolumeClaim"]["claimName"]
        for v in pod_spec(dep)["volumes"]
        if "persistentVolumeClaim" in v
    ]
    assert claims == ["model-cache"]
    named(objs, "PersistentVolumeClaim", "model-cache")
    assert any(m["mountPath"] == "/models" and m.get("readOnly") for m in c["volumeMounts"])
    assert any(m["mountPath"] == "/dev/shm" for m in c["volumeMounts"]), "vLLM needs shared memory"


@requires_kubectl
def test_vllm_args(objs: tuple[Obj, ...]) -> None:
    chat = containers(named(objs, "Deployment", "vllm-chat"))[0]
    embed = containers(named(objs, "Deployment", "vllm-embed"))[0]
    assert chat["image"].startswith("vllm/vllm-openai:v")
    for flag in ("--tokenizer-mode=mistral", "--config-format=mistral", "--load-format=mistral"):
        assert flag in chat["args"]
    assert any(a.startswith("--max-model-len=") for a in chat["args"])
    assert any(a.startswith("--gpu-memory-utilization=") for a in chat["args"])
    assert "--runner=pooling" in embed["args"]
    # The served alias the docfactory config points at.
    for c, alias, key in (
        (chat, "docfactory-chat", "DOCFACTORY_CHAT_MODEL"),
        (embed, "docfactory-embed", "DOCFACTORY_EMBEDDING_MODEL"),
    ):
        i = c["args"].index("--served-model-name")
        assert c["args"][i + 1] == alias
        api = containers(named(objs, "Deployment", "docfactory-api"))[0]
        cm = next(s["configMapRef"]["name"] for s in api["envFrom"] if "configMapRef" in s)
        assert named(objs, "ConfigMap", cm)["data"][key] == alias


@requires_kubectl
def test_container_variable_references_resolve(objs: tuple[Obj, ...]) -> None:
    """Every $(VAR) in command/args must be defined, or Kubernetes passes it literally."""
    for wl in workloads(objs):
        for c in containers(wl):
            defined = env_names(objs, c)
            for arg in c.get("command", []) + c.get("args", []):
                for var in re.findall(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)", arg):
                    assert var in defined, (
                        f"{wl['metadata']['name']}/{c['name']}: $({var}) undefined"
                    )


@requires_kubectl
def test_chat_model_per_overlay(objs: tuple[Obj, ...], overlay: str) -> None:
    chat = containers(named(objs, "Deployment", "vllm-chat"))[0]
    cm = next(s["configMapRef"]["name"] for s in chat["envFrom"])
    model = named(objs, "ConfigMap", cm)["data"]["VLLM_CHAT_MODEL"]
    if overlay == "prod":
        assert model == "mistralai/Mistral-Small-3.2-24B-Instruct-2506"
    else:
        assert (
            model.startswith("mistralai/")
            and model != "mistralai/Mistral-Small-3.2-24B-Instruct-2506"
        )


@requires_kubectl
@pytest.mark.parametrize("name", VLLM_DEPLOYMENTS)
def test_vllm_headless_services(objs: tuple[Obj, ...], name: str) -> None:
    svc = named(objs, "Service", name)
    assert svc["spec"]["clusterIP"] == "None"
    assert not svc["spec"].get("publishNotReadyAddresses", False), (
        "only ready replicas may be resolvable"
    )
    assert [p["port"] for p in svc["spec"]["ports"]] == [8000]
    labels = named(objs, "Deployment", name)["spec"]["template"]["metadata"]["labels"]
    assert selector_matches(svc["spec"]["selector"], labels)


@requires_kubectl
def test_prod_vllm_rollout_never_reduces_capacity(objs: tuple[Obj, ...], overlay: str) -> None:
    if overlay != "prod":
        pytest.skip("dev deliberately replaces in place (no spare GPU)")
    for name in VLLM_DEPLOYMENTS + DOCFACTORY_DEPLOYMENTS:
        strategy = named(objs, "Deployment", name)["spec"]["strategy"]
        assert strategy["type"] == "RollingUpdate"
        assert strategy["rollingUpdate"] == {"maxSurge": 1, "maxUnavailable": 0}, name


@requires_kubectl
def test_vllm_prestop_drains(objs: tuple[Obj, ...]) -> None:
    for name in VLLM_DEPLOYMENTS:
        dep = named(objs, "Deployment", name)
        (c,) = containers(dep)
        sleep = c["lifecycle"]["preStop"]["sleep"]["seconds"]
        assert pod_spec(dep)["terminationGracePeriodSeconds"] > sleep


# ------------------------------------------------------------------ kubernetes: KEDA


@requires_kubectl
def test_scaledobjects(objs: tuple[Obj, ...]) -> None:
    scaled = {o["metadata"]["name"]: o for o in of_kind(objs, "ScaledObject")}
    assert "vllm-chat" in scaled
    hpa_targets = {
        h["spec"]["scaleTargetRef"]["name"] for h in of_kind(objs, "HorizontalPodAutoscaler")
    }
    for name, so in scaled.items():
        assert so["apiVersion"] == "keda.sh/v1alpha1"
        assert set(so["spec"]) <= {
            "scaleTargetRef",
            "minReplicaCount",
            "maxReplicaCount",
            "pollingInterval",
            "cooldownPeriod",
            "idleReplicaCount",
            "initialCooldownPeriod",
            "fallback",
            "advanced",
            "triggers",
        }, f"unknown ScaledObject fields in {name}"
        ref = so["spec"]["scaleTargetRef"]
        assert ref.get("kind", "Deployment") == "Deployment"
        target = named(objs, "Deployment", ref["name"])
        assert "replicas" not in target["spec"], "replicas must be left to the autoscaler"
        assert ref["name"] not in hpa_targets, "an HPA and a ScaledObject would fight"
        lo, hi = so["spec"]["minReplicaCount"], so["spec"]["maxReplicaCount"]
        assert isinstance(lo, int) and isinstance(hi, int) and 1 <= lo <= hi
        fallback = so["spec"].get("fallback")
        if fallback:
            assert lo <= fallback["replicas"] <= hi
        (trigger,) = so["spec"]["triggers"]
        assert trigger["type"] == "prometheus"
        meta = trigger["metadata"]
        assert re.match(r"^https?://", meta["serverAddress"])
        assert "vllm:num_requests_waiting" in meta["query"]
        assert f'model_name="docfactory-{name.removeprefix("vllm-")}"' in meta["query"]
        assert float(meta["threshold"]) > 0
        assert all(isinstance(v, str) for v in meta.values()), (
            "KEDA trigger metadata must be strings"
        )
        behavior = so["spec"]["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]
        assert behavior["scaleDown"]["stabilizationWindowSeconds"] >= 300


# ------------------------------------------------------------------ kubernetes: docfactory


@requires_kubectl
def test_every_docfactory_container_has_probes(objs: tuple[Obj, ...]) -> None:
    found = 0
    for wl in workloads(objs):
        for c in containers(wl):
            if not c["image"].startswith("ghcr.io/example/docfactory"):
                continue
            found += 1
            for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
                assert probe in c, f"{wl['metadata']['name']}: missing {probe}"
            if "serve" in c["args"]:
                for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
                    # the plain-text Health-only listener (the gRPC port is TLS-only)
                    assert c[probe]["grpc"]["port"] == 8086
            if "console" in c["args"]:
                for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
                    assert c[probe]["httpGet"]["path"] == "/healthz"
                    assert port_number(c, c[probe]["httpGet"]["port"]) == 8080
            if "worker" in c["args"]:  # bulk and dossier workers: the metrics server
                for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
                    assert c[probe]["httpGet"]["path"] == "/metrics"
                    assert port_number(c, c[probe]["httpGet"]["port"]) == 9090
    assert found == 4


@requires_kubectl
def test_docfactory_commands_and_ports(objs: tuple[Obj, ...]) -> None:
    api = containers(named(objs, "Deployment", "docfactory-api"))[0]
    worker = containers(named(objs, "Deployment", "docfactory-worker"))[0]
    # `args`, not `command`: the image's entrypoint (tini, PID 1) stays in front.
    assert api["args"] == ["docfactory", "serve"] and "command" not in api
    assert worker["args"] == ["docfactory", "worker"] and "command" not in worker
    assert {p["containerPort"] for p in api["ports"]} == {50051, 9090, 8086}  # 8086: probes
    assert {p["containerPort"] for p in worker["ports"]} == {9090}
    required = {
        "DOCFACTORY_DATABASE_URL",
        "DOCFACTORY_QDRANT_URL",
        "DOCFACTORY_CHAT_URLS",
        "DOCFACTORY_CHAT_MODEL",
        "DOCFACTORY_EMBEDDING_URLS",
        "DOCFACTORY_EMBEDDING_MODEL",
        "DOCFACTORY_S3_ENDPOINT",
        "DOCFACTORY_S3_ACCESS_KEY",
        "DOCFACTORY_S3_SECRET_KEY",
        "DOCFACTORY_KEYS_FILE",
    }
    for c in (api, worker):
        assert required <= env_names(objs, c)
    svc = named(objs, "Service", "docfactory-api")
    assert [p["port"] for p in svc["spec"]["ports"]] == [50051]


@requires_kubectl
def test_dossier_worker_deployment(objs: tuple[Obj, ...]) -> None:
    """Dossier runs execute on their own Deployment (issue 25), not inside the API pods."""
    dep = named(objs, "Deployment", "docfactory-dossier-worker")
    (c,) = containers(dep)
    assert c["args"] == ["docfactory", "dossier", "worker"] and "command" not in c
    assert {p["containerPort"] for p in c["ports"]} == {9090}
    env = {e["name"]: e.get("value") for e in c["env"]}
    assert env["DOCFACTORY_WORKFLOWS_METRICS_PORT"] == "9090"  # /metrics = its probes
    assert int(env["DOCFACTORY_WORKFLOWS_CONCURRENCY"]) >= 1
    assert {
        "DOCFACTORY_DATABASE_URL",
        "DOCFACTORY_KEYS_FILE",
        "DOCFACTORY_WORKER_API_KEY",
        "DOCFACTORY_TLS_CERT",
        "DOCFACTORY_TLS_CA",
    } <= env_names(objs, c)
    # Rule passages from the API's Search, extraction by the chat pool: real Services.
    services = {s["metadata"]["name"]: s for s in of_kind(objs, "Service")}
    host, port = env["DOCFACTORY_WORKFLOWS_SEARCH_ADDRESS"].split(":")
    assert host == "docfactory-api" and int(port) in {
        p["port"] for p in services[host]["spec"]["ports"]
    }
    m = re.match(r"^http://([a-z0-9-]+):(\d+)/v1$", env["DOCFACTORY_WORKFLOWS_VLLM_URL"])
    assert m and m.group(1) == "vllm-chat" and m.group(1) in services
    assert env["DOCFACTORY_WORKFLOWS_VLLM_MODEL"] == "docfactory-chat"  # the served alias
    # a step may take minutes: a generous drain, never less than the bulk worker's
    grace = pod_spec(dep)["terminationGracePeriodSeconds"]
    assert (
        grace
        >= pod_spec(named(objs, "Deployment", "docfactory-worker"))["terminationGracePeriodSeconds"]
    )
    # ... and the API runs none in-process (`docfactory serve` would start one by default)
    (api,) = containers(named(objs, "Deployment", "docfactory-api"))
    api_env = {e["name"]: e.get("value") for e in api["env"]}
    assert api_env["DOCFACTORY_WORKFLOWS_SERVE_WORKERS"] == "0"
    assert "DOCFACTORY_WORKFLOWS_SERVE_WORKERS" not in {
        e["name"]
        for w in WORKER_DEPLOYMENTS
        for e in containers(named(objs, "Deployment", w))[0]["env"]
    }


@requires_kubectl
def test_console_deployment(objs: tuple[Obj, ...]) -> None:
    """The console: its own Deployment on HTTP :8080, reaching the API by address (never the
    embedded default), one replica (sessions in memory), reachable and egress-limited."""
    dep = named(objs, "Deployment", "docfactory-console")
    (c,) = containers(dep)
    args = c["args"]
    assert args[:3] == ["docfactory", "--address", "docfactory-api:50051"] and "command" not in c
    assert args[3] == "console" and args[args.index("--port") + 1] == "8080"
    # plain HTTP on 0.0.0.0 is refused at start unless --insecure (TLS ends at the ingress)
    assert "--insecure" in args
    assert dep["spec"]["replicas"] == 1
    svc = named(objs, "Service", "docfactory-console")
    assert [p["port"] for p in svc["spec"]["ports"]] == [8080]
    policy = named(objs, "NetworkPolicy", "docfactory-console")
    assert _policy_ports(policy, "ingress") == {8080}
    assert _policy_ports(policy, "egress") == {50051}
    # mTLS to the API with its own client certificate (cert-manager)
    env = {e["name"]: e.get("value") for e in c["env"]}
    assert env["DOCFACTORY_TLS_CA"] == "/etc/docfactory/tls/ca.crt"
    (tls,) = [v for v in pod_spec(dep)["volumes"] if v["name"] == "tls"]
    cert = named(objs, "Certificate", "docfactory-console-tls")
    assert tls["secret"]["secretName"] == cert["spec"]["secretName"]
    assert cert["spec"]["usages"] == ["client auth"]


@requires_kubectl
@pytest.mark.parametrize("name", (*DOCFACTORY_DEPLOYMENTS, *VLLM_DEPLOYMENTS, "docfactory-console"))
def test_hardened_security_context(objs: tuple[Obj, ...], name: str) -> None:
    dep = named(objs, "Deployment", name)
    pod_sc = pod_spec(dep).get("securityContext", {})
    assert pod_spec(dep)["automountServiceAccountToken"] is False
    named(objs, "ServiceAccount", pod_spec(dep)["serviceAccountName"])
    for c in containers(dep):
        sc = c["securityContext"]
        assert sc.get("runAsNonRoot", pod_sc.get("runAsNonRoot")) is True
        assert sc["readOnlyRootFilesystem"] is True
        assert sc["allowPrivilegeEscalation"] is False
        assert sc["capabilities"]["drop"] == ["ALL"]
        assert "limits" in c["resources"] and "requests" in c["resources"]


@requires_kubectl
def test_all_pods_meet_restricted_pod_security(objs: tuple[Obj, ...]) -> None:
    for wl in workloads(objs):
        spec = pod_spec(wl)
        assert spec["securityContext"]["runAsNonRoot"] is True, wl["metadata"]["name"]
        assert spec["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
        assert not any("hostPath" in v for v in spec.get("volumes", []))
        for c in spec["containers"]:
            assert c["securityContext"]["allowPrivilegeEscalation"] is False
            assert c["securityContext"]["capabilities"]["drop"] == ["ALL"]


@requires_kubectl
def test_hpas(objs: tuple[Obj, ...], overlay: str) -> None:
    hpas = {h["metadata"]["name"]: h for h in of_kind(objs, "HorizontalPodAutoscaler")}
    assert set(hpas) == set(DOCFACTORY_DEPLOYMENTS)
    for name, hpa in hpas.items():
        assert hpa["apiVersion"] == "autoscaling/v2"
        assert hpa["spec"]["scaleTargetRef"]["name"] == name
        assert "replicas" not in named(objs, "Deployment", name)["spec"]
        assert 1 <= hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"]
        (metric,) = hpa["spec"]["metrics"]
        assert metric["resource"]["name"] == "cpu"
        assert "cpu" in containers(named(objs, "Deployment", name))[0]["resources"]["requests"]


@requires_kubectl
def test_dev_runs_one_replica_of_everything(objs: tuple[Obj, ...], overlay: str) -> None:
    if overlay != "dev":
        pytest.skip("dev only")
    for hpa in of_kind(objs, "HorizontalPodAutoscaler"):
        assert hpa["spec"]["minReplicas"] == 1
    for so in of_kind(objs, "ScaledObject"):
        assert so["spec"]["minReplicaCount"] == so["spec"]["maxReplicaCount"] == 1
    for sts in of_kind(objs, "StatefulSet"):
        assert sts["spec"]["replicas"] == 1


def test_prod_scales_further_than_dev() -> None:
    if KUBECTL is None:
        pytest.skip("kubectl not found on PATH: cannot render kustomize overlays")
    dev, prod = _render("dev"), _render("prod")
    for kind, lo_key, hi_key in (
        ("HorizontalPodAutoscaler", "minReplicas", "maxReplicas"),
        ("ScaledObject", "minReplicaCount", "maxReplicaCount"),
    ):
        for d in of_kind(dev, kind):
            p = named(prod, kind, d["metadata"]["name"])
            assert p["spec"][lo_key] >= 2, d["metadata"]["name"]
            assert p["spec"][hi_key] > d["spec"][hi_key], d["metadata"]["name"]


@requires_kubectl
def test_prod_spreads_replicas(objs: tuple[Obj, ...], overlay: str) -> None:
    if overlay != "prod":
        pytest.skip("prod only")
    for name in DOCFACTORY_DEPLOYMENTS + VLLM_DEPLOYMENTS:
        spec = pod_spec(named(objs, "Deployment", name))
        assert spec["affinity"]["podAntiAffinity"], name
        keys = {t["topologyKey"] for t in spec["topologySpreadConstraints"]}
        assert keys == {"topology.kubernetes.io/zone", "kubernetes.io/hostname"}, name
    minio = named(objs, "StatefulSet", "minio")
    assert minio["spec"]["replicas"] == 4
    assert "http://minio-{0...3}.minio-headless" in containers(minio)[0]["args"][1]


@requires_kubectl
def test_pdbs_cover_every_pool(objs: tuple[Obj, ...]) -> None:
    pdbs = of_kind(objs, "PodDisruptionBudget")
    for name in VLLM_DEPLOYMENTS + DOCFACTORY_DEPLOYMENTS:
        labels = named(objs, "Deployment", name)["spec"]["template"]["metadata"]["labels"]
        matching = [
            p for p in pdbs if selector_matches(p["spec"]["selector"]["matchLabels"], labels)
        ]
        assert len(matching) == 1, f"{name}: expected one PDB, found {len(matching)}"
        spec = matching[0]["spec"]
        # maxUnavailable (not minAvailable=replicas) so node drains never deadlock.
        assert spec.get("maxUnavailable") == 1


# ------------------------------------------------------------------ kubernetes: wiring


@requires_kubectl
def test_services_select_existing_pods(objs: tuple[Obj, ...]) -> None:
    pods = [wl["spec"]["template"]["metadata"]["labels"] for wl in workloads(objs)]
    for svc in of_kind(objs, "Service"):
        name = svc["metadata"]["name"]
        assert any(selector_matches(svc["spec"]["selector"], lbl) for lbl in pods), name


@requires_kubectl
def test_referenced_objects_exist(objs: tuple[Obj, ...]) -> None:
    names = {(o["kind"], o["metadata"]["name"]) for o in objs}
    for wl in workloads(objs):
        spec = pod_spec(wl)
        for v in spec.get("volumes", []):
            if "persistentVolumeClaim" in v:
                assert ("PersistentVolumeClaim", v["persistentVolumeClaim"]["claimName"]) in names
            if "configMap" in v:
                assert ("ConfigMap", v["configMap"]["name"]) in names
        for c in spec["containers"]:
            for src in c.get("envFrom", []):
                if "configMapRef" in src:
                    assert ("ConfigMap", src["configMapRef"]["name"]) in names
            for e in c.get("env", []):
                ref = e.get("valueFrom", {}).get("configMapKeyRef")
                if ref:
                    assert ref["key"] in configmap_keys(objs, ref["name"])
    for sts in of_kind(objs, "StatefulSet"):
        assert ("Service", sts["spec"]["serviceName"]) in names


@requires_kubectl
def test_docfactory_urls_point_at_services(objs: tuple[Obj, ...]) -> None:
    api = containers(named(objs, "Deployment", "docfactory-api"))[0]
    cm = next(s["configMapRef"]["name"] for s in api["envFrom"])
    data = named(objs, "ConfigMap", cm)["data"]
    services = {s["metadata"]["name"]: s for s in of_kind(objs, "Service")}
    for key in (
        "DOCFACTORY_QDRANT_URL",
        "DOCFACTORY_CHAT_URLS",
        "DOCFACTORY_EMBEDDING_URLS",
        "DOCFACTORY_S3_ENDPOINT",
        "DOCFACTORY_INGESTION_ADDRESS",
        "DOCFACTORY_CHUNKING_ADDRESS",
        "DOCFACTORY_EMBEDDING_ADDRESS",
        "DOCFACTORY_ANSWERING_ADDRESS",
    ):
        for target in data[key].split(","):
            m = re.match(r"^(?:https?://)?([a-z0-9-]+):(\d+)", target)
            assert m, f"{key}={target}"
            host, port = m.group(1), int(m.group(2))
            assert host in services, f"{key}: no Service {host}"
            assert port in {p["port"] for p in services[host]["spec"]["ports"]}, (
                f"{key}: port {port}"
            )


def _policy_ports(policy: Obj, direction: str) -> set[int]:
    return {p["port"] for rule in policy["spec"].get(direction, []) for p in rule.get("ports", [])}


@requires_kubectl
def test_network_policies(objs: tuple[Obj, ...]) -> None:
    policies = {p["metadata"]["name"]: p for p in of_kind(objs, "NetworkPolicy")}
    deny = [
        p
        for p in policies.values()
        if p["spec"]["podSelector"] == {}
        and set(p["spec"]["policyTypes"]) == {"Ingress", "Egress"}
        and not p["spec"].get("ingress")
        and not p["spec"].get("egress")
    ]
    assert deny, "a default-deny NetworkPolicy is required"
    assert 53 in _policy_ports(policies["allow-dns-egress"], "egress")
    assert _policy_ports(policies["docfactory-egress"], "egress") >= {8000, 6333, 6334, 5432, 9000}
    assert _policy_ports(policies["vllm-ingress"], "ingress") == {8000}
    assert _policy_ports(policies["allow-prometheus-scrape"], "ingress") >= {9090, 8000}
    assert 50051 in _policy_ports(policies["docfactory-api-ingress"], "ingress")


def _policy_peers(policy: Obj, direction: str, port: int) -> set[str]:
    """app.kubernetes.io/name values a policy's rules admit on ``port`` (in ``from``/``to``)."""
    peer_key = "from" if direction == "ingress" else "to"
    names: set[str] = set()
    for rule in policy["spec"].get(direction, []):
        if port not in {p["port"] for p in rule.get("ports", [])}:
            continue
        for peer in rule.get(peer_key, []):
            sel = peer.get("podSelector", {})
            if "app.kubernetes.io/name" in sel.get("matchLabels", {}):
                names.add(sel["matchLabels"]["app.kubernetes.io/name"])
            for expr in sel.get("matchExpressions", []):
                if expr["key"] == "app.kubernetes.io/name" and expr["operator"] == "In":
                    names |= set(expr["values"])
    return names


@requires_kubectl
def test_dossier_worker_network_policies(objs: tuple[Obj, ...]) -> None:
    """Its egress: PostgreSQL, the API and the chat pool only; the other side admits it."""
    labels = named(objs, "Deployment", "docfactory-dossier-worker")["spec"]["template"]["metadata"][
        "labels"
    ]
    egress = [
        p
        for p in of_kind(objs, "NetworkPolicy")
        if "Egress" in p["spec"]["policyTypes"]
        and p["spec"].get("egress")
        and (
            p["spec"]["podSelector"] == {}
            or selector_matches(p["spec"]["podSelector"].get("matchLabels", {}), labels)
            or "docfactory-dossier-worker" in _policy_peers_selector(p["spec"]["podSelector"])
        )
    ]
    names = {p["metadata"]["name"] for p in egress}
    assert names == {"allow-dns-egress", "docfactory-dossier-worker-egress"}, names
    own = named(objs, "NetworkPolicy", "docfactory-dossier-worker-egress")
    assert _policy_ports(own, "egress") == {5432, 50051, 8000}
    assert _policy_peers(own, "egress", 5432) == {"postgres"}
    assert _policy_peers(own, "egress", 50051) == {"docfactory-api"}
    assert _policy_peers(own, "egress", 8000) == {"vllm-chat"}
    policies = {p["metadata"]["name"]: p for p in of_kind(objs, "NetworkPolicy")}
    assert "docfactory-dossier-worker" in _policy_peers(policies["data-ingress"], "ingress", 5432)
    assert "docfactory-dossier-worker" in _policy_peers(policies["vllm-ingress"], "ingress", 8000)
    api_ingress = policies["docfactory-api-ingress"]["spec"]["ingress"]
    assert any({} in [r.get("podSelector") for r in rule["from"]] for rule in api_ingress)
    assert 9090 in _policy_ports(policies["allow-prometheus-scrape"], "ingress")


def _policy_peers_selector(selector: Obj) -> set[str]:
    return {
        v
        for expr in selector.get("matchExpressions", [])
        if expr["key"] == "app.kubernetes.io/name" and expr["operator"] == "In"
        for v in expr["values"]
    }


# ------------------------------------------------------------------ docker compose

COMPOSE_ENV = {
    "POSTGRES_PASSWORD": "test-postgres-password",
    "MINIO_ROOT_USER": "test-minio-user",
    "MINIO_ROOT_PASSWORD": "test-minio-password",
    "GRAFANA_ADMIN_PASSWORD": "test-grafana-password",
    "DOCFACTORY_WORKER_API_KEY": "test-worker-api-key",
}
_VAR = re.compile(
    r"\$(?:(?P<escaped>\$)|\{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}"
    r"|(?P<plain>[A-Za-z_][A-Za-z0-9_]*))"
)


def interpolate(text: str, env: dict[str, str]) -> str:
    """Compose-style interpolation: $$, $VAR, ${VAR}, ${VAR:-d}, ${VAR-d}, ${VAR:?e}, ${VAR?e}."""

    def sub(m: re.Match[str]) -> str:
        if m.group("escaped"):
            return "$"
        name = m.group("braced") or m.group("plain")
        op, arg, value = m.group("op"), m.group("arg"), env.get(name)
        unset_or_empty = not value if op and op.startswith(":") else value is None
        if op in (":-", "-"):
            return arg if unset_or_empty else value
        if op in (":?", "?"):
            if unset_or_empty:
                raise KeyError(f"required variable {name} is missing: {arg}")
            return value
        return value or ""

    return _VAR.sub(sub, text)


@functools.cache
def _compose() -> dict[str, Any]:
    compose_spec = pytest.importorskip("compose_spec")
    text = interpolate(COMPOSE_FILE.read_text(), COMPOSE_ENV)
    project = compose_spec.PyOptions(apply_merge=True).from_yaml(text)
    project.validate()
    project.validate_networks()
    project.validate_volumes()
    project.validate_secrets()
    project.to_spec()  # pydantic model of the full Compose Specification
    return project.to_dict()


@pytest.fixture
def compose() -> dict[str, Any]:
    return _compose()


def iter_compose_services(compose: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    yield from compose["services"].items()


def test_compose_is_valid_and_complete(compose: dict[str, Any]) -> None:
    assert set(compose["services"]) == {
        "vllm-chat",
        "vllm-embed",
        "qdrant",
        "minio",
        "postgres",
        "docfactory",
        "docfactory-worker",
        "docfactory-dossier-worker",
        "docfactory-console",
        "prometheus",
        "grafana",
        "dev-certs",  # one-shot: development TLS certificates
    }


def test_compose_refuses_to_start_without_secrets() -> None:
    for missing in COMPOSE_ENV:
        env = {k: v for k, v in COMPOSE_ENV.items() if k != missing}
        with pytest.raises(KeyError, match=missing):
            interpolate(COMPOSE_FILE.read_text(), env)


def test_compose_has_no_inline_secrets() -> None:
    raw = yaml.safe_load(COMPOSE_FILE.read_text())
    secret_like = re.compile(r"PASSWORD|SECRET|ACCESS_KEY|API_KEY|DATABASE_URL")
    for name, svc in raw["services"].items():
        env = svc.get("environment", {})
        assert isinstance(env, dict), f"{name}: use the mapping form for environment"
        for key, value in env.items():
            if secret_like.search(key):
                assert re.search(r"\$\{[A-Z_]+:\?", str(value)), (
                    f"{name}: {key} must use ${{VAR:?}}"
                )
    assert "file" in raw["secrets"]["docfactory_api_keys"]


@pytest.mark.parametrize("name", VLLM_DEPLOYMENTS)
def test_compose_vllm_gets_a_gpu(compose: dict[str, Any], name: str) -> None:
    svc = compose["services"][name]
    devices = svc["deploy"]["resources"]["reservations"]["devices"]
    assert any(
        d["driver"] == "nvidia"
        and "gpu" in d["capabilities"]
        and (d.get("device_ids") or d.get("count"))
        for d in devices
    )
    assert svc["image"].startswith("vllm/vllm-openai:v")
    assert "http://localhost:8000/health" in svc["healthcheck"]["test"]
    assert svc["environment"]["HF_HUB_OFFLINE"] == "1"


def test_compose_healthchecks_and_ordering(compose: dict[str, Any]) -> None:
    services = compose["services"]
    one_shot = {name for name, svc in services.items() if svc.get("restart") == "no"}
    assert one_shot == {"dev-certs"}
    for name, svc in iter_compose_services(compose):
        if name in one_shot:
            continue
        assert svc.get("healthcheck", {}).get("test"), f"{name} has no healthcheck"
        for dep, cond in svc.get("depends_on", {}).items():
            assert dep in services, f"{name} depends on unknown {dep}"
            wanted = "service_completed_successfully" if dep in one_shot else "service_healthy"
            assert cond["condition"] == wanted, f"{name} -> {dep}"
    # TLS: the server waits for its certificates, and is probed on the Health-only listener
    deps = services["docfactory"]["depends_on"]
    assert deps["dev-certs"]["condition"] == "service_completed_successfully"
    env = services["docfactory"]["environment"]
    assert env["DOCFACTORY_TLS_CA"] == "/certs/ca.crt"
    assert env["DOCFACTORY_PROBE_LISTEN"].split(":")[-1] in " ".join(
        services["docfactory"]["healthcheck"]["test"]
    )
    assert set(services["docfactory"]["depends_on"]) >= {
        "postgres",
        "qdrant",
        "minio",
        "vllm-chat",
        "vllm-embed",
    }
    assert "grpc_health" in " ".join(services["docfactory"]["healthcheck"]["test"])
    assert services["docfactory"]["command"] == ["docfactory", "serve"]
    assert services["docfactory-worker"]["command"] == ["docfactory", "worker"]
    dossier = services["docfactory-dossier-worker"]
    assert dossier["command"] == ["docfactory", "dossier", "worker"]
    assert dossier["depends_on"]["docfactory"]["condition"] == "service_healthy"
    assert "9090/metrics" in " ".join(dossier["healthcheck"]["test"])
    console = services["docfactory-console"]
    assert console["command"][:4] == ["docfactory", "--address", "docfactory:50051", "console"]
    assert "--insecure" in console["command"]  # HTTP inside the network, TLS at the proxy
    assert "/healthz" in " ".join(console["healthcheck"]["test"])


def test_compose_named_volumes_are_declared(compose: dict[str, Any]) -> None:
    declared = set(compose.get("volumes", {}))
    used = set()
    for _, svc in iter_compose_services(compose):
        for vol in svc.get("volumes", []):
            source = vol.split(":", 1)[0] if isinstance(vol, str) else vol.get("source", "")
            if source and not source.startswith((".", "/", "~")):
                used.add(source)
    assert used and used <= declared
    assert {"qdrant_data", "minio_data", "postgres_data"} <= used


def test_compose_docfactory_env(compose: dict[str, Any]) -> None:
    services = compose["services"]
    for name in ("docfactory", "docfactory-worker", "docfactory-dossier-worker"):
        env = services[name]["environment"]
        assert env["DOCFACTORY_DATABASE_URL"].startswith("postgresql+psycopg://")
        assert env["DOCFACTORY_QDRANT_URL"] == "http://qdrant:6334"
        assert env["DOCFACTORY_CHAT_URLS"] == "http://vllm-chat:8000/v1"
        assert env["DOCFACTORY_EMBEDDING_URLS"] == "http://vllm-embed:8000/v1"
        assert env["DOCFACTORY_KEYS_FILE"] == "/run/secrets/docfactory_api_keys"
        assert "docfactory_api_keys" in services[name]["secrets"]
    # the API runs no dossier worker in-process: the dossier worker service does, on its own
    assert str(services["docfactory"]["environment"]["DOCFACTORY_WORKFLOWS_SERVE_WORKERS"]) == "0"
    for name in ("docfactory-worker", "docfactory-dossier-worker"):
        env = services[name]["environment"]
        assert env["DOCFACTORY_WORKER_API_KEY"] == COMPOSE_ENV["DOCFACTORY_WORKER_API_KEY"]
        assert env["DOCFACTORY_TLS_CERT"].startswith("/certs/")  # a client certificate
        assert "DOCFACTORY_WORKFLOWS_SERVE_WORKERS" not in env
    env = services["docfactory-dossier-worker"]["environment"]
    assert env["DOCFACTORY_WORKFLOWS_SEARCH_ADDRESS"] == "docfactory:50051"
    assert env["DOCFACTORY_WORKFLOWS_VLLM_URL"] == "http://vllm-chat:8000/v1"
    assert str(env["DOCFACTORY_WORKFLOWS_METRICS_PORT"]) == "9090"


def test_compose_dossier_workers_scale() -> None:
    """`--scale docfactory-dossier-worker=N` works: no host port, no fixed container name."""
    raw = yaml.safe_load(interpolate(COMPOSE_FILE.read_text(), COMPOSE_ENV))
    svc = raw["services"]["docfactory-dossier-worker"]
    assert "ports" not in svc and "container_name" not in svc
    assert svc["deploy"]["replicas"] >= 1
    assert svc["read_only"] is True and svc["cap_drop"] == ["ALL"]
    grace = int(svc["stop_grace_period"].removesuffix("s"))
    assert grace >= int(raw["services"]["docfactory-worker"]["stop_grace_period"].removesuffix("s"))


# ------------------------------------------------------------------ both: every process kind


def _subcommand(argv: list[str]) -> tuple[str, ...]:
    """The `docfactory` subcommand words of an argv, global options (`--address X`) dropped."""
    if not argv or argv[0] != "docfactory":
        return ()
    words: list[str] = []
    rest = iter(argv[1:])
    for arg in rest:
        if arg.startswith("-"):
            if "=" not in arg and not words:  # a global option and its value
                next(rest, None)
            continue
        words.append(arg)
    return tuple(words[:2]) if words[:1] == ["dossier"] else tuple(words[:1])


def test_every_process_kind_runs_in_kubernetes_and_compose() -> None:
    """API, bulk worker, dossier worker and console: each in both deployments (issue 25)."""
    if KUBECTL is None:
        pytest.skip("kubectl not found on PATH: cannot render kustomize overlays")
    in_compose = {
        _subcommand(list(svc.get("command") or [])) for svc in _compose()["services"].values()
    }
    for overlay_name in OVERLAYS:
        in_k8s = {
            _subcommand(list(c.get("command", [])) + list(c.get("args", [])))
            for wl in workloads(_render(overlay_name))
            for c in containers(wl)
        }
        for kind, words in PROCESS_KINDS.items():
            assert words in in_k8s, f"{kind} (docfactory {' '.join(words)}) not in {overlay_name}"
    for kind, words in PROCESS_KINDS.items():
        assert words in in_compose, f"{kind} (docfactory {' '.join(words)}) not in compose"


# ------------------------------------------------------------------ prometheus


def test_prometheus_scrapes_docfactory_and_vllm() -> None:
    config = yaml.safe_load(PROMETHEUS_FILE.read_text())
    jobs = {j["job_name"]: j for j in config["scrape_configs"]}
    assert len(jobs) == len(config["scrape_configs"]), "duplicate job_name"

    def ports(job: dict[str, Any]) -> set[int]:
        found = {
            int(t.rsplit(":", 1)[1]) for sc in job.get("static_configs", []) for t in sc["targets"]
        }
        return found | {sd["port"] for sd in job.get("dns_sd_configs", [])}

    assert ports(jobs["docfactory-api"]) == {9090}
    assert ports(jobs["docfactory-worker"]) == {9090}
    assert ports(jobs["docfactory-dossier-worker"]) == {9090}
    names = {n for sd in jobs["docfactory-dossier-worker"]["dns_sd_configs"] for n in sd["names"]}
    assert names == {"docfactory-dossier-worker"}  # the compose service: every replica
    assert ports(jobs["vllm"]) == {8000}
    assert jobs["vllm"]["metrics_path"] == "/metrics"
    vllm_names = {n for sd in jobs["vllm"]["dns_sd_configs"] for n in sd["names"]}
    assert vllm_names == set(VLLM_DEPLOYMENTS)
    mounts = _compose()["services"]["prometheus"]["volumes"]
    assert any(str(m).startswith("./deploy/prometheus/prometheus.yml:") for m in mounts)


# --------------------------------------------------------------------------- image

DOCKERFILE = ROOT / "Dockerfile"


def _dockerfile() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    out: list[tuple[str, str]] = []
    pending = ""
    for raw in DOCKERFILE.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        pending = f"{pending} {line[:-1]}" if line.endswith("\\") else f"{pending} {line}"
        if line.endswith("\\"):
            continue
        word, _, rest = pending.strip().partition(" ")
        out.append((word.upper(), rest.strip()))
        pending = ""
    return out


def test_dockerfile_matches_the_deployments() -> None:
    """The image the manifests run (no Docker engine here: checked for consistency, not built)."""
    import json as _json

    steps = _dockerfile()
    kinds = [k for k, _ in steps]
    froms = [a for k, a in steps if k == "FROM"]
    assert len(froms) == 2, "a build stage and a runtime stage"
    args = dict(a.split("=", 1) for k, a in steps if k == "ARG" and "=" in a)
    assert args["PYTHON_IMAGE"].startswith("python:3.11"), "pyproject requires Python 3.11"
    runs = " ".join(a for k, a in steps if k == "RUN")
    # CPU torch from PyTorch's CPU index before the package (else a CUDA build is pulled).
    assert "download.pytorch.org/whl/cpu" in runs and '"torch==2.13.0"' in runs
    assert runs.index("whl/cpu") < runs.index(".[parsing,embeddings")
    assert '--no-deps "unstructured-inference==1.6.14"' in runs
    for pkg in ("tesseract-ocr-fra", "poppler-utils", "tini"):
        assert pkg in runs
    # Same user as the pods' securityContext, and the ports the pods declare.
    user = [a for k, a in steps if k == "USER"][-1]
    assert user == "10001:10001"
    for name in DOCFACTORY_DEPLOYMENTS:
        text = (K8S_DIR / "base" / f"{name}.yaml").read_text(encoding="utf-8")
        assert "runAsUser: 10001" in text and "runAsGroup: 10001" in text
    exposed = {int(p) for k, a in steps if k == "EXPOSE" for p in a.split()}
    assert {50051, 9090} <= exposed
    assert _json.loads([a for k, a in steps if k == "ENTRYPOINT"][-1]) == ["tini", "--"]
    assert _json.loads([a for k, a in steps if k == "CMD"][-1]) == ["docfactory", "serve"]
    env = " ".join(a for k, a in steps if k == "ENV")
    for var in ("DO_NOT_TRACK=1", "HF_HUB_OFFLINE=1", "DOCFACTORY_DATA_DIR=/tmp/docfactory"):
        assert var in env
    assert kinds.index("USER") > max(i for i, k in enumerate(kinds) if k == "RUN")
    # The build context holds the package only (no .venv, .git, secrets or test data).
    ignore = (ROOT / ".dockerignore").read_text(encoding="utf-8").split()
    assert ignore[ignore.index("*")] == "*" and "!services/" in ignore
    copies = " ".join(a for k, a in steps if k == "COPY")
    for path in ("pyproject.toml", "README.md", "services"):
        assert path in copies


@requires_kubectl
def test_tls_certificates_from_cert_manager(objs: tuple[Obj, ...]) -> None:
    """Every docfactory pod mounts a cert-manager Secret at the paths DOCFACTORY_TLS_* name;
    the API's certificate covers its Service names and serves as client certificate too."""
    certs = {c["spec"]["secretName"]: c for c in of_kind(objs, "Certificate")}
    api = certs["docfactory-api-tls"]["spec"]
    assert {"docfactory-api", "docfactory-api.docfactory.svc"} <= set(api["dnsNames"])
    assert set(api["usages"]) == {"server auth", "client auth"}
    assert api["issuerRef"]["name"] == "docfactory-ca" and api["privateKey"]["rotationPolicy"]
    assert named(objs, "Certificate", "docfactory-ca")["spec"]["isCA"] is True
    (api_c,) = containers(named(objs, "Deployment", "docfactory-api"))[:1]
    cm_name = next(s["configMapRef"]["name"] for s in api_c["envFrom"] if "configMapRef" in s)
    config = named(objs, "ConfigMap", cm_name)["data"]
    paths = [config[f"DOCFACTORY_TLS_{k}"] for k in ("CERT", "KEY", "CA")]
    for name in DOCFACTORY_DEPLOYMENTS:
        wl = named(objs, "Deployment", name)
        secrets = {
            v["name"]: v["secret"]["secretName"] for v in pod_spec(wl)["volumes"] if "secret" in v
        }
        (c,) = [c for c in containers(wl) if c["name"] == "docfactory"]
        mount = next(m for m in c["volumeMounts"] if m["mountPath"] == "/etc/docfactory/tls")
        assert secrets[mount["name"]] in certs, name
        assert all(p.startswith(mount["mountPath"] + "/") for p in paths)
    assert config["DOCFACTORY_PROBE_LISTEN"].endswith(":8086")
    # each worker pool presents its own client certificate
    for name in WORKER_DEPLOYMENTS:
        (tls,) = [
            v for v in pod_spec(named(objs, "Deployment", name))["volumes"] if v["name"] == "tls"
        ]
        cert = certs[tls["secret"]["secretName"]]["spec"]
        assert cert["usages"] == ["client auth"] and cert["commonName"] == name
