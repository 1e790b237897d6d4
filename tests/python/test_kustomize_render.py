"""scripts/kustomize_render.py, the offline kustomize make lint-deploy falls
back on where no kubectl with kustomize v5+ is installed.

Where one is on PATH (or $KUBECTL), every target of deploy/kubernetes and
the fixtures here must render to the very objects `kubectl kustomize`
prints (names with their hashes included); where none is, those
comparisons are skipped, saying so, and the renderer's own output of the
targets is still validated (kubernetes-validate --strict and
scripts/check_deploy.py's checks). The unit cases need no kubectl.
"""

from __future__ import annotations

import os
import pathlib
import re
import shutil
import subprocess
import sys
import textwrap

import pytest
import yaml

REPO = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "scripts"))

import check_deploy  # noqa: E402
import kustomize_render as kr  # noqa: E402

DEPLOY = REPO / "deploy" / "kubernetes"
TARGETS = ["cpu", "gpu", "cpu+tls", "gpu+tls"]


def _kubectl() -> str | None:
    """A kubectl whose kustomize is v5 or later, else None."""
    kubectl = shutil.which(os.environ.get("KUBECTL", "kubectl"))
    if kubectl is None:
        return None
    run = subprocess.run([kubectl, "version", "--client"], capture_output=True,
                         text=True, check=False)
    m = re.search(r"^Kustomize Version: v(\d+)\.", run.stdout, re.M)
    return kubectl if m and int(m.group(1)) >= 5 else None


KUBECTL = _kubectl()
NO_KUBECTL = ("no kubectl with kustomize v5+ on PATH (or $KUBECTL): the comparison "
              "with kubectl kustomize is skipped")


def _kubectl_render(directory: pathlib.Path) -> list[dict]:
    assert KUBECTL is not None
    run = subprocess.run([KUBECTL, "kustomize", str(directory)], capture_output=True,
                         text=True, check=False)
    assert run.returncode == 0, run.stderr
    return [d for d in yaml.safe_load_all(run.stdout) if d]


def _same_as_kubectl(directory: pathlib.Path) -> None:
    if KUBECTL is None:
        pytest.skip(NO_KUBECTL)
    diff = kr.compare(kr.render(directory), _kubectl_render(directory),
                      "kustomize_render.py", "kubectl kustomize")
    assert diff == "", diff


def _target(tmp_path: pathlib.Path, name: str) -> pathlib.Path:
    """The directory to render for a target, as scripts/check_deploy.sh
    makes it: an overlay, or an overlay with components/tls (relative
    paths: kustomize takes no absolute ones)."""
    overlay = DEPLOY / "overlays" / name.split("+")[0]
    if "+tls" not in name:
        return overlay
    d = tmp_path / name.replace("+", "-")
    d.mkdir()
    (d / "kustomization.yaml").write_text(textwrap.dedent(f"""\
        apiVersion: kustomize.config.k8s.io/v1beta1
        kind: Kustomization
        resources:
          - {os.path.relpath(overlay, d)}
        components:
          - {os.path.relpath(DEPLOY / "components" / "tls", d)}
        """), encoding="utf-8")
    return d


@pytest.mark.parametrize("name", TARGETS)
def test_targets_render_as_kubectl_kustomize(tmp_path: pathlib.Path, name: str) -> None:
    _same_as_kubectl(_target(tmp_path, name))


@pytest.mark.parametrize("name", TARGETS)
def test_rendered_targets_validate(tmp_path: pathlib.Path, name: str) -> None:
    objs = kr.render(_target(tmp_path, name))
    # kustomize's legacy order, as kubectl kustomize printed these kinds.
    legacy = ["ServiceAccount", "ConfigMap", "Service", "StatefulSet",
              "PodDisruptionBudget", "NetworkPolicy"]
    kinds = [o["kind"] for o in objs if o["kind"] in legacy]
    assert kinds == sorted(kinds, key=legacy.index)
    config = check_deploy._one(objs, "ConfigMap")
    assert config["metadata"]["name"] == "tensorcast-config-" + kr.config_map_hash(config)
    flags = check_deploy.server_flags(REPO)
    docs = (REPO / "docs" / "cluster.md").read_text(encoding="utf-8")
    assert check_deploy.semantic_problems(name, objs, REPO, flags, docs) == []
    validator = pathlib.Path(sys.executable).parent / "kubernetes-validate"
    if not validator.exists():
        pytest.skip(f"{validator} not installed (make setup): schemas not checked")
    rendered = tmp_path / "rendered.yaml"
    rendered.write_text(kr.dump(objs), encoding="utf-8")
    for version in ("1.30.0", "1.37.0"):
        ok, out = check_deploy._validate(str(validator), version, rendered)
        assert ok, out


def test_config_map_hash_is_kustomizes() -> None:
    # The suffixes kubectl 1.32 (kustomize v5.5.0) gave these data.
    cpu = {"TENSORCAST_ALLOW_INSECURE_REMOTE": "false",
           "TENSORCAST_AUTH_TOKENS": "/etc/tensorcast/tokens/tokens",
           "TENSORCAST_DEVICES": "cpu", "TENSORCAST_LISTEN": "0.0.0.0:50051",
           "TENSORCAST_LOG_FORMAT": "json", "TENSORCAST_MEMORY_LIMIT": "6GiB",
           "TENSORCAST_METRICS_LISTEN": "0.0.0.0:9090", "TENSORCAST_SHUTDOWN_GRACE": "20"}
    assert kr.config_map_hash({"data": cpu}) == "g9gtf425t9"
    # Go escapes <, > and & in its JSON.
    odd = {"D": "x", "EMPTY": "", "EQ": "a=b", "H": "<a&b>", "LEAD": "2", "NEW": "comp",
           "Q": "quoted", "TRAIL": "x  ", "X": "a=b"}
    assert kr.config_map_hash({"data": odd}) == "76ctdc7bdg"


def _write(root: pathlib.Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text), encoding="utf-8")


MERGE = {
    "base/kustomization.yaml": """\
        resources: [deploy.yaml]
        configMapGenerator:
          - name: cfg
            envs: [cfg.env]
            literals: [FROM_BASE=1, SHARED=base]
        labels:
          - pairs: {part-of: demo}
            includeSelectors: false
        """,
    "base/cfg.env": "# a comment\n  A=1\nB=x=y  \n\nC=\n",
    "base/deploy.yaml": """\
        apiVersion: apps/v1
        kind: Deployment
        metadata: {name: d}
        spec:
          selector: {matchLabels: {app: d}}
          template:
            metadata: {labels: {app: d}}
            spec:
              containers:
                - name: c
                  image: img
                  envFrom: [{configMapRef: {name: cfg}}]
                  env:
                    - name: K
                      valueFrom: {configMapKeyRef: {name: cfg, key: A}}
              volumes:
                - name: v
                  configMap: {name: cfg}
        """,
    "tls/kustomization.yaml": """\
        apiVersion: kustomize.config.k8s.io/v1alpha1
        kind: Component
        configMapGenerator:
          - name: cfg
            behavior: merge
            literals: [SHARED=component, FROM_COMPONENT="quoted"]
        """,
    "overlay/kustomization.yaml": """\
        resources: [../base]
        components: [../tls]
        configMapGenerator:
          - name: cfg
            behavior: merge
            literals: [FROM_OVERLAY=3, SHARED=overlay]
        """,
}


def test_merge_behavior_across_base_component_overlay(tmp_path: pathlib.Path) -> None:
    _write(tmp_path, MERGE)
    objs = kr.render(tmp_path / "overlay")
    assert [o["kind"] for o in objs] == ["ConfigMap", "Deployment"]
    cm, deploy = objs
    # The component runs after the overlay's generators: its literal wins.
    assert cm["data"] == {"A": "1", "B": "x=y  ", "C": "", "FROM_BASE": "1",
                          "SHARED": "component", "FROM_COMPONENT": "quoted",
                          "FROM_OVERLAY": "3"}
    assert cm["metadata"] == {"name": "cfg-" + kr.config_map_hash(cm),
                              "labels": {"part-of": "demo"}}
    pod = deploy["spec"]["template"]["spec"]
    c = pod["containers"][0]
    name = cm["metadata"]["name"]
    assert c["envFrom"][0]["configMapRef"]["name"] == name
    assert c["env"][0]["valueFrom"]["configMapKeyRef"]["name"] == name
    assert pod["volumes"][0]["configMap"]["name"] == name
    # includeSelectors false: the selector and the template keep theirs.
    assert deploy["spec"]["selector"] == {"matchLabels": {"app": "d"}}
    assert deploy["spec"]["template"]["metadata"]["labels"] == {"app": "d"}


ORDER = {
    "base/kustomization.yaml": """\
        resources: [d.yaml]
        configMapGenerator: [{name: cfg, literals: [S=base]}]
        """,
    "base/d.yaml": """\
        apiVersion: apps/v1
        kind: Deployment
        metadata: {name: d}
        spec:
          replicas: 1
          template:
            metadata: {annotations: {a: base}}
            spec: {containers: [{name: c, image: img}]}
        """,
    "comp/kustomization.yaml": """\
        apiVersion: kustomize.config.k8s.io/v1alpha1
        kind: Component
        resources: [cm.yaml]
        configMapGenerator:
          - {name: cfg, behavior: merge, literals: [S=comp, C=comp]}
          - {name: compgen, literals: [X=1]}
        patches:
          - patch: |-
              apiVersion: apps/v1
              kind: Deployment
              metadata: {name: d}
              spec: {replicas: 2, template: {metadata: {annotations: {a: comp, b: comp}}}}
          - target: {kind: ConfigMap}
            patch: |-
              - {op: add, path: /metadata/annotations, value: {by: comp}}
        images: [{name: img, newTag: comp}]
        labels: [{pairs: {comp: "1"}}]
        """,
    "comp/cm.yaml": """\
        apiVersion: v1
        kind: ConfigMap
        metadata: {name: plain}
        data: {k: v}
        """,
    "over/kustomization.yaml": """\
        resources: [../base]
        components: [../comp]
        configMapGenerator:
          - {name: cfg, behavior: merge, literals: [S=over, O=over]}
          - {name: overgen, literals: [Y=1]}
        patches:
          - patch: |-
              apiVersion: apps/v1
              kind: Deployment
              metadata: {name: d}
              spec: {replicas: 3, template: {metadata: {annotations: {a: over}}}}
        images: [{name: img, newTag: over}]
        labels: [{pairs: {over: "1"}}]
        """,
}


def test_components_between_generators_and_transformers(tmp_path: pathlib.Path) -> None:
    _write(tmp_path, ORDER)
    objs = {o["metadata"]["name"].rsplit("-", 1)[0]: o for o in kr.render(tmp_path / "over")}
    assert sorted(objs) == ["cfg", "compgen", "d", "overgen", "plain"]
    # The component's generator merges after the overlay's; its transformers
    # see the overlay's generated ConfigMaps.
    assert objs["cfg"]["data"] == {"S": "comp", "O": "over", "C": "comp"}
    for name in ("cfg", "compgen", "overgen", "plain"):
        assert objs[name]["metadata"]["annotations"] == {"by": "comp"}, name
        assert objs[name]["metadata"]["labels"] == {"comp": "1", "over": "1"}, name
    # The overlay's transformers run last: its patch and image win.
    d = objs["d"]
    assert d["spec"]["replicas"] == 3
    assert d["spec"]["template"]["metadata"]["annotations"] == {"a": "over", "b": "comp"}
    assert d["spec"]["template"]["spec"]["containers"][0]["image"] == "img:over"


REFS = {
    "kustomization.yaml": """\
        resources: [objs.yaml]
        configMapGenerator: [{name: cfg, literals: [A=1]}]
        """,
    "objs.yaml": """\
        apiVersion: v1
        kind: Pod
        metadata: {name: p}
        spec:
          containers: [{name: a, image: img, envFrom: [{configMapRef: {name: cfg}}]}]
          initContainers:
            - name: i
              image: img
              env: [{name: X, valueFrom: {configMapKeyRef: {name: cfg, key: A}}}]
          volumes:
            - {name: v, projected: {sources: [{configMap: {name: cfg}}]}}
            - {name: w, configMap: {name: cfg}}
        ---
        apiVersion: batch/v1
        kind: CronJob
        metadata: {name: cj}
        spec:
          schedule: "* * * * *"
          jobTemplate:
            spec:
              template:
                spec:
                  containers: [{name: a, image: img, envFrom: [{configMapRef: {name: cfg}}]}]
                  volumes: [{name: w, configMap: {name: cfg}}]
        """,
}


def test_references_to_a_generated_config_map(tmp_path: pathlib.Path) -> None:
    _write(tmp_path, REFS)
    cm, cronjob, pod = kr.render(tmp_path)
    name = cm["metadata"]["name"]
    assert name == "cfg-" + kr.config_map_hash(cm)
    text = kr.dump([cronjob, pod])
    assert text.count(f"name: {name}\n") == 6 and "name: cfg\n" not in text


PATCHES = {
    "kustomization.yaml": """\
        resources: [objs.yaml]
        images:
          - {name: registry.local:5000/img, newTag: "2"}
          - {name: plain, newName: example.org/plain}
        patches:
          - path: smp.yaml
          - target: {kind: Service, name: "b-.*"}
            patch: |-
              - op: add
                path: /spec/ports/-
                value: {name: added, port: 3}
              - op: remove
                path: /spec/ports/0
              - op: replace
                path: /metadata/labels/x~1y
                value: replaced
        """,
    "smp.yaml": """\
        apiVersion: apps/v1
        kind: StatefulSet
        metadata: {name: s}
        spec:
          template:
            spec:
              tolerations: [{key: new, operator: Exists}]
              containers:
                - name: new
                  image: plain
                - name: c
                  env: [{name: N, value: n}, {name: E2, value: "22"}]
                  args: [replaced]
              volumes:
                - name: home
                  emptyDir: {medium: Memory}
                - name: added
                  emptyDir: {}
        """,
    "objs.yaml": """\
        apiVersion: apps/v1
        kind: StatefulSet
        metadata: {name: s}
        spec:
          selector: {matchLabels: {a: b}}
          template:
            metadata: {labels: {a: b}}
            spec:
              tolerations: [{key: old, operator: Exists}]
              containers:
                - name: c
                  image: registry.local:5000/img:1
                  args: [a, b]
                  env: [{name: E1, value: "1"}, {name: E2, value: "2"}]
              volumes:
                - {name: tokens, emptyDir: {}}
                - {name: home, emptyDir: {}}
        ---
        apiVersion: v1
        kind: Service
        metadata: {name: b-svc, labels: {x/y: "1"}}
        spec:
          ports: [{name: one, port: 1}, {name: two, port: 2}]
        ---
        apiVersion: v1
        kind: Service
        metadata: {name: a-svc}
        spec:
          ports: [{name: one, port: 1}]
        ---
        apiVersion: networking.k8s.io/v1
        kind: NetworkPolicy
        metadata: {name: np}
        spec: {podSelector: {}}
        ---
        apiVersion: v1
        kind: Namespace
        metadata: {name: ns}
        """,
}


def test_patches_images_and_order(tmp_path: pathlib.Path) -> None:
    _write(tmp_path, PATCHES)
    objs = kr.render(tmp_path)
    assert [(o["kind"], o["metadata"]["name"]) for o in objs] == [
        ("Namespace", "ns"), ("Service", "a-svc"), ("Service", "b-svc"),
        ("StatefulSet", "s"), ("NetworkPolicy", "np")]
    svc = objs[2]
    assert svc["spec"]["ports"] == [{"name": "two", "port": 2}, {"name": "added", "port": 3}]
    assert svc["metadata"]["labels"] == {"x/y": "replaced"}
    pod = objs[3]["spec"]["template"]["spec"]
    # Merged by key, the patch's items first; lists without a key replaced.
    assert [c["name"] for c in pod["containers"]] == ["new", "c"]
    new, c = pod["containers"]
    assert new["image"] == "example.org/plain"
    assert c["image"] == "registry.local:5000/img:2"
    assert c["env"] == [{"name": "N", "value": "n"}, {"name": "E2", "value": "22"},
                        {"name": "E1", "value": "1"}]
    assert c["args"] == ["replaced"]
    assert pod["tolerations"] == [{"key": "new", "operator": "Exists"}]
    assert pod["volumes"] == [{"name": "home", "emptyDir": {"medium": "Memory"}},
                              {"name": "added", "emptyDir": {}},
                              {"name": "tokens", "emptyDir": {}}]


# Each: files over a working one-ConfigMap kustomization, and the field the
# refusal must name.
GOOD = {
    "kustomization.yaml": "resources: [deploy.yaml]\n"
                          "configMapGenerator: [{name: cfg, literals: [A=1]}]\n",
    "deploy.yaml": MERGE["base/deploy.yaml"],
}
REFUSED = [
    ("an unknown top-level field",
     {"kustomization.yaml": "namePrefix: x-\nresources: [deploy.yaml]\n"}, "namePrefix"),
    ("commonLabels", {"kustomization.yaml": "commonLabels: {a: b}\n"}, "commonLabels"),
    ("a generator's files",
     {"kustomization.yaml": "configMapGenerator: [{name: c, files: [deploy.yaml]}]\n"},
     "files"),
    ("labels into selectors",
     {"kustomization.yaml": "resources: [deploy.yaml]\n"
                            "labels: [{pairs: {a: b}, includeSelectors: true}]\n"},
     "includeSelectors"),
    ("a patch target by label",
     {"kustomization.yaml": "resources: [deploy.yaml]\npatches:\n"
                            "  - {path: p.yaml, target: {labelSelector: a=b}}\n",
      "p.yaml": "- {op: remove, path: /spec}\n"}, "labelSelector"),
    ("a JSON 6902 move",
     {"kustomization.yaml": "resources: [deploy.yaml]\npatches:\n"
                            "  - {path: p.yaml, target: {kind: Deployment}}\n",
      "p.yaml": "- {op: move, from: /spec, path: /x}\n"}, "op 'move'"),
    ("a strategic merge directive",
     {"kustomization.yaml": "resources: [deploy.yaml]\npatches: [{path: p.yaml}]\n",
      "p.yaml": "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: d}\n"
                "spec: {template: {spec: {containers: [{name: c, $patch: delete}]}}}\n"},
     "$patch"),
    ("a list whose merge strategy is unknown",
     {"kustomization.yaml": "resources: [deploy.yaml]\npatches: [{path: p.yaml}]\n",
      "p.yaml": "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: d}\n"
                "spec: {template: {spec: {schedulingGates: [{name: g}]}}}\n"},
     "schedulingGates"),
    ("a patch that matches nothing",
     {"kustomization.yaml": "resources: [deploy.yaml]\npatches: [{path: p.yaml}]\n",
      "p.yaml": "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: other}\n"},
     "matches no object"),
    ("an env line without =",
     {"kustomization.yaml": "configMapGenerator: [{name: c, envs: [e.env]}]\n",
      "e.env": "HOME\n"}, "HOME"),
    ("merge into nothing",
     {"kustomization.yaml": "configMapGenerator: [{name: c, behavior: merge}]\n"},
     "behavior merge"),
    ("a plain scalar YAML 1.1 reads otherwise",
     {"deploy.yaml": MERGE["base/deploy.yaml"].replace("name: d}", "name: d, labels: {x: on}}")},
     "'on' is a YAML 1.1 bool"),
    ("a namespace",
     {"kustomization.yaml": "resources: [ns.yaml]\n",
      "ns.yaml": "apiVersion: v1\nkind: Secret\nmetadata: {name: s, namespace: n}\n"},
     "metadata.namespace"),
    ("a reference the renderer does not rewrite",
     {"custom.yaml": "apiVersion: example.org/v1\nkind: Thing\nmetadata: {name: t}\n"
                     "spec: {configMapName: cfg}\n",
      "kustomization.yaml": GOOD["kustomization.yaml"].replace(
          "[deploy.yaml]", "[deploy.yaml, custom.yaml]")},
     "spec.configMapName"),
]


@pytest.mark.parametrize("what,files,field", REFUSED, ids=[r[0] for r in REFUSED])
def test_what_it_does_not_implement_is_refused(tmp_path: pathlib.Path, what: str,
                                               files: dict[str, str], field: str) -> None:
    _write(tmp_path, {**GOOD, **files})
    with pytest.raises(kr.RenderError, match=re.escape(field)):
        kr.render(tmp_path)


def test_good_fixture_renders(tmp_path: pathlib.Path) -> None:
    # The base of the refusals above renders: each refusal is its change's.
    _write(tmp_path, GOOD)
    assert [o["kind"] for o in kr.render(tmp_path)] == ["ConfigMap", "Deployment"]


def test_compare_mode_prints_a_diff(tmp_path: pathlib.Path,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    _write(tmp_path, GOOD)
    objs = kr.render(tmp_path)
    (tmp_path / "same.yaml").write_text(kr.dump(objs), encoding="utf-8")
    assert kr.main([str(tmp_path), "--compare", str(tmp_path / "same.yaml")]) == 0
    objs[1]["spec"]["template"]["spec"]["containers"][0]["image"] = "other"
    (tmp_path / "other.yaml").write_text(kr.dump(objs), encoding="utf-8")
    assert kr.main([str(tmp_path), "--compare", str(tmp_path / "other.yaml")]) == 1
    err = capsys.readouterr().err
    assert "renders otherwise" in err and "-        image: other" in err


# The fixtures above, each with the directory to render.
FIXTURES = {"merge": (MERGE, "overlay"), "order": (ORDER, "over"), "refs": (REFS, "."),
            "patches": (PATCHES, "."), "good": (GOOD, ".")}


@pytest.mark.parametrize("fixture", sorted(FIXTURES))
def test_fixtures_render_as_kubectl_kustomize(tmp_path: pathlib.Path, fixture: str) -> None:
    files, directory = FIXTURES[fixture]
    _write(tmp_path, files)
    _same_as_kubectl(tmp_path / directory)
