"""deploy/kubernetes checked without a cluster: every overlay renders, every object validates
against the Kubernetes schemas, and the manifests agree with the code (arguments the commands
accept, ports the processes open, probes on the health endpoints, names the Services give)."""

from __future__ import annotations

import pytest

from prfaas.cli import build_parser
from tests.deploy.kube_render import OVERLAYS, pods, rendered

KUBERNETES_VERSION = "1.33.0"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_overlay_validates_against_kubernetes_schemas(overlay: str) -> None:
    kubernetes_validate = pytest.importorskip("kubernetes_validate")
    objects = rendered(overlay)
    assert objects
    for obj in objects:
        kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_argument_is_an_option_the_command_accepts(overlay: str) -> None:
    for pod in pods(rendered(overlay)):
        assert pod.argv[0] == "prfaas", pod.name
        argv = pod.argv[1:]
        assert "$(" not in " ".join(argv), f"{pod.name}: unexpanded variable in {argv}"
        try:
            build_parser(argv).parse_args(argv)  # the real parsers: exits on an unknown option
        except SystemExit as exc:
            raise AssertionError(f"{pod.name}: prfaas refuses {argv}") from exc


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_ports_and_probes_match_the_processes(overlay: str) -> None:
    for pod in pods(rendered(overlay)):
        ports = pod.ports
        if pod.argv[1] == "router":
            assert int(pod.option("--http-port")) == ports["http"]
            assert int(pod.option("--grpc-port")) == ports["grpc"]
            # The kubelet probes the scheme the router serves (HTTPS with --https-cert).
            scheme = {"scheme": "HTTPS"} if pod.option("--https-cert") else {}
            for probe, path in (("readinessProbe", "/ready"), ("livenessProbe", "/health")):
                assert pod.container[probe]["httpGet"] == {"path": path, "port": "http", **scheme}
            continue
        assert int(pod.option("--grpc-port")) == ports["grpc"]
        assert int(pod.option("--kv-port")) == ports["kv"]
        assert int(pod.option("--metrics-port")) == ports["metrics"]
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            assert pod.container[probe]["grpc"]["port"] == ports["grpc"]  # grpc.health.v1
        # Advertised addresses name this pod through its own headless Service and ports.
        service = pod.workload["spec"]["serviceName"]
        for option, port in (("--grpc-advertise", "grpc"), ("--kv-advertise", "kv")):
            host, _, number = pod.option(option).rpartition(":")
            assert host.startswith(f"{pod.name}.{service}.{pod.namespace}.svc."), option
            assert int(number) == ports[port]
        timeout = int(pod.option("--drain-timeout-s"))
        grace = pod.workload["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
        assert grace > timeout, "the pod would be killed before its drain may end"
        assert "kill -TERM 1" in " ".join(pod.container["lifecycle"]["preStop"]["exec"]["command"])


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_services_select_pods_and_target_their_ports(overlay: str) -> None:
    objects = rendered(overlay)
    views = pods(objects)
    for svc in (o for o in objects if o["kind"] == "Service"):
        selected = [p for p in views if p.namespace == svc["metadata"]["namespace"]
                    and svc["spec"]["selector"].items() <= p.labels.items()]  # fmt: skip
        assert selected, f"Service {svc['metadata']['name']} selects no pod"
        for port in svc["spec"]["ports"]:
            assert all(port["targetPort"] in p.ports for p in selected), port


def test_gpu_overlays_ask_for_gpus_and_cuda() -> None:
    for overlay in ("pd-cluster-gpu", "prfaas-cluster-gpu"):
        for pod in pods(rendered(overlay)):
            if pod.argv[1] == "router":
                continue
            assert pod.container["resources"]["limits"]["nvidia.com/gpu"] == 1
            assert pod.option("--device") == "cuda"


def test_secure_overlay_serves_https_with_api_keys_from_private_copies() -> None:
    """pd-cluster-secure: the router's HTTPS key and API keys come from user-provided secrets,
    copied 0600 by the init container into the directory the router reads them from."""
    router = next(p for p in pods(rendered("pd-cluster-secure")) if p.argv[1] == "router")
    spec = router.workload["spec"]["template"]["spec"]
    secrets = {v["name"]: v["secret"]["secretName"] for v in spec["volumes"] if "secret" in v}
    assert secrets["https"] == "prfaas-router-https"
    assert secrets["api-keys"] == "prfaas-api-keys"
    copied = {m["name"] for m in spec["initContainers"][0]["volumeMounts"]}
    assert {"https", "api-keys"} <= copied
    private = next(
        m["mountPath"] for m in router.container["volumeMounts"] if m["name"] == "secrets"
    )
    for option in ("--https-cert", "--https-key", "--api-key-file"):
        assert router.option(option).startswith(private + "/"), option


def test_model_overlays_serve_one_checkpoint_everywhere() -> None:
    """pd-cluster-model / prfaas-cluster-model: the router and every worker of both clusters get
    `--model` on the same read-only claim (both clusters must serve the same checkpoint)."""
    for overlay, kinds in (("pd-cluster-model", {"router", "pd-worker"}),
                           ("prfaas-cluster-model", {"prefill-worker"})):  # fmt: skip
        seen = set()
        for pod in pods(rendered(overlay)):
            seen.add(pod.argv[1])
            assert pod.option("--model") == "/models/checkpoint", (overlay, pod.argv[1])
            spec = pod.workload["spec"]["template"]["spec"]
            claims = {v["name"]: v["persistentVolumeClaim"] for v in spec["volumes"]
                      if "persistentVolumeClaim" in v}  # fmt: skip
            assert claims["model"] == {"claimName": "prfaas-model", "readOnly": True}
            mounts = {m["name"]: m for m in pod.container["volumeMounts"]}
            assert mounts["model"]["mountPath"] == "/models" and mounts["model"]["readOnly"]
        assert seen == kinds, (overlay, seen)
