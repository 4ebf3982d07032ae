"""docs/pillar.md lists every key the validator accepts: the test walks ``hecatelib.schema.SCHEMA`` (which holds
every backend's ``PILLAR_SCHEMA``) and finds each key path in the first column of a table in the page."""

import re

from hecatelib import schema
from hecatelib.spec import Either, Field, ListOf, Map, MapOf
from tests.conftest import REPO

PAGE = REPO / "docs" / "pillar.md"
PREFIX = re.compile(r"^Keys under `([^`]+)`")  # a line that sets the prefix of the tables after it


def schema_paths(spec, prefix=""):
    """Every key path of ``spec``: ``a.b`` for a mapping's key, ``a[]`` for a list's items, ``a.<name>``
    for the values of a mapping with free keys."""
    if isinstance(spec, Field):
        spec = spec.spec
    if isinstance(spec, Map):
        for name, field in spec.fields.items():
            path = f"{prefix}.{name}" if prefix else name
            yield path
            yield from schema_paths(field, path)
    elif isinstance(spec, MapOf):
        yield from schema_paths(spec.value_spec, f"{prefix}.<name>")
    elif isinstance(spec, ListOf):
        yield from schema_paths(spec.spec, f"{prefix}[]")
    elif isinstance(spec, Either):
        for choice in spec.specs:
            yield from schema_paths(choice, prefix)
    else:  # a spec class of its own that delegates to a mapping (a route's ``auth``: _RouteAuth.MAP)
        for inner in {**vars(type(spec)), **vars(spec)}.values():
            if isinstance(inner, (Map, MapOf, ListOf, Either)):
                yield from schema_paths(inner, prefix)


def expand(token):
    """``a.{b,c}.d`` -> ``a.b.d``, ``a.c.d`` (any number of brace groups)."""
    match = re.search(r"\{([^{}]*)\}", token)
    if not match:
        return [token]
    return [out for choice in match.group(1).split(",") for out in expand(token[: match.start()] + choice + token[match.end() :])]


def documented_paths(text):
    """The key paths in the first column of the page's tables (``a`` / ``b``: both), each with its parents."""
    paths, prefix = set(), ""
    for line in text.splitlines():
        found = PREFIX.match(line)
        if found:
            prefix = found.group(1)
        elif line.startswith("## "):
            prefix = ""
        elif line.startswith("| `"):
            for token in re.findall(r"`([^`]+)`", line.split("|")[1]):
                for path in expand(token):
                    path = f"{prefix}.{path}" if prefix else path
                    while path:
                        paths.add(path)
                        path = path[:-2] if path.endswith("[]") else path.rpartition(".")[0]
    return paths


def test_the_expansion_and_the_walk_work():
    assert expand("a.{b,c}.{d,e}") == ["a.b.d", "a.b.e", "a.c.d", "a.c.e"]
    assert documented_paths("Keys under `x.y[]`:\n| `a.{b,c}` / `d` | |\n") == {
        "x",
        "x.y",
        "x.y[]",
        "x.y[].a",
        "x.y[].a.b",
        "x.y[].a.c",
        "x.y[].d",
    }
    paths = set(schema_paths(schema.SCHEMA))
    assert {
        "reverse_proxy.caddy.consul_dns",
        "reconcile.max_changes",
        "consul.external_services",
        "reverse_proxy.caddy.routes[].health.uri",
    } <= paths
    assert len(paths) > 250


def test_every_key_the_validator_accepts_is_in_docs_pillar_md():
    missing = sorted(set(schema_paths(schema.SCHEMA)) - documented_paths(PAGE.read_text()))
    assert missing == [], f"{len(missing)} keys missing from docs/pillar.md: {missing}"
