#!/usr/bin/env python3
"""Checks a compose file without a Docker engine (make lint-docker).

What Compose would refuse, as far as it can be known from the file alone:

- YAML that does not parse, or a mapping with a key twice (PyYAML would keep
  the last one silently; Compose refuses the file);
- a variable used as ``${NAME}`` with no default (Compose would substitute
  an empty string and warn);
- anything the Compose Specification's JSON Schema rejects, checked after
  substituting the variables' defaults, as Compose checks the file it will
  run;
- references the schema cannot follow: ``depends_on`` naming no service,
  a named volume not declared under ``volumes``, a build context or
  Dockerfile that does not exist, and ``condition: service_healthy`` on a
  service whose health check this file does not state.

Usage: check_compose.py --schema compose-spec.json FILE...
Exit status 0 when every file passes, 1 otherwise, 2 for bad usage.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import re
import sys
from typing import Any

import jsonschema
import yaml


class _StrictLoader(yaml.SafeLoader):
    """A SafeLoader that refuses duplicate keys in a mapping."""


def _construct_mapping(loader: _StrictLoader, node: yaml.MappingNode) -> dict:
    seen: dict[Any, int] = {}
    for key_node, _ in node.value:
        if key_node.tag == "tag:yaml.org,2002:merge":
            continue  # `<<: *anchor`: keys given here override merged ones
        key = loader.construct_object(key_node, deep=True)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                "while reading a mapping", node.start_mark,
                f"found key {key!r} twice (first on line {seen[key]})",
                key_node.start_mark)
        seen[key] = key_node.start_mark.line + 1
    return loader.construct_mapping(node, deep=True)


_StrictLoader.add_constructor(
    yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)

# $$ (a literal $), ${NAME}, ${NAME:-default}, ${NAME-default}, and the
# ${NAME:?error} / ${NAME?error} forms, which require the variable.
_VARIABLE = re.compile(
    r"\$(?:(?P<escaped>\$)|\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)"
    r"(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\})")


def _interpolate(value: Any, where: str, problems: list[str]) -> Any:
    """Substitutes each variable's default, as with no variable set."""
    if isinstance(value, dict):
        return {k: _interpolate(v, f"{where}.{k}", problems)
                for k, v in value.items()}
    if isinstance(value, list):
        return [_interpolate(v, f"{where}[{i}]", problems)
                for i, v in enumerate(value)]
    if not isinstance(value, str):
        return value

    def substitute(m: re.Match) -> str:
        if m.group("escaped"):
            return "$"
        op = m.group("op") or ""
        if op.endswith("-"):
            return m.group("arg")
        if op.endswith("?"):
            return f"<{m.group('name')}>"  # required: the user must set it
        name = m.group("name")
        message = (f"${{{name}}} has no default (write ${{{name}:-VALUE}}), "
                   f"first in {where.lstrip('.')}")
        if not any(p.startswith(f"${{{name}}} ") for p in problems):
            problems.append(message)  # once: merged copies repeat it
        return ""

    return _VARIABLE.sub(substitute, value)


def _named_volume(entry: Any) -> str | None:
    """The named volume a service's `volumes` entry mounts, if any."""
    if isinstance(entry, dict):
        if entry.get("type", "volume") != "volume":
            return None
        source = entry.get("source")
    else:
        source = str(entry).split(":", 1)[0] if ":" in str(entry) else None
    if not source or source.startswith(("/", ".", "~", "$")):
        return None  # anonymous, or a bind mount of a host path
    return source


def _references(doc: dict, base: pathlib.Path) -> list[str]:
    problems = []
    services = doc.get("services") or {}
    volumes = doc.get("volumes") or {}
    for name, service in services.items():
        where = f"services.{name}"
        depends = service.get("depends_on") or {}
        if isinstance(depends, list):
            depends = {d: {"condition": "service_started"} for d in depends}
        for target, how in depends.items():
            if target not in services:
                problems.append(f"{where}.depends_on: no service '{target}'")
                continue
            check = services[target].get("healthcheck")
            if (how or {}).get("condition") == "service_healthy" and (
                    not check or check.get("disable") or not check.get("test")):
                problems.append(
                    f"{where}.depends_on.{target}: service_healthy, but "
                    f"'{target}' states no health check here")
        for i, entry in enumerate(service.get("volumes") or []):
            volume = _named_volume(entry)
            if volume is not None and volume not in volumes:
                problems.append(f"{where}.volumes[{i}]: volume '{volume}' is "
                                "not declared under the top-level volumes")
        build = service.get("build")
        if isinstance(build, str):
            build = {"context": build}
        if isinstance(build, dict) and "://" not in str(build.get("context")):
            # (a remote context, a URL, has nothing to look at here)
            context = base / build.get("context", ".")
            dockerfile = context / build.get("dockerfile", "Dockerfile")
            if not context.is_dir():
                problems.append(f"{where}.build.context: no directory {context}")
            elif "dockerfile_inline" not in build and not dockerfile.is_file():
                problems.append(f"{where}.build.dockerfile: no file {dockerfile}")
    return problems


def check(path: pathlib.Path, validator: jsonschema.Draft7Validator) -> list[str]:
    try:
        with path.open(encoding="utf-8") as f:
            raw = yaml.load(f, Loader=_StrictLoader)
    except (OSError, yaml.YAMLError) as e:
        return [str(e)]
    if not isinstance(raw, dict):
        return ["the file is not a YAML mapping"]
    problems: list[str] = []
    doc = _interpolate(raw, "", problems)
    for error in sorted(validator.iter_errors(doc), key=lambda e: list(e.path)):
        at = ".".join(str(p) for p in error.absolute_path) or "(top level)"
        problems.append(f"{at}: {error.message}")
    if not problems:
        problems += _references(doc, path.parent)
    return problems


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--schema", required=True, type=pathlib.Path,
                        help="the Compose Specification's JSON Schema")
    parser.add_argument("files", nargs="+", type=pathlib.Path)
    args = parser.parse_args(argv)
    try:
        schema = json.loads(args.schema.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        print(f"check_compose: cannot read the schema: {e}", file=sys.stderr)
        return 2
    # The schema is draft-07, but its $schema URL lacks the trailing '#'
    # that jsonschema looks the draft up by: name the draft here.
    jsonschema.Draft7Validator.check_schema(schema)
    validator = jsonschema.Draft7Validator(schema)
    failed = 0
    for path in args.files:
        problems = check(path, validator)
        if problems:
            failed += 1
            print(f"{path}: INVALID")
            for p in problems:
                print(f"  {p}")
        else:
            print(f"{path}: valid against {args.schema.name}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
