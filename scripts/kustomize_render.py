#!/usr/bin/env python3
"""Renders a kustomization offline, as `kubectl kustomize DIR` prints it.

make lint-deploy (scripts/check_deploy.sh) renders deploy/kubernetes with
`kubectl kustomize` where a kubectl with kustomize v5 or later is installed,
and compares the result with this renderer's; where none is, it renders with
this one. It implements exactly the subset of kustomize that the manifests
under deploy/kubernetes use, and refuses, naming the field, anything else,
so that a manifest change it does not understand fails instead of rendering
to something kustomize would not:

- a Kustomization's (or Component's) `resources` (YAML files, and
  directories holding a kustomization), `components` (kind: Component),
  `labels` (pairs, with includeSelectors and includeTemplates false: the
  objects' metadata.labels only), `images` (name, newName, newTag),
  `configMapGenerator` (name, envs, literals, behavior create, merge or
  replace) and `patches` (path or patch; with a target of group, version,
  kind and name; strategic merge or JSON 6902);
- kustomize's order: a kustomization's resources, then its generators,
  its components (each in the same order, over everything accumulated so
  far), and its transformers (patches, labels, images); at
  the end the ConfigMaps' content-hash name suffixes, the references to
  them rewritten (envFrom, env valueFrom, volumes, projected volumes), and
  the objects in kustomize's legacy order (Namespace, ..., ServiceAccount,
  ConfigMap, Service, ..., StatefulSet, ...);
- strategic merge with Kubernetes' merge keys for the lists it knows
  (containers and volumes by name, volumeMounts by mountPath, env by name,
  ports by containerPort, ...; the patch's items first, then the others, as
  kustomize orders them) and replacement for the lists Kubernetes declares
  atomic; a patched list it knows neither way is refused.

Usage: kustomize_render.py DIR                 the rendered YAML on stdout
       kustomize_render.py DIR --compare FILE  exit 1, with a diff, unless
                                               FILE (kubectl kustomize's
                                               output) holds the same objects
Exit status 1 with the reason on stderr for what it does not implement.
"""

from __future__ import annotations

import argparse
import copy
import difflib
import hashlib
import json
import os
import pathlib
import re
import sys
from dataclasses import dataclass
from typing import Any

import yaml

Obj = dict[str, Any]


class RenderError(Exception):
    """What the renderer cannot (or kustomize would not) render."""


# --- YAML in and out -------------------------------------------------------


class _Loader(yaml.SafeLoader):
    """PyYAML's safe loader, but duplicate keys are errors (as in kustomize)
    and dates stay strings (as kustomize keeps them)."""


def _no_duplicates(loader: _Loader, node: yaml.MappingNode, deep: bool = False) -> Obj:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r}", key_node.start_mark)
        seen.add(key)
    return dict(loader.construct_mapping(node, deep=deep))


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _no_duplicates)


def _yaml12(tag: str, base: Any, strict: str) -> Any:
    """A constructor that refuses the plain scalars YAML 1.1 (PyYAML) reads
    otherwise than YAML 1.2 (kustomize): `yes`, `off`, `1_000`, `1:30`, ..."""
    def construct(loader: _Loader, node: yaml.ScalarNode) -> Any:
        if node.style is None and not re.fullmatch(strict, node.value):
            raise yaml.constructor.ConstructorError(
                None, None, f"the plain {node.value!r} is a YAML 1.1 {tag} (PyYAML) but "
                "not a YAML 1.2 one (kustomize): quote it, or write it as 1.2 does",
                node.start_mark)
        return base(loader, node)
    return construct


for _tag, _strict in (("bool", r"true|True|TRUE|false|False|FALSE"),
                      ("int", r"[-+]?(0|[1-9][0-9]*|0[0-7]+|0x[0-9a-fA-F]+)"),
                      ("float", r"[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?"
                                r"|[-+]?\.(inf|Inf|INF)|\.(nan|NaN|NAN)")):
    _Loader.add_constructor(
        f"tag:yaml.org,2002:{_tag}",
        _yaml12(_tag, yaml.SafeLoader.yaml_constructors[f"tag:yaml.org,2002:{_tag}"],
                _strict))
_Loader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()}


def load_all(text: str, where: str) -> list[Any]:
    try:
        return [d for d in yaml.load_all(text, Loader=_Loader) if d is not None]
    except yaml.YAMLError as e:
        raise RenderError(f"{where}: not YAML: {e}") from e


class _Dumper(yaml.SafeDumper):
    """kubectl kustomize's style: sorted keys, block style, list items at
    their key's indentation, double quotes for the strings that would read
    as another type, literal blocks for multi-line strings, no wrapping."""


def _str(dumper: _Dumper, value: str) -> yaml.ScalarNode:
    style: str | None = None
    if "\n" in value:
        style = "|"
    elif value in ("", "y", "Y", "n", "N") or dumper.resolve(
            yaml.ScalarNode, value, (True, False)) != "tag:yaml.org,2002:str":
        style = '"'
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str)


def dump(objs: list[Obj]) -> str:
    return "---\n".join(
        yaml.dump(o, Dumper=_Dumper, sort_keys=True, default_flow_style=False,
                  allow_unicode=True, width=1 << 30) for o in objs)


# --- the resources ---------------------------------------------------------


@dataclass
class Res:
    obj: Obj
    origin: str
    # A generated ConfigMap: its name gets the content hash at the end.
    hashed: bool = False

    @property
    def kind(self) -> str:
        return str(self.obj["kind"])

    @property
    def name(self) -> str:
        return str(self.obj["metadata"]["name"])

    @property
    def group_version(self) -> tuple[str, str]:
        api = str(self.obj["apiVersion"])
        group, _, version = api.rpartition("/")
        return group, version


def _check_object(obj: Any, where: str) -> Obj:
    if not isinstance(obj, dict):
        raise RenderError(f"{where}: a document that is not an object")
    for field in ("apiVersion", "kind"):
        if not isinstance(obj.get(field), str) or not obj[field]:
            raise RenderError(f"{where}: an object without {field}")
    if obj["kind"].endswith("List"):
        raise RenderError(f"{where}: kind {obj['kind']}: lists are not implemented")
    meta = obj.get("metadata")
    if not isinstance(meta, dict) or not isinstance(meta.get("name"), str):
        raise RenderError(f"{where}: {obj['kind']} without metadata.name")
    for field in ("namespace", "generateName"):
        if field in meta:
            raise RenderError(f"{where}: {obj['kind']}/{meta['name']}: metadata.{field} "
                              "is not implemented by scripts/kustomize_render.py")
    return obj


def _add(ra: list[Res], new: Res) -> None:
    for r in ra:
        if (r.kind, r.group_version, r.name) == (new.kind, new.group_version, new.name):
            raise RenderError(f"{new.origin}: {new.kind}/{new.name} is already there "
                              f"(from {r.origin}); kustomize refuses duplicates")
    ra.append(new)


# --- kustomizations --------------------------------------------------------

_NAMES = ("kustomization.yaml", "kustomization.yml", "Kustomization")
_API = {"Kustomization": "kustomize.config.k8s.io/v1beta1",
        "Component": "kustomize.config.k8s.io/v1alpha1"}
_FIELDS = {"apiVersion", "kind", "resources", "components", "labels", "images",
           "configMapGenerator", "patches"}


def _unknown(where: str, what: str, got: Any, known: set[str]) -> None:
    if not isinstance(got, dict):
        raise RenderError(f"{where}: {what} must be a mapping")
    for field in sorted(set(got) - known):
        raise RenderError(f"{where}: `{what}{field}` is not implemented by "
                          "scripts/kustomize_render.py (kustomize's subset that "
                          "deploy/kubernetes uses)")


def _strings(where: str, what: str, value: Any) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise RenderError(f"{where}: {what} must be a list of strings")
    return value


def _kustomization(directory: pathlib.Path, kind: str) -> tuple[pathlib.Path, Obj]:
    found = [directory / n for n in _NAMES if (directory / n).is_file()]
    if len(found) != 1:
        raise RenderError(f"{directory}: {'no' if not found else 'more than one'} "
                          f"kustomization file ({', '.join(_NAMES)})")
    path = found[0]
    docs = load_all(path.read_text(encoding="utf-8"), str(path))
    if len(docs) != 1 or not isinstance(docs[0], dict):
        raise RenderError(f"{path}: must hold one mapping")
    k: Obj = docs[0]
    _unknown(str(path), "", k, _FIELDS)
    got = k.get("kind", "Kustomization")
    if got != kind:
        raise RenderError(f"{path}: kind {got}, where a {kind} is needed")
    if k.get("apiVersion", _API[kind]) != _API[kind]:
        raise RenderError(f"{path}: apiVersion {k['apiVersion']}: a {kind} is "
                          f"{_API[kind]}")
    return path, k


def _inside(root: pathlib.Path, rel: str, where: str) -> pathlib.Path:
    """A file a kustomization names: in or below its directory (kustomize's
    load restriction)."""
    path = (root / rel).resolve()
    if not path.is_relative_to(root.resolve()):
        raise RenderError(f"{where}: {rel} is not in or below {root} "
                          "(kustomize's load restriction)")
    return path


def accumulate(directory: pathlib.Path, ra: list[Res], kind: str) -> None:
    """One kustomization's steps on the accumulated resources `ra`."""
    path, k = _kustomization(directory, kind)
    where = os.path.normpath(path)
    for entry in _strings(where, "resources", k.get("resources")):
        target = (directory / entry)
        if target.is_dir():
            sub: list[Res] = []
            accumulate(target, sub, "Kustomization")
            for r in sub:
                _add(ra, r)
        elif target.is_file():
            file = _inside(directory, entry, where)
            for i, doc in enumerate(load_all(file.read_text(encoding="utf-8"), str(file))):
                _add(ra, Res(_check_object(doc, f"{file}, document {i + 1}"), str(file)))
        else:
            raise RenderError(f"{where}: resource {entry}: no such file or directory"
                              " (remote resources are not implemented)")
    for i, gen in enumerate(k.get("configMapGenerator") or []):
        _config_map(directory, f"{where}: configMapGenerator[{i}]", gen, ra)
    # The components after this kustomization's generators (a component's
    # merge wins over its parent's) and before its transformers (the
    # parent's patches and images win), as kustomize v5 applies them.
    for entry in _strings(where, "components", k.get("components")):
        component = directory / entry
        if not component.is_dir():
            raise RenderError(f"{where}: component {entry}: not a directory")
        accumulate(component, ra, "Component")
    for i, patch in enumerate(k.get("patches") or []):
        _patch(directory, f"{where}: patches[{i}]", patch, ra)
    for i, label in enumerate(k.get("labels") or []):
        _labels(f"{where}: labels[{i}]", label, ra)
    for i, image in enumerate(k.get("images") or []):
        _images(f"{where}: images[{i}]", image, ra)


# --- configMapGenerator ----------------------------------------------------

_ENV_NAME = re.compile(r"[-._a-zA-Z][-._a-zA-Z0-9]*")


def _env_file(path: pathlib.Path) -> list[tuple[str, str]]:
    """KEY=VALUE lines as kustomize reads an `envs` file: blank lines and
    lines starting with # skipped, leading space trimmed, the value verbatim
    after the first =."""
    raw = path.read_bytes()
    if raw.startswith(b"\xef\xbb\xbf"):
        raw = raw[3:]
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise RenderError(f"{path}: not UTF-8") from e
    pairs = []
    for n, line in enumerate(text.split("\n"), 1):
        if "\r" in line:
            raise RenderError(f"{path}:{n}: a carriage return (not implemented)")
        line = line.lstrip()
        if not line or line.startswith("#"):
            continue
        key, eq, value = line.partition("=")
        if not eq:
            raise RenderError(f"{path}:{n}: {key} without = takes its value from the "
                              "environment in kustomize: not implemented")
        if not _ENV_NAME.fullmatch(key):
            raise RenderError(f"{path}:{n}: {key!r} is not a valid variable name")
        pairs.append((key, value))
    return pairs


def _literal(source: str, where: str) -> tuple[str, str]:
    key, eq, value = source.partition("=")
    if not eq or not key:
        raise RenderError(f"{where}: literal {source!r} is not KEY=VALUE")
    if len(value) >= 2 and value[0] in "'\"" and value[-1] == value[0]:
        value = value[1:-1]
    return key, value


def _config_map(directory: pathlib.Path, where: str, gen: Any, ra: list[Res]) -> None:
    _unknown(where, "", gen, {"name", "behavior", "envs", "literals"})
    name = gen.get("name")
    if not isinstance(name, str) or not name:
        raise RenderError(f"{where}: no name")
    behavior = gen.get("behavior", "create")
    if behavior not in ("create", "merge", "replace"):
        raise RenderError(f"{where}: behavior {behavior!r}: create, merge or replace")
    data: dict[str, str] = {}
    pairs: list[tuple[str, str]] = []
    for env in _strings(where, "envs", gen.get("envs")):
        pairs += _env_file(_inside(directory, env, where))
    pairs += [_literal(s, where) for s in _strings(where, "literals", gen.get("literals"))]
    for key, value in pairs:
        if not re.fullmatch(r"[-._a-zA-Z0-9]+", key):
            raise RenderError(f"{where}: {key!r} is not a valid ConfigMap key")
        if key in data:
            raise RenderError(f"{where}: the key {key} twice")
        data[key] = value
    existing = [r for r in ra if r.kind == "ConfigMap" and r.name == name]
    if behavior == "create":
        cm: Obj = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}}
        if data:
            cm["data"] = data
        _add(ra, Res(cm, where, hashed=True))
        return
    if not existing:
        raise RenderError(f"{where}: behavior {behavior}, but no ConfigMap {name} "
                          "to merge into or replace")
    old = existing[0]
    if behavior == "merge":
        merged = dict(old.obj.get("data") or {})
        merged.update(data)
        data = merged
    old.obj.pop("data", None)
    if data:
        old.obj["data"] = data
    old.hashed = True


def config_map_hash(cm: Obj) -> str:
    """The suffix kustomize (v5) gives a generated ConfigMap's name: the
    first 10 hex digits of the SHA-256 of a compact JSON encoding, some of
    them replaced by letters (so that no suffix is all digits or spells a
    word). The encoding's name is empty, as kustomize v5's is."""
    if cm.get("binaryData") or cm.get("immutable"):
        raise RenderError("ConfigMap binaryData/immutable: not implemented")
    encoded = json.dumps({"data": cm.get("data") or {}, "kind": "ConfigMap", "name": ""},
                         sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    # Go's encoding/json escapes these; json.dumps does not.
    for ch, esc in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026"),
                    ("\u2028", "\\u2028"), ("\u2029", "\\u2029")):
        encoded = encoded.replace(ch, esc)
    digest = hashlib.sha256(encoded.encode("utf-8")).hexdigest()[:10]
    return digest.translate(str.maketrans("013ae", "ghkmt"))


# --- patches ---------------------------------------------------------------


def _matches(r: Res, target: Obj) -> bool:
    group, version = r.group_version
    if target.get("group") and target["group"] != group:
        return False
    if target.get("version") and target["version"] != version:
        return False
    if target.get("kind") and target["kind"] != r.kind:
        return False
    return not target.get("name") or re.fullmatch(target["name"], r.name) is not None


def _patch(directory: pathlib.Path, where: str, entry: Any, ra: list[Res]) -> None:
    _unknown(where, "", entry, {"path", "patch", "target"})
    if ("path" in entry) == ("patch" in entry):
        raise RenderError(f"{where}: exactly one of path and patch")
    if "path" in entry:
        file = _inside(directory, entry["path"], where)
        where = f"{where} ({file})"
        text = file.read_text(encoding="utf-8")
    else:
        text = entry["patch"]
    docs = load_all(text, where)
    if len(docs) != 1:
        raise RenderError(f"{where}: {len(docs)} documents in one patch: not implemented")
    patch = docs[0]
    target = entry.get("target")
    if target is not None:
        _unknown(where, "target.", target, {"group", "version", "kind", "name"})
    if isinstance(patch, list):
        if target is None:
            raise RenderError(f"{where}: a JSON 6902 patch needs a target")
        chosen = [r for r in ra if _matches(r, target)]
        if not chosen:
            raise RenderError(f"{where}: the target {target} matches no object")
        for r in chosen:
            r.obj = _check_object(_json6902(r.obj, patch, where), where)
        return
    if not isinstance(patch, dict):
        raise RenderError(f"{where}: neither a strategic merge patch nor JSON 6902")
    _no_directives(patch, where, "")
    if target is None:
        smp = _check_object(patch, where)
        group, _, version = smp["apiVersion"].rpartition("/")
        target = {"group": group, "version": version, "kind": smp["kind"],
                  "name": re.escape(smp["metadata"]["name"])}
        chosen = [r for r in ra if _matches(r, target) and r.group_version == (group, version)]
    else:
        chosen = [r for r in ra if _matches(r, target)]
    if not chosen:
        raise RenderError(f"{where}: the target {target} matches no object")
    for r in chosen:
        body = copy.deepcopy(patch)
        # The patch's own identity does not rename or retype its target.
        for field in ("apiVersion", "kind"):
            body.pop(field, None)
        meta = body.get("metadata")
        if isinstance(meta, dict):
            meta.pop("name", None)
            if not meta:
                body.pop("metadata")
        r.obj = _check_object(_merge(r.obj, body, r.kind, (), where), where)


def _no_directives(value: Any, where: str, path: str) -> None:
    if isinstance(value, dict):
        for k, v in value.items():
            if isinstance(k, str) and k.startswith("$"):
                raise RenderError(f"{where}: {path}{k}: strategic merge directives "
                                  "are not implemented")
            _no_directives(v, where, f"{path}{k}.")
    elif isinstance(value, list):
        for v in value:
            _no_directives(v, where, f"{path}[].")


# Kubernetes' strategic merge for the lists of a pod spec (the
# patchMergeKey of k8s.io/api/core/v1's types), paths relative to it; None
# marks a list Kubernetes replaces whole. Lists not named here are refused.
_CONTAINER_LISTS: dict[tuple[str, ...], str | None] = {
    ("ports",): "containerPort", ("env",): "name", ("volumeMounts",): "mountPath",
    ("volumeDevices",): "devicePath", ("envFrom",): None, ("command",): None,
    ("args",): None, ("securityContext", "capabilities", "add"): None,
    ("securityContext", "capabilities", "drop"): None,
    ("lifecycle", "preStop", "exec", "command"): None,
    ("lifecycle", "postStart", "exec", "command"): None,
    ("startupProbe", "exec", "command"): None, ("readinessProbe", "exec", "command"): None,
    ("livenessProbe", "exec", "command"): None,
}
_POD_LISTS: dict[tuple[str, ...], str | None] = {
    ("volumes",): "name", ("imagePullSecrets",): "name", ("hostAliases",): "ip",
    ("tolerations",): None, ("readinessGates",): None,
    ("volumes", "[]", "secret", "items"): None, ("volumes", "[]", "configMap", "items"): None,
    ("securityContext", "supplementalGroups"): None,
    **{(c, "[]", *rest): key for c in ("containers", "initContainers")
       for rest, key in _CONTAINER_LISTS.items()},
    ("containers",): "name", ("initContainers",): "name",
}
_POD_SPEC = {"Pod": ("spec",), "Deployment": ("spec", "template", "spec"),
             "StatefulSet": ("spec", "template", "spec"),
             "DaemonSet": ("spec", "template", "spec"),
             "ReplicaSet": ("spec", "template", "spec"), "Job": ("spec", "template", "spec"),
             "CronJob": ("spec", "jobTemplate", "spec", "template", "spec")}
_OTHER_LISTS: dict[tuple[str, tuple[str, ...]], str | None] = {
    ("Service", ("spec", "ports")): "port",
}


def _list_strategy(kind: str, path: tuple[str, ...], where: str) -> str | None:
    prefix = _POD_SPEC.get(kind)
    if prefix and path[:len(prefix)] == prefix and path[len(prefix):] in _POD_LISTS:
        return _POD_LISTS[path[len(prefix):]]
    if (kind, path) in _OTHER_LISTS:
        return _OTHER_LISTS[(kind, path)]
    raise RenderError(f"{where}: {kind} {'.'.join(path)}: a list whose strategic "
                      "merge scripts/kustomize_render.py does not know")


def _merge(dest: Any, patch: Any, kind: str, path: tuple[str, ...], where: str) -> Any:
    """The strategic merge of `patch` into `dest` (a copy is returned)."""
    if isinstance(patch, dict):
        out = copy.deepcopy(dest) if isinstance(dest, dict) else {}
        for key, value in patch.items():
            if value is None:
                out.pop(key, None)
            else:
                out[key] = _merge(out.get(key), value, kind, (*path, key), where)
        return out
    if isinstance(patch, list):
        key = _list_strategy(kind, path, where)
        if key is None or not isinstance(dest, list):
            return [_merge(None, v, kind, (*path, "[]"), where) for v in patch]
        # As kustomize orders it: the patch's items first, in the patch's
        # order (each merged into its namesake), then the others.
        merged = []
        for item in patch:
            if not isinstance(item, dict) or key not in item:
                raise RenderError(f"{where}: {'.'.join(path)}: an item without its "
                                  f"merge key {key}")
            same = [d for d in dest if isinstance(d, dict) and d.get(key) == item[key]]
            merged.append(_merge(same[0] if same else None, item, kind, (*path, "[]"),
                                 where))
        keys = [item[key] for item in patch]
        return merged + [copy.deepcopy(d) for d in dest
                         if not (isinstance(d, dict) and d.get(key) in keys)]
    return patch


def _pointer(path: str, where: str) -> list[str]:
    if not path.startswith("/"):
        raise RenderError(f"{where}: JSON pointer {path!r} must start with /")
    return [t.replace("~1", "/").replace("~0", "~") for t in path[1:].split("/")]


def _json6902(obj: Obj, ops: list[Any], where: str) -> Obj:
    doc = copy.deepcopy(obj)
    for n, op in enumerate(ops):
        at = f"{where}: op {n}"
        if not isinstance(op, dict):
            raise RenderError(f"{at}: not a mapping")
        kind = op.get("op")
        if kind not in ("add", "replace", "remove"):
            raise RenderError(f"{at}: op {kind!r} is not implemented (add, replace, remove)")
        _unknown(at, "", op, {"op", "path", "value"})
        if (kind == "remove") == ("value" in op):
            raise RenderError(f"{at}: {kind} {'takes no' if kind == 'remove' else 'needs a'}"
                              " value")
        tokens = _pointer(str(op.get("path", "")), at)
        parent: Any = doc
        for t in tokens[:-1]:
            parent = _step(parent, t, at)
        last = tokens[-1]
        value = copy.deepcopy(op.get("value"))
        if isinstance(parent, dict):
            if kind != "add" and last not in parent:
                raise RenderError(f"{at}: {op['path']} does not exist")
            if kind == "remove":
                del parent[last]
            else:
                parent[last] = value
        elif isinstance(parent, list):
            if kind == "add" and last == "-":
                parent.append(value)
                continue
            i = _index(last, len(parent) + (kind == "add"), at)
            if kind == "add":
                parent.insert(i, value)
            elif kind == "replace":
                parent[i] = value
            else:
                del parent[i]
        else:
            raise RenderError(f"{at}: {op['path']}: its parent is a scalar")
    return doc


def _index(token: str, size: int, where: str) -> int:
    if not re.fullmatch(r"0|[1-9][0-9]*", token) or int(token) >= size:
        raise RenderError(f"{where}: list index {token!r} out of range")
    return int(token)


def _step(node: Any, token: str, where: str) -> Any:
    if isinstance(node, dict):
        if token not in node:
            raise RenderError(f"{where}: no {token!r} on the path")
        return node[token]
    if isinstance(node, list):
        return node[_index(token, len(node), where)]
    raise RenderError(f"{where}: {token!r} below a scalar")


# --- labels and images -----------------------------------------------------


def _labels(where: str, entry: Any, ra: list[Res]) -> None:
    _unknown(where, "", entry, {"pairs", "includeSelectors", "includeTemplates"})
    for flag in ("includeSelectors", "includeTemplates"):
        if entry.get(flag, False) is not False:
            raise RenderError(f"{where}: {flag}: {entry[flag]} is not implemented "
                              "(false only: the objects' metadata.labels)")
    pairs = entry.get("pairs") or {}
    if not isinstance(pairs, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in pairs.items()):
        raise RenderError(f"{where}: pairs must map strings to strings")
    for r in ra:
        labels = r.obj["metadata"].get("labels")
        if labels is None:
            labels = r.obj["metadata"]["labels"] = {}
        labels.update(pairs)


def _split_image(image: str, where: str) -> tuple[str, str | None]:
    if "@" in image:
        raise RenderError(f"{where}: image {image}: digests are not implemented")
    name, colon, tag = image.rpartition(":")
    if not colon or "/" in tag:
        return image, None
    return name, tag


def _images(where: str, entry: Any, ra: list[Res]) -> None:
    _unknown(where, "", entry, {"name", "newName", "newTag"})
    if not isinstance(entry.get("name"), str):
        raise RenderError(f"{where}: no name")

    def visit(node: Any) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if key in ("containers", "initContainers") and \
                        isinstance(value, list):
                    for c in value:
                        if isinstance(c, dict) and isinstance(c.get("image"), str):
                            c["image"] = rewrite(c["image"])
                visit(value)
        elif isinstance(node, list):
            for value in node:
                visit(value)

    def rewrite(image: str) -> str:
        name, tag = _split_image(image, where)
        if name != entry["name"]:
            return image
        name = str(entry.get("newName") or name)
        tag = str(entry["newTag"]) if entry.get("newTag") is not None else tag
        return f"{name}:{tag}" if tag else name

    for r in ra:
        visit(r.obj)


# --- the whole build -------------------------------------------------------

# kustomize's legacy order: these kinds first, in this order; the webhook
# configurations last; every other kind between, by group, version, kind.
_FIRST = ["Namespace", "ResourceQuota", "StorageClass", "CustomResourceDefinition",
          "ServiceAccount", "PodSecurityPolicy", "Role", "ClusterRole", "RoleBinding",
          "ClusterRoleBinding", "ConfigMap", "Secret", "Endpoints", "Service",
          "LimitRange", "PriorityClass", "PersistentVolume", "PersistentVolumeClaim",
          "Deployment", "StatefulSet", "CronJob", "PodDisruptionBudget"]
_LAST = ["MutatingWebhookConfiguration", "ValidatingWebhookConfiguration"]


def _order(r: Res) -> tuple[int, str, str]:
    if r.kind in _FIRST:
        rank = _FIRST.index(r.kind) - len(_FIRST)
    elif r.kind in _LAST:
        rank = _LAST.index(r.kind) + 1
    else:
        rank = 0
    group, version = r.group_version
    gvk = "_".join((group or "~G", version or "~V", r.kind))
    return rank, gvk, r.name


def _pod_specs(obj: Obj) -> list[Obj]:
    node: Any = obj
    for key in _POD_SPEC.get(str(obj["kind"]), ()):
        node = node.get(key) if isinstance(node, dict) else None
    return [node] if obj["kind"] in _POD_SPEC and isinstance(node, dict) else []


def _rename_refs(obj: Obj, renamed: dict[str, str]) -> None:
    """The references kustomize rewrites to a renamed ConfigMap."""
    def fix(holder: Any, key: str) -> None:
        if isinstance(holder, dict) and holder.get(key) in renamed:
            holder[key] = renamed[holder[key]]

    for pod in _pod_specs(obj):
        for v in pod.get("volumes") or []:
            fix(v.get("configMap"), "name")
            for source in (v.get("projected") or {}).get("sources") or []:
                fix(source.get("configMap"), "name")
        for group in ("containers", "initContainers"):
            for c in pod.get(group) or []:
                for e in c.get("envFrom") or []:
                    fix(e.get("configMapRef"), "name")
                for e in c.get("env") or []:
                    fix((e.get("valueFrom") or {}).get("configMapKeyRef"), "name")


def _stale_refs(node: Any, old: set[str], path: str) -> list[str]:
    """Fields named *name or *Name still holding a renamed ConfigMap's old
    name: references this renderer does not know how to rewrite."""
    found = []
    if isinstance(node, dict):
        for k, v in node.items():
            if isinstance(v, str) and v in old and (k == "name" or str(k).endswith("Name")):
                found.append(f"{path}{k}: {v}")
            else:
                found += _stale_refs(v, old, f"{path}{k}.")
    elif isinstance(node, list):
        for i, v in enumerate(node):
            found += _stale_refs(v, old, f"{path}{i}.")
    return found


def render(directory: pathlib.Path) -> list[Obj]:
    """The objects `kubectl kustomize DIRECTORY` prints, in its order."""
    ra: list[Res] = []
    accumulate(directory, ra, "Kustomization")
    renamed: dict[str, str] = {}
    for r in ra:
        if r.hashed:
            new = f"{r.name}-{config_map_hash(r.obj)}"
            renamed[r.name] = new
            r.obj["metadata"]["name"] = new
    for r in ra:
        _rename_refs(r.obj, renamed)
    for r in ra:
        if r.kind == "ConfigMap" and r.name in renamed.values():
            continue
        stale = _stale_refs(r.obj, set(renamed), "")
        if stale:
            raise RenderError(f"{r.kind}/{r.name}: {', '.join(stale)}: a reference to a "
                              "generated ConfigMap that scripts/kustomize_render.py "
                              "does not rewrite")
    return [r.obj for r in sorted(ra, key=_order)]


def compare(ours: list[Obj], theirs: list[Obj], ours_name: str, theirs_name: str) -> str:
    """'' when both hold the same objects in the same order, else a diff."""
    if ours == theirs:
        return ""
    return "".join(difflib.unified_diff(
        dump(theirs).splitlines(keepends=True), dump(ours).splitlines(keepends=True),
        theirs_name, ours_name)) or "(the same text, different values)\n"


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("directory", type=pathlib.Path, help="a kustomization's directory")
    ap.add_argument("--compare", type=pathlib.Path, metavar="FILE",
                    help="kubectl kustomize's output, to compare with")
    args = ap.parse_args(argv)
    try:
        objs = render(args.directory)
        if args.compare is None:
            sys.stdout.write(dump(objs))
            return 0
        theirs = load_all(args.compare.read_text(encoding="utf-8"), str(args.compare))
    except (RenderError, OSError) as e:
        print(f"kustomize_render: {e}", file=sys.stderr)
        return 1
    diff = compare(objs, theirs, "scripts/kustomize_render.py", str(args.compare))
    if diff:
        print(f"kustomize_render: {args.directory} renders otherwise than "
              f"{args.compare}:\n{diff}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
