#!/usr/bin/env python3
"""Checks the Kubernetes manifests (make lint-deploy, scripts/check_deploy.sh).

Given the objects each target renders to (an overlay, rendered by
check_deploy.sh with `kubectl kustomize` or scripts/kustomize_render.py),
it:

1. validates every object with `kubernetes-validate --strict` against each
   Kubernetes version given (the schemas ship inside the package: offline);
2. checks what the schemas cannot: that the ports agree (container, probes,
   Services, NetworkPolicy, TENSORCAST_LISTEN, the cluster addresses), the
   cluster environment contract, the termination grace against
   --shutdown-grace and the preStop pause, the non-root security context
   against the images' uid, that every TENSORCAST_* variable names a server
   flag (the server ignores unknown ones silently), that each file a flag
   names lies in a mounted Secret, that every Secret is optional or
   documented, the selectors, and the GPU limits (the gpu targets have them,
   the cpu ones none);
3. proves both checks bite: broken copies of a rendered target (a typo'd
   field, a wrong type, a missing required field, ...) must fail
   kubernetes-validate with the expected message, and copies broken in ways
   only step 2 sees must fail step 2.

Usage: check_deploy.py --validator BIN --versions 1.30,1.31 --repo DIR
           NAME=RENDERED.yaml...
NAME is the target: `cpu` or `gpu`, with `+tls` when the TLS component is
in it. Exit status 0 when everything holds, 1 otherwise, 2 for bad usage.
"""

from __future__ import annotations

import argparse
import copy
import pathlib
import re
import subprocess
import sys
import tempfile
from collections.abc import Callable
from typing import Any

import yaml

Obj = dict[str, Any]

# The cluster contract (docs/cluster.md, "The environment"): exactly these.
HEADLESS = "tensorcast-headless"
CLUSTER = "dns:///tensorcast-headless.$(POD_NAMESPACE).svc.cluster.local:{port}"
ADVERTISE = "$(POD_NAME).tensorcast-headless.$(POD_NAMESPACE).svc.cluster.local:{port}"
# Flags the manifests set that the server does not define yet: the cluster
# feature's (issue 18). Until then the server ignores their variables.
CLUSTER_FLAGS = {"node-id", "cluster", "advertise"}


def _load(path: pathlib.Path) -> list[Obj]:
    with path.open(encoding="utf-8") as f:
        return [d for d in yaml.safe_load_all(f) if d]


def _one(objs: list[Obj], kind: str, name: str | None = None) -> Obj:
    found = [o for o in objs if o.get("kind") == kind
             and (name is None or o["metadata"]["name"] == name)]
    if len(found) != 1:
        raise LookupError(f"expected one {kind} {name or ''}, found {len(found)}")
    return found[0]


def _port(address: str) -> int:
    """The port of HOST:PORT (or [V6]:PORT)."""
    return int(address.rsplit(":", 1)[1])


_K8S_UNITS = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40,
              "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12}
_OUR_UNITS = {"KiB": 2**10, "MiB": 2**20, "GiB": 2**30, "TiB": 2**40, "": 1}


def _k8s_bytes(q: str) -> float:
    m = re.fullmatch(r"([0-9.]+)([A-Za-z]*)", str(q))
    if not m or (m.group(2) and m.group(2) not in _K8S_UNITS):
        raise ValueError(f"cannot read the quantity {q!r}")
    return float(m.group(1)) * _K8S_UNITS.get(m.group(2), 1)


def _our_bytes(q: str) -> float:
    m = re.fullmatch(r"([0-9.]+)\s*([KMGT]iB)?", q)
    if not m:
        raise ValueError(f"cannot read the size {q!r}")
    return float(m.group(1)) * _OUR_UNITS[m.group(2) or ""]


def server_flags(repo: pathlib.Path) -> set[str]:
    """The flags server/main.cc defines: flags.Kind("name", ...)."""
    text = (repo / "server/main.cc").read_text(encoding="utf-8")
    return set(re.findall(r'flags\.[A-Z][A-Za-z]*\(\s*"([a-z0-9-]+)"', text))


def image_uids(repo: pathlib.Path) -> set[int]:
    """The uid each image runs as (USER in docker/Dockerfile*)."""
    uids = set()
    for name in ("docker/Dockerfile", "docker/Dockerfile.cpu"):
        text = (repo / name).read_text(encoding="utf-8")
        m = re.search(r"^USER\s+(\d+)", text, re.M)
        if not m:
            raise LookupError(f"{name}: no numeric USER")
        uids.add(int(m.group(1)))
    return uids


def semantic_problems(name: str, objs: list[Obj], repo: pathlib.Path,
                      flags: set[str], docs: str) -> list[str]:
    """What the schemas cannot see; an empty list when all holds."""
    p: list[str] = []
    try:
        sts = _one(objs, "StatefulSet", "tensorcast")
        headless = _one(objs, "Service", HEADLESS)
        client = _one(objs, "Service", "tensorcast")
        pdb = _one(objs, "PodDisruptionBudget")
        netpol = _one(objs, "NetworkPolicy")
        config = _one(objs, "ConfigMap")
        sa = _one(objs, "ServiceAccount")
    except LookupError as missing:
        return [str(missing)]
    spec = sts["spec"]
    pod = spec["template"]["spec"]
    pod_labels = spec["template"]["metadata"].get("labels", {})
    containers = pod["containers"]
    if len(containers) != 1:
        return [f"expected one container, found {len(containers)}"]
    c = containers[0]
    data: dict[str, str] = config.get("data", {})

    # The ConfigMap's variables: each a server flag.
    for key in sorted(data):
        flag = key.removeprefix("TENSORCAST_").lower().replace("_", "-")
        if not key.startswith("TENSORCAST_") or flag not in flags | CLUSTER_FLAGS:
            p.append(f"ConfigMap: {key} names no server flag (server/main.cc); "
                     "the server would ignore it")
    refs = [e["configMapRef"]["name"] for e in c.get("envFrom", [])
            if "configMapRef" in e]
    if refs != [config["metadata"]["name"]]:
        p.append(f"envFrom {refs} is not the ConfigMap {config['metadata']['name']}")

    # Ports: the container's, the listen address, probes, Services, policy.
    ports = {cp["name"]: cp["containerPort"] for cp in c.get("ports", [])}
    grpc, metrics = ports.get("grpc"), ports.get("metrics")
    if grpc is None or metrics is None:
        return p + [f"container ports {ports}: need `grpc` and `metrics`"]
    if _port(data.get("TENSORCAST_LISTEN", ":50051")) != grpc:
        p.append(f"TENSORCAST_LISTEN {data.get('TENSORCAST_LISTEN')} is not on "
                 f"the grpc port {grpc}")
    if _port(data.get("TENSORCAST_METRICS_LISTEN", ":0")) != metrics:
        p.append(f"TENSORCAST_METRICS_LISTEN is not on the metrics port {metrics}")
    tls = bool(data.get("TENSORCAST_TLS_CERT"))
    for kind in ("startupProbe", "readinessProbe", "livenessProbe"):
        probe = c.get(kind)
        if probe is None:
            p.append(f"no {kind}")
        elif tls:
            # Kubernetes' grpc probes speak plaintext: under TLS they fail.
            cmd = probe.get("exec", {}).get("command", [])
            if "grpc" in probe or "health" not in cmd or not any(
                    a.startswith("--tls") for a in cmd):
                p.append(f"{kind}: with TLS on, must be `tensorcast --tls-ca=... "
                         "health` (a grpc probe speaks plaintext)")
            elif f"--server=localhost:{grpc}" not in cmd:
                p.append(f"{kind}: does not ask localhost:{grpc}")
        elif probe.get("grpc", {}).get("port") != grpc:
            p.append(f"{kind}: not a grpc probe on the serving port {grpc}")
    for svc in (headless, client):
        sname = svc["metadata"]["name"]
        if svc["spec"].get("selector") != {k: pod_labels.get(k)
                                           for k in svc["spec"].get("selector", {})}:
            p.append(f"Service {sname}: its selector does not match the pods")
        sp = {x["name"]: x for x in svc["spec"].get("ports", [])}
        if "grpc" not in sp or sp["grpc"]["port"] != grpc or sp["grpc"].get(
                "targetPort") not in ("grpc", grpc):
            p.append(f"Service {sname}: its grpc port is not the pods' {grpc}")
    if headless["spec"].get("clusterIP") != "None" or headless["spec"].get(
            "publishNotReadyAddresses") is not False:
        p.append(f"Service {HEADLESS}: must be headless (clusterIP: None) and "
                 "publish ready pods only")
    if spec.get("serviceName") != HEADLESS:
        p.append(f"StatefulSet: serviceName must be {HEADLESS} (the pods' DNS names)")
    for rule in netpol["spec"].get("ingress", []):
        for rp in rule.get("ports", []):
            if rp.get("port") not in ("grpc", "metrics", grpc, metrics):
                p.append(f"NetworkPolicy: port {rp.get('port')} is no server port")
    allowed = {rp.get("port") for rule in netpol["spec"].get("ingress", [])
               for rp in rule.get("ports", [])}
    if not {"grpc", "metrics"} <= allowed:
        p.append("NetworkPolicy: must admit the grpc and metrics ports")
    for what, sel in (("PodDisruptionBudget", pdb["spec"]["selector"]),
                      ("NetworkPolicy", netpol["spec"]["podSelector"]),
                      ("StatefulSet", spec["selector"])):
        if any(pod_labels.get(k) != v for k, v in sel.get("matchLabels", {}).items()):
            p.append(f"{what}: its selector does not match the pods")

    # The cluster contract.
    env = c.get("env", [])
    names = [e["name"] for e in env]
    field = {e["name"]: e.get("valueFrom", {}).get("fieldRef", {}).get("fieldPath")
             for e in env}
    value = {e["name"]: e.get("value") for e in env}
    for var, want in (("POD_NAME", "metadata.name"),
                      ("POD_NAMESPACE", "metadata.namespace"),
                      ("TENSORCAST_NODE_ID", "metadata.name")):
        if field.get(var) != want:
            p.append(f"env {var}: must come from the pod's {want}")
    for var, want in (("TENSORCAST_CLUSTER", CLUSTER.format(port=grpc)),
                      ("TENSORCAST_ADVERTISE", ADVERTISE.format(port=grpc))):
        if value.get(var) != want:
            p.append(f"env {var}: {value.get(var)!r}, the contract is {want!r}")
        elif var in names and any(
                n not in names[:names.index(var)] for n in ("POD_NAME", "POD_NAMESPACE")):
            p.append(f"env {var}: $(POD_...) must be defined above it")

    # Shutdown: the grace period covers the preStop pause and the drain.
    grace = float(data.get("TENSORCAST_SHUTDOWN_GRACE", "10"))
    cmd = c.get("lifecycle", {}).get("preStop", {}).get("exec", {}).get("command", [])
    if len(cmd) != 2 or not cmd[0].endswith("sleep"):
        p.append(f"preStop: expected [sleep, SECONDS], found {cmd}")
        pause = 0.0
    else:
        pause = float(cmd[1])
    term = pod.get("terminationGracePeriodSeconds", 30)
    if not term > pause + grace:
        p.append(f"terminationGracePeriodSeconds {term} must exceed the preStop "
                 f"pause {pause:g} + --shutdown-grace {grace:g}")

    # Non-root, read-only, no capabilities, no API token.
    psc, csc = pod.get("securityContext", {}), c.get("securityContext", {})
    uids = image_uids(repo)
    if psc.get("runAsNonRoot") is not True or psc.get("runAsUser") not in uids:
        p.append(f"pod securityContext: runAsNonRoot with the images' uid {uids}")
    if (csc.get("readOnlyRootFilesystem") is not True
            or csc.get("allowPrivilegeEscalation") is not False
            or csc.get("capabilities", {}).get("drop") != ["ALL"]
            or csc.get("capabilities", {}).get("add")):
        p.append("container securityContext: read-only root, no privilege "
                 "escalation, capabilities drop ALL and add none")
    if pod.get("automountServiceAccountToken") is not False or sa.get(
            "automountServiceAccountToken") is not False:
        p.append("the service account token must not be mounted")
    if pod.get("enableServiceLinks") is not False:
        p.append("enableServiceLinks must be false: the Service `tensorcast` "
                 "would set TENSORCAST_* variables in the pods")

    # Secrets: each optional or documented; each flag's file in a mount.
    volumes = {v["name"]: v for v in pod.get("volumes", [])}
    secrets: list[tuple[str, bool]] = []
    for v in volumes.values():
        if "secret" in v:
            secrets.append((v["secret"]["secretName"], v["secret"].get("optional", False)))
    for e in env:
        ref = e.get("valueFrom", {}).get("secretKeyRef")
        if ref:
            secrets.append((ref["name"], ref.get("optional", False)))
    for e in c.get("envFrom", []):
        if "secretRef" in e:
            secrets.append((e["secretRef"]["name"], e["secretRef"].get("optional", False)))
    for secret, optional in secrets:
        if not optional and not re.search(
                rf"kubectl create secret \S+ {re.escape(secret)}\b", docs):
            p.append(f"Secret {secret}: required, but docs/cluster.md does not say "
                     "how to create it (`kubectl create secret ... " + secret + "`)")
    mounts = {m["mountPath"].rstrip("/"): volumes.get(m["name"], {})
              for m in c.get("volumeMounts", [])}
    for key, path in sorted(data.items()):
        if not path.startswith("/etc/tensorcast/"):
            continue
        directory, _, file = path.rpartition("/")
        vol = mounts.get(directory)
        items = [i["path"] for i in (vol or {}).get("secret", {}).get("items", [])]
        if vol is None or "secret" not in vol or (items and file not in items):
            p.append(f"{key}={path}: no Secret mounted there holds {file}")

    # Resources: memory bounded; GPUs in the gpu targets only.
    res = c.get("resources", {})
    limits, requests = res.get("limits", {}), res.get("requests", {})
    if "memory" not in limits or "memory" not in requests or "cpu" not in requests:
        p.append("resources: memory limit and request, cpu request")
    elif data.get("TENSORCAST_MEMORY_LIMIT") and _our_bytes(
            data["TENSORCAST_MEMORY_LIMIT"]) >= _k8s_bytes(limits["memory"]):
        p.append(f"TENSORCAST_MEMORY_LIMIT {data['TENSORCAST_MEMORY_LIMIT']} must "
                 f"be below the container's memory limit {limits['memory']}")
    gpus = {k: v for part in (limits, requests) for k, v in part.items()
            if k.startswith("nvidia.com/")}
    devices = data.get("TENSORCAST_DEVICES", "auto")
    image = c.get("image", "")
    if name.startswith("gpu"):
        if str(limits.get("nvidia.com/gpu")) != "1":
            p.append("gpu: limits must hold nvidia.com/gpu: 1")
        if "cuda" not in devices:
            p.append(f"gpu: TENSORCAST_DEVICES={devices} serves no GPU")
        if not image.endswith(":cuda"):
            p.append(f"gpu: image {image} is not the CUDA image")
        if "nvidia.com/gpu.present" not in pod.get("nodeSelector", {}) or not any(
                t.get("key") == "nvidia.com/gpu" for t in pod.get("tolerations", [])):
            p.append("gpu: nodeSelector nvidia.com/gpu.present and a toleration "
                     "of nvidia.com/gpu")
    else:
        if gpus:
            p.append(f"cpu: asks for GPUs {gpus}")
        if devices != "cpu":
            p.append(f"cpu: TENSORCAST_DEVICES={devices}, not cpu")
        if not image.endswith(":cpu"):
            p.append(f"cpu: image {image} is not the CPU image")
    return p


def _validate(validator: str, version: str, path: pathlib.Path) -> tuple[bool, str]:
    run = subprocess.run([validator, "--strict", "--quiet", "-k", version, str(path)],
                         capture_output=True, text=True, check=False)
    return run.returncode == 0, (run.stdout + run.stderr).strip()


def _pod(objs: list[Obj]) -> Obj:
    pod: Obj = _one(objs, "StatefulSet")["spec"]["template"]["spec"]
    return pod


def _container(objs: list[Obj]) -> Obj:
    container: Obj = _pod(objs)["containers"][0]
    return container


# Broken copies the schemas must refuse: (what, change, expected message).
Mutation = Callable[[list[Obj]], object]
SCHEMA_BREAKS: list[tuple[str, Mutation, str]] = [
    ("a typo'd field",
     lambda o: _pod(o).__setitem__("terminationGracePeriodSecond", 30),
     "'terminationGracePeriodSecond' was unexpected"),
    ("a typo'd probe field",
     lambda o: _container(o)["readinessProbe"].__setitem__("gprc", {"port": 50051}),
     "'gprc' was unexpected"),
    ("a wrong type",
     lambda o: _one(o, "StatefulSet")["spec"].__setitem__("replicas", "three"),
     "'three' is not of type 'integer'"),
    ("a port by name where a number is needed",
     lambda o: _container(o)["livenessProbe"]["grpc"].__setitem__("port", "grpc"),
     "'grpc' is not of type 'integer'"),
    ("a missing required field",
     lambda o: _container(o).pop("name"),
     "'name' is a required property"),
    ("a Service port without its port",
     lambda o: _one(o, "Service", HEADLESS)["spec"]["ports"][0].pop("port"),
     "'port' is a required property"),
]

# Broken copies only the semantic check sees (each schema-valid), of the
# cpu target unless the name says gpu.
SEMANTIC_BREAKS: list[tuple[str, Mutation, str]] = [
    ("gpu: no GPU in the gpu target",
     lambda o: _container(o)["resources"]["limits"].pop("nvidia.com/gpu"),
     "gpu: limits must hold nvidia.com/gpu: 1"),
    ("a probe on another port",
     lambda o: _container(o)["readinessProbe"].__setitem__("grpc", {"port": 50052}),
     "readinessProbe: not a grpc probe on the serving port"),
    ("a grace period shorter than the drain",
     lambda o: _pod(o).__setitem__("terminationGracePeriodSeconds", 20),
     "terminationGracePeriodSeconds 20 must exceed"),
    ("a GPU in the cpu target",
     lambda o: _container(o)["resources"]["limits"].__setitem__("nvidia.com/gpu", 1),
     "cpu: asks for GPUs"),
    ("root",
     lambda o: _pod(o)["securityContext"].__setitem__("runAsUser", 0),
     "runAsNonRoot with the images' uid"),
    ("a misspelt flag variable",
     lambda o: _one(o, "ConfigMap")["data"].__setitem__("TENSORCAST_SHUTDOWN_GRAC", "5"),
     "TENSORCAST_SHUTDOWN_GRAC names no server flag"),
    ("an undocumented required Secret",
     lambda o: _pod(o)["volumes"].append(
         {"name": "extra", "secret": {"secretName": "tensorcast-undocumented"}}),
     "Secret tensorcast-undocumented: required"),
    ("a tokens file outside its Secret's items",
     lambda o: _one(o, "ConfigMap")["data"].__setitem__(
         "TENSORCAST_AUTH_TOKENS", "/etc/tensorcast/tokens/tokens.txt"),
     "no Secret mounted there holds tokens.txt"),
    ("another cluster address",
     lambda o: [e.__setitem__("value", "tensorcast:50051") for e in _container(o)["env"]
                if e["name"] == "TENSORCAST_CLUSTER"],
     "env TENSORCAST_CLUSTER"),
]


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--validator", required=True, help="kubernetes-validate")
    ap.add_argument("--versions", required=True, help="comma-separated, e.g. 1.30,1.31")
    ap.add_argument("--repo", type=pathlib.Path, default=pathlib.Path("."))
    ap.add_argument("targets", nargs="+", metavar="NAME=FILE")
    args = ap.parse_args(argv)
    versions = [v if v.count(".") == 2 else f"{v}.0" for v in args.versions.split(",")]
    targets: dict[str, list[Obj]] = {}
    paths: dict[str, pathlib.Path] = {}
    for t in args.targets:
        name, _, file = t.partition("=")
        if not file or name.split("+")[0] not in ("cpu", "gpu"):
            ap.error(f"bad target {t!r}: NAME=FILE, NAME cpu or gpu[+tls]")
        paths[name] = pathlib.Path(file)
        targets[name] = _load(paths[name])
    flags = server_flags(args.repo)
    pending = sorted(CLUSTER_FLAGS - flags)
    docs = (args.repo / "docs/cluster.md").read_text(encoding="utf-8")
    failed: list[str] = []

    print(f"== kubernetes-validate --strict, Kubernetes {', '.join(versions)}")
    for name, path in paths.items():
        kinds = ", ".join(f"{o['kind']}/{o['metadata']['name']}" for o in targets[name])
        for version in versions:
            ok, out = _validate(args.validator, version, path)
            if not ok:
                failed.append(f"{name} against {version}")
                print(f"{name} against {version}: INVALID\n{out}")
        print(f"{name}: {len(targets[name])} objects ({kinds}): "
              f"{'valid' if not any(f.startswith(name + ' ') for f in failed) else 'INVALID'}")

    print("== what the schemas cannot see")
    for name, objs in targets.items():
        problems = semantic_problems(name, objs, args.repo, flags, docs)
        for problem in problems:
            print(f"{name}: {problem}")
        if problems:
            failed.append(f"{name}: checks")
        else:
            print(f"{name}: ports, cluster env, shutdown, security, secrets, "
                  "resources: ok")
    if pending:
        print(f"note: the manifests set --{', --'.join(pending)} "
              "(TENSORCAST_NODE_ID, ...), which server/main.cc does not define "
              "yet (the cluster feature); today's server ignores them")

    print("== the checks bite: broken copies must fail")
    if not {"cpu", "gpu"} <= set(targets):
        ap.error("the `cpu` and `gpu` targets are needed for the broken copies")
    with tempfile.TemporaryDirectory() as tmp:
        for i, (what, mutate, expect) in enumerate(SCHEMA_BREAKS):
            objs = copy.deepcopy(targets["cpu"])
            mutate(objs)
            broken = pathlib.Path(tmp) / f"broken-{i}.yaml"
            broken.write_text(yaml.safe_dump_all(objs), encoding="utf-8")
            bites = True
            for version in (versions[0], versions[-1]):
                ok, out = _validate(args.validator, version, broken)
                if ok or expect not in out:
                    bites = False
                    failed.append(f"broken copy ({what}) against {version}")
                    print(f"{what}, {version}: expected a failure with {expect!r}, "
                          f"got {'a pass' if ok else out}")
            if bites:
                print(f"{what}: refused ({expect})")
    for what, mutate, expect in SEMANTIC_BREAKS:
        base = "gpu" if what.startswith("gpu:") else "cpu"
        objs = copy.deepcopy(targets[base])
        mutate(objs)
        problems = semantic_problems(base, objs, args.repo, flags, docs)
        if not any(expect in q for q in problems):
            failed.append(f"broken copy ({what})")
            print(f"{what}: expected a problem with {expect!r}, got {problems}")
        else:
            print(f"{what}: refused ({expect})")

    if failed:
        print(f"check_deploy: FAILED: {'; '.join(failed)}", file=sys.stderr)
        return 1
    print(f"check_deploy: {len(targets)} targets valid for Kubernetes "
          f"{', '.join(v.rsplit('.', 1)[0] for v in versions)}; "
          f"{len(SCHEMA_BREAKS)} + {len(SEMANTIC_BREAKS)} broken copies refused")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
