"""Render deploy/kubernetes overlays with `kubectl kustomize` and read the pods they imply.

`rendered(overlay)` returns the objects (skips the test when kubectl is missing or its built-in
kustomize cannot render the overlays); `pods(objects)` gives one `PodView` per workload (replica
0 of each StatefulSet, one router replica): its container's full command line with every
`$(VAR)` expanded from the pod's env (field refs and ConfigMap keys), as the kubelet would.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
KUBE = ROOT / "deploy" / "kubernetes"
OVERLAYS = sorted(p.name for p in (KUBE / "overlays").iterdir() if p.is_dir())


def rendered(overlay: str) -> list[dict]:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl is not installed (.ci/run installs Debian's kubernetes-client)")
    out = subprocess.run(
        [kubectl, "kustomize", "--load-restrictor=LoadRestrictionsNone", str(KUBE / "overlays" / overlay)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    if out.returncode != 0 and "unknown flag" in out.stderr:
        pytest.skip(f"kubectl's built-in kustomize is too old for these overlays: {out.stderr}")
    assert out.returncode == 0, out.stderr
    return [doc for doc in yaml.safe_load_all(out.stdout) if doc]


@dataclass
class PodView:
    name: str
    namespace: str
    workload: dict
    container: dict
    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)

    @property
    def labels(self) -> dict[str, str]:
        return self.workload["spec"]["template"]["metadata"]["labels"]

    @property
    def ports(self) -> dict[str, int]:
        return {p["name"]: p["containerPort"] for p in self.container.get("ports", [])}

    def option(self, name: str) -> str | None:
        for arg in self.argv:
            if arg.startswith(f"{name}="):
                return arg.split("=", 1)[1]
        return None


def _env(container: dict, pod: str, namespace: str, configmaps: dict) -> dict[str, str]:
    env: dict[str, str] = {}
    for var in container.get("env", []):
        if "value" in var:
            env[var["name"]] = var["value"]
            continue
        source = var["valueFrom"]
        if "fieldRef" in source:
            path = source["fieldRef"]["fieldPath"]
            env[var["name"]] = {"metadata.name": pod, "metadata.namespace": namespace}[path]
        else:
            ref = source["configMapKeyRef"]
            env[var["name"]] = configmaps[(namespace, ref["name"])]["data"][ref["key"]]
    return env


def expand(text: str, env: dict[str, str]) -> str:
    """Kubernetes' `$(VAR)` expansion in command and args (unknown names stay as written)."""
    return re.sub(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)", lambda m: env.get(m[1], m[0]), text)


def pods(objects: list[dict]) -> list[PodView]:
    configmaps = {(o["metadata"]["namespace"], o["metadata"]["name"]): o
                  for o in objects if o["kind"] == "ConfigMap"}  # fmt: skip
    out = []
    for obj in objects:
        if obj["kind"] not in ("StatefulSet", "Deployment"):
            continue
        namespace = obj["metadata"]["namespace"]
        name = obj["metadata"]["name"]
        pod = f"{name}-0" if obj["kind"] == "StatefulSet" else f"{name}-replica"
        for container in obj["spec"]["template"]["spec"]["containers"]:
            env = _env(container, pod, namespace, configmaps)
            argv = [expand(a, env) for a in container["command"] + container.get("args", [])]
            out.append(PodView(pod, namespace, obj, container, argv, env))
    return out


def configmap(objects: list[dict], namespace: str, name: str) -> dict:
    for o in objects:
        meta = o["metadata"]
        if o["kind"] == "ConfigMap" and (meta.get("namespace"), meta["name"]) == (namespace, name):
            return o
    raise KeyError(name)
