"""deploy/compose: the compose file resolves, everything it mounts or builds from exists, the two
datacenters are isolated except through the link, the topology's worker addresses lead to the
right compose services, and the Prometheus config is current and valid."""

from __future__ import annotations

import re
import shlex
import subprocess
from pathlib import Path
from typing import Any

import pytest
from deploy_helpers import (
    COMPOSE_DIR,
    PROMETHEUS_YML,
    REPO,
    compose_config,
    flag,
    load_module,
    require_tool,
    run_compose_config,
    service_networks,
)

from prfaas.topology import Topology, load_topology

DATACENTERS = {"dc_prfaas", "dc_pd"}


@pytest.fixture(scope="module")
def config() -> dict[str, Any]:
    return compose_config()


@pytest.fixture(scope="module")
def topology() -> Topology:
    return load_topology(COMPOSE_DIR / "topology.toml")


def _command(service: dict[str, Any]) -> list[str]:
    return [str(c) for c in (service.get("command") or [])]


def _services_running(config: dict[str, Any], subcommand: str) -> dict[str, dict[str, Any]]:
    return {
        name: svc
        for name, svc in config["services"].items()
        if _command(svc)[:1] == [subcommand] and "profiles" not in svc
    }


def _link_routes(config: dict[str, Any]) -> dict[int, str]:
    routes = config["services"]["link"]["environment"]["LINK_ROUTES"].split()
    return {int(r.split("=", 1)[0]): r.split("=", 1)[1] for r in routes}


def test_config_resolves_and_requires_the_kv_secret(config: dict[str, Any]) -> None:
    assert {"router", "link", "link-netem", "prometheus", "grafana"} <= set(config["services"])
    assert _services_running(config, "prefill-worker")
    assert _services_running(config, "pd-worker")
    without = run_compose_config()
    assert without.returncode != 0
    assert "PRFAAS_KV_SECRET" in without.stderr


def test_every_worker_gets_the_kv_secret(config: dict[str, Any]) -> None:
    for kind in ("prefill-worker", "pd-worker"):
        for name, svc in _services_running(config, kind).items():
            assert svc["environment"].get("PRFAAS_KV_SECRET"), name


def test_mounted_and_built_files_exist(config: dict[str, Any]) -> None:
    checked = 0
    for name, svc in config["services"].items():
        for volume in svc.get("volumes") or []:
            source = volume["source"] if isinstance(volume, dict) else volume.split(":", 1)[0]
            if source.startswith("/"):  # bind mount (named volumes have bare names)
                assert Path(source).exists(), f"{name} mounts missing {source}"
                checked += 1
        build = svc.get("build")
        if build:
            context = Path(build["context"])
            dockerfile = context / build.get("dockerfile", "Dockerfile")
            assert dockerfile.is_file(), f"{name}: missing {dockerfile}"
            for source in _copy_sources(dockerfile):
                assert (context / source).exists(), f"{dockerfile} copies missing {source}"
                checked += 1
    assert checked >= 5


def _copy_sources(dockerfile: Path) -> list[str]:
    sources = []
    for line in dockerfile.read_text().splitlines():
        words = shlex.split(line) if line.strip().startswith(("COPY", "ADD")) else []
        if words:
            args = [w for w in words[1:] if not w.startswith("--")]
            sources += args[:-1]
    assert sources, f"{dockerfile} copies nothing"
    return sources


def test_dockerignore_lets_every_copied_path_in() -> None:
    dockerfile = COMPOSE_DIR / "Dockerfile"
    allowed = [
        line[1:].removesuffix("/**")
        for line in (COMPOSE_DIR / "Dockerfile.dockerignore").read_text().splitlines()
        if line.startswith("!")
    ]
    for source in _copy_sources(dockerfile):
        assert source.rstrip("/") in allowed, f"{source} is excluded from the build context"


def test_entrypoint_scripts_are_in_the_image_and_parse(config: dict[str, Any]) -> None:
    copied = _copy_sources(COMPOSE_DIR / "Dockerfile")
    for name in ("link", "link-netem"):
        (entry,) = config["services"][name]["entrypoint"]
        script = f"deploy/compose/{Path(entry).name}"
        assert script in copied, f"{name}'s entrypoint {entry} is not copied into the image"
        proc = subprocess.run(["sh", "-n", str(REPO / script)], capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr


def _in_image(path: str) -> bool:
    """Whether `path` (inside the container) is a file the image copies from the repository."""
    if not path.startswith("/opt/prfaas/"):
        return False
    relative = Path(path).relative_to("/opt/prfaas")
    copied = _copy_sources(COMPOSE_DIR / "Dockerfile")
    return relative.parts[0] in copied and (REPO / relative).is_file()


def test_worker_profiles_are_in_the_image(config: dict[str, Any]) -> None:
    for kind in ("prefill-worker", "pd-worker"):
        for name, svc in _services_running(config, kind).items():
            profile = flag(_command(svc), "--profile")
            assert profile and _in_image(profile), f"{name}: {profile}"


def test_datacenters_meet_only_in_the_link_and_prometheus(config: dict[str, Any]) -> None:
    services = config["services"]
    for name in _services_running(config, "prefill-worker"):
        assert service_networks(services[name]) == {"dc_prfaas"}, name
    for name in [*_services_running(config, "pd-worker"), "router"]:
        assert service_networks(services[name]) == {"dc_pd"}, name
    bridging = {n for n, s in services.items() if service_networks(s) >= DATACENTERS}
    assert bridging == {"link", "prometheus"}
    assert service_networks(services["grafana"]) == {"mgmt"}
    assert "mgmt" in service_networks(services["prometheus"])


def test_netem_profile_shapes_the_link_container(config: dict[str, Any]) -> None:
    netem = config["services"]["link-netem"]
    assert netem["profiles"] == ["netem"]
    assert netem["network_mode"] == "service:link"
    assert "NET_ADMIN" in netem["cap_add"]
    assert netem["user"] == "root"


def test_link_parameters_match_the_topology(config: dict[str, Any], topology: Topology) -> None:
    env = config["services"]["link"]["environment"]
    assert float(env["LINK_DELAY_MS"]) == topology.link.delay_ms
    assert float(env["LINK_RATE_MBIT"]) == topology.link.rate_gbps * 1000
    assert float(env["LINK_JITTER_MS"]) == topology.link.jitter_ms


def _resolve(
    config: dict[str, Any], dialer: str, address: str, port_flag: str
) -> tuple[str, list[str]]:
    """Follow HOST:PORT from the `dialer` service, through the link when HOST is the link, to
    the service listening there; returns the service name and the compose services crossed."""
    services = config["services"]
    host, port = address.rsplit(":", 1)
    assert host in services, f"{address}: {host} is not a compose service"
    shared = service_networks(services[dialer]) & service_networks(services[host])
    assert shared, f"{dialer} shares no network with {host} (dialing {address})"
    if host == "link":
        routes = _link_routes(config)
        assert int(port) in routes, f"the link relays nothing on port {port}"
        target, hops = _resolve(config, "link", routes[int(port)], port_flag)
        return target, ["link", *hops]
    assert flag(_command(services[host]), port_flag) == port, f"{host} does not listen on {port}"
    return host, []


def test_topology_addresses_reach_the_compose_services(
    config: dict[str, Any], topology: Topology
) -> None:
    services = config["services"]
    assert topology.link.mode == "relay" and topology.link_host == "link"
    prefill = _services_running(config, "prefill-worker")
    pd = _services_running(config, "pd-worker")
    workers = topology.workers()
    assert {w.worker_id for w in workers} == {
        flag(_command(s), "--worker-id") for s in [*prefill.values(), *pd.values()]
    }
    senders = list(prefill)
    for w in workers:
        grpc_service, hops = _resolve(config, "router", w.grpc, "--grpc-port")
        cmd = _command(services[grpc_service])
        assert flag(cmd, "--worker-id") == w.worker_id
        assert flag(cmd, "--cluster") == w.cluster
        if w.kind == "prefill":
            # The router lives in dc_pd: its gRPC to a PrfaaS worker must cross the link.
            assert hops == ["link"], f"{w.worker_id}: router gRPC bypasses the link"
            continue
        assert hops == [], f"{w.worker_id}: router gRPC to a local worker crosses the link"
        assert flag(cmd, "--role") == w.role
        direct, hops = _resolve(config, "router", w.kv_direct, "--kv-port")
        assert (direct, hops) == (grpc_service, [])
        for sender in senders:
            via, hops = _resolve(config, sender, w.kv_via_link, "--kv-port")
            assert (via, hops) == (grpc_service, ["link"]), f"KV {sender} -> {w.worker_id}"


def test_router_serves_the_mounted_topology(config: dict[str, Any], topology: Topology) -> None:
    router = config["services"]["router"]
    cmd = _command(router)
    path = flag(cmd, "--topology")
    mounts = {v.split(":")[1]: v.split(":")[0] for v in router["volumes"]}
    assert Path(mounts[path]).resolve() == (COMPOSE_DIR / "topology.toml").resolve()
    assert flag(cmd, "--http-port") == str(topology.http_port)
    assert flag(cmd, "--grpc-port") == str(topology.router_grpc_port)
    assert flag(cmd, "--policy") == topology.policy
    # The planner's profiles are the package's, at their path in the image.
    for profile in (topology.emulated_profile_pd, topology.emulated_profile_prfaas):
        assert _in_image(profile), f"router cannot read {profile}"
    ports = [str(p) for p in router["ports"]]
    assert any(re.search(rf":{topology.http_port}:{topology.http_port}\b", p) for p in ports)


def test_prometheus_config_is_current_and_valid(config: dict[str, Any]) -> None:
    promconfig = load_module(REPO / "deploy" / "prometheus" / "promconfig.py")
    expected = promconfig.render_config(
        promconfig.compose_jobs(config), header=promconfig.COMPOSE_HEADER
    )
    assert PROMETHEUS_YML.read_text() == expected, (
        "deploy/compose/prometheus.yml is stale; regenerate with "
        "`python deploy/prometheus/promconfig.py --compose deploy/compose/docker-compose.yml`"
    )
    promtool = require_tool("promtool")
    proc = subprocess.run(
        [promtool, "check", "config", str(PROMETHEUS_YML)], capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_prometheus_scrapes_every_process_without_crossing_the_link(
    config: dict[str, Any],
) -> None:
    yaml = pytest.importorskip("yaml")
    prom = yaml.safe_load(PROMETHEUS_YML.read_text())
    targets = {
        t for job in prom["scrape_configs"] for sc in job["static_configs"] for t in sc["targets"]
    }
    services = config["services"]
    processes = {
        name
        for name, svc in services.items()
        if _command(svc)[:1] in (["router"], ["prefill-worker"], ["pd-worker"])
    }
    assert {t.split(":")[0] for t in targets} == processes | {"link"}
    for target in targets:
        host, port = target.split(":")
        if host == "link":
            continue  # the relays: test_prometheus_scrapes_every_link_relay
        cmd = _command(services[host])
        expected = flag(cmd, "--http-port" if cmd[0] == "router" else "--metrics-port")
        assert port == expected, target
        assert service_networks(services["prometheus"]) & service_networks(services[host])
    mount = [v for v in services["prometheus"]["volumes"] if "prometheus.yml" in v]
    assert mount and Path(mount[0].split(":")[0]).resolve() == PROMETHEUS_YML.resolve()


def test_prometheus_scrapes_every_link_relay(config: dict[str, Any]) -> None:
    yaml = pytest.importorskip("yaml")
    prom = yaml.safe_load(PROMETHEUS_YML.read_text())
    (job,) = [j for j in prom["scrape_configs"] if j["job_name"] == "link-relay"]
    targets = {t for sc in job["static_configs"] for t in sc["targets"]}
    services = config["services"]
    relay_services = {
        name: svc
        for name, svc in services.items()
        if "LINK_ROUTES" in (svc.get("environment") or {}) and "profiles" not in svc
    }
    assert relay_services, "no link service runs relays"
    expected = set()
    for name, svc in relay_services.items():
        env = svc["environment"]
        base = int(env["LINK_METRICS_BASE_PORT"])
        routes = env["LINK_ROUTES"].split()
        ports = {base + i for i in range(len(routes))}
        assert not ports & set(_link_routes(config)), "a metrics port collides with a route"
        assert {str(p) for p in ports} <= {str(e) for e in svc.get("expose", [])}, name
        expected |= {f"{name}:{p}" for p in ports}
        assert service_networks(services["prometheus"]) & service_networks(svc)
    assert targets == expected
    # link.sh gives the i-th route's relay --metrics-port LINK_METRICS_BASE_PORT + i.
    script = (COMPOSE_DIR / "link.sh").read_text()
    assert '--metrics-port "${metrics_port}"' in script
    assert "metrics_port=$((metrics_base + i))" in script


def test_link_sh_starts_one_relay_per_route_with_its_metrics_port(tmp_path: Path) -> None:
    # Run link.sh with a stub `prfaas` that records its arguments and exits soon after (not at
    # once: link.sh stops the other relays as soon as one exits).
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = tmp_path / "calls"
    stub = bin_dir / "prfaas"
    stub.write_text(f'#!/bin/sh\necho "$@" >> {log}\nsleep 0.5\n')
    stub.chmod(0o755)
    env = {
        "PATH": f"{bin_dir}:/usr/bin:/bin",
        "LINK_ROUTES": "50100=a:1 50400=b:2 50401=c:3",
        "LINK_METRICS_BASE_PORT": "9200",
    }
    proc = subprocess.run(
        ["sh", str(COMPOSE_DIR / "link.sh")], env=env, capture_output=True, text=True, timeout=30
    )
    assert proc.returncode == 1  # a relay exited, so the script stops
    calls = sorted(log.read_text().splitlines())
    assert len(calls) == 3
    ports = {}
    for call in calls:
        args = shlex.split(call)
        ports[flag(args, "--listen")] = flag(args, "--metrics-port")
    assert ports == {"0.0.0.0:50100": "9200", "0.0.0.0:50400": "9201", "0.0.0.0:50401": "9202"}


def test_grafana_mounts_provisioning_and_dashboards(config: dict[str, Any]) -> None:
    yaml = pytest.importorskip("yaml")
    volumes = {
        v.split(":")[1]: Path(v.split(":")[0]) for v in config["services"]["grafana"]["volumes"]
    }
    grafana = REPO / "deploy" / "grafana"
    assert volumes["/etc/grafana/provisioning"].resolve() == (grafana / "provisioning").resolve()
    provider = yaml.safe_load((grafana / "provisioning/dashboards/prfaas.yml").read_text())
    path = provider["providers"][0]["options"]["path"]
    assert volumes[path].resolve() == (grafana / "dashboards").resolve()
    assert list(volumes[path].glob("*.json"))


def test_promconfig_renders_valid_configs_and_rejects_bad_targets(tmp_path: Path) -> None:
    promconfig = load_module(REPO / "deploy" / "prometheus" / "promconfig.py")
    jobs = promconfig.jobs_from_urls(
        {
            "router": ["http://127.0.0.1:8000/metrics"],
            "workers": ["http://127.0.0.1:9101/metrics", "http://localhost:9102/metrics"],
        }
    )
    text = promconfig.render_config(jobs, scrape_interval="1s")
    assert '"127.0.0.1:9101"' in text and '"localhost:9102"' in text
    path = tmp_path / "prometheus.yml"
    path.write_text(text)
    promtool = require_tool("promtool")
    proc = subprocess.run([promtool, "check", "config", str(path)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    with pytest.raises(ValueError):
        promconfig.render_config([promconfig.ScrapeJob("x", [promconfig.ScrapeTarget("nohost")])])
    with pytest.raises(ValueError):
        promconfig.render_config([promconfig.ScrapeJob("x", [])])
    with pytest.raises(ValueError):
        promconfig.jobs_from_urls({"x": ["http://a:1/metrics", "http://b:2/other"]})
