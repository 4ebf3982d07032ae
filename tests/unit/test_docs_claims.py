"""Every name the docs give exists: a pillar key path (``hecate:dns:prune``), a Salt function (``caddy.plan``,
``hecate.rollback``), a Python name (``hecatelib.engine.stages.steps``) or a file of the repository
(``salt/hecate/routes.sls``) written in backticks in README.md or docs/*.md. A doc that names something the
code no longer has fails here, not in an operator's terminal."""

import ast
import importlib
import re

import pytest

from hecatelib import schema
from tests.conftest import REPO
from tests.unit.test_pillar_docs import schema_paths

PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
LOADER_MODULES = {
    "caddy": ["_modules/caddy.py", "_states/caddy.py"],
    "authentik": ["_modules/authentik.py", "_states/authentik.py"],
    "hetzner_dns": ["_modules/hetzner_dns.py", "_states/hetzner_dns.py"],
    "nomad_job": ["_modules/nomad_job.py", "_states/nomad_job.py"],
    "hecate_terraform": ["_modules/hecate_terraform.py", "_states/hecate_terraform.py"],
    "hecate_consul": ["_modules/hecate_consul.py", "_states/hecate_consul.py"],
    "hecate": ["_runners/hecate.py", "_pillar/hecate.py"],
    "hecate_run": ["_states/hecate_run.py"],
}
FUNCTION = re.compile(rf"^(?:salt(?:-call|-run)?\s+(?:\S+\s+)?)?({'|'.join(LOADER_MODULES)})\.([a-z_]+)\b(?![./])")
PILLAR = re.compile(r"^hecate:[A-Za-z0-9_:\[\]<>.{},-]+$")
PYTHON = re.compile(r"^(hecatelib(?:\.[A-Za-z_][A-Za-z0-9_]*)+)")
FILE = re.compile(r"^(?:_modules|_states|_runners|_pillar|_beacons|_utils|salt|pillar|tests|devstack|bench|demo|docs)/[\w./-]+$")
NOT_FILES = {"salt/hecate/nomad/<job>.nomad.j2", "salt/netapi/hook/hecate/push"}  # a pattern; an event tag


def claims():
    for page in PAGES:
        for token in re.findall(r"`([^`\n]+)`", page.read_text()):
            yield page.name, token.strip()


def public_functions(path):
    tree = ast.parse((REPO / path).read_text())
    return {n.name for n in tree.body if isinstance(n, ast.FunctionDef) and not n.name.startswith("_")}


FUNCTIONS = {name: set().union(*(public_functions(p) for p in paths)) for name, paths in LOADER_MODULES.items()}
SCHEMA_PATHS = set(schema_paths(schema.SCHEMA))


def is_sls(token):
    """``hecate.routes``, ``hecate.nomad.core``: a state of the tree (salt/hecate/), not a function."""
    path = REPO / "salt" / token.replace(".", "/")
    return path.with_suffix(".sls").exists() or (path / "init.sls").exists()


def pillar_path_exists(token):
    """``hecate:a:b`` (colons) or a path with ``[]`` / ``[n]`` items, as the schema walk writes it."""
    path = re.sub(r"\[\d*\]", "[]", token.removeprefix("hecate:").rstrip(":")).replace(":", ".")
    path = re.sub(r"\.\[\]", "[]", path)
    return not path or path in SCHEMA_PATHS or any(p.startswith(path + ".") or p.startswith(path + "[") for p in SCHEMA_PATHS)


def python_name_exists(dotted):
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            found = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        for attribute in parts[cut:]:
            found = getattr(found, attribute, None)
            if found is None:
                return False
        return True
    return False


def test_the_docs_name_things_that_exist():
    missing = []
    for page, token in claims():
        if PILLAR.match(token) and "<" not in token:
            if not pillar_path_exists(token):
                missing.append(f"{page}: pillar key `{token}`")
        elif FUNCTION.match(token):
            module, function = FUNCTION.match(token).groups()
            if function in ("sls", "py") or is_sls(f"{module}.{function}"):  # a file name, or a state of the tree
                continue
            if function not in FUNCTIONS[module]:
                missing.append(f"{page}: function `{module}.{function}`")
        elif PYTHON.match(token):
            if not python_name_exists(PYTHON.match(token).group(1)):
                missing.append(f"{page}: python name `{token}`")
        elif FILE.match(token) and token not in NOT_FILES and "*" not in token and "<" not in token:
            if not (REPO / token).exists():
                missing.append(f"{page}: file `{token}`")
    assert not missing, "the docs name what does not exist:\n" + "\n".join(missing)


@pytest.mark.parametrize("token", ["hecate:dns:prune", "caddy.plan", "hecatelib.engine.stages.steps", "salt/hecate/routes.sls"])
def test_the_check_knows_each_kind_of_name(token):
    """The check itself can fail: a name of each kind that exists passes, the same name misspelt does not."""
    if token.startswith("hecate:"):
        assert pillar_path_exists(token) and not pillar_path_exists(token + "x")
    elif token.startswith("hecatelib"):
        assert python_name_exists(token) and not python_name_exists(token + "x")
    elif "/" in token:
        assert (REPO / token).exists() and not (REPO / (token + "x")).exists()
    else:
        module, function = FUNCTION.match(token).groups()
        assert function in FUNCTIONS[module] and function + "x" not in FUNCTIONS[module]
