"""``hecate-validate``: check a pillar file the way the master will, without a master.

For the CI of a pillar repository::

    hecate-validate pillar/hecate.sls            # after pip install .
    python _utils/hecate_cli.py pillar/hecate.sls # from a checkout

The file is rendered as Salt would (Jinja, then YAML). Calls to ``salt[...]`` in the Jinja (the
seed's ``salt['vault.read_secret'](...)``) render to placeholder strings: secrets are not fetched.
Exit status 0 when valid, 1 when not (every problem printed with its key path), 2 on usage errors.
"""

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # the sibling helpers, installed or not

import hecate_schema
import jinja2
import yaml


class _SaltFunctions(dict):
    """``salt['vault.read_secret']('secret/x')`` -> ``"<vault.read_secret:secret/x>"``: rendering must not
    need a master, a Vault or a network."""

    def __getitem__(self, function):
        return lambda *args, **kwargs: f"<{function}:{','.join(map(str, args))}>"


def render_sls(path, pillar=None, grains=None):
    with open(path, encoding="utf-8") as handle:
        text = handle.read()
    rendered = jinja2.Template(text).render(salt=_SaltFunctions(), pillar=pillar or {}, grains=grains or {})
    return yaml.safe_load(rendered) or {}


def main(argv=None):
    parser = argparse.ArgumentParser(prog="hecate-validate", description=__doc__.split("\n\n")[0])
    parser.add_argument("files", nargs="+", help="pillar SLS files; merged in order (later keys win)")
    args = parser.parse_args(argv)
    merged = {}
    for path in args.files:
        try:
            merged.update(render_sls(path))
        except (OSError, jinja2.TemplateError, yaml.YAMLError) as exc:
            print(f"{path}: cannot render: {exc}", file=sys.stderr)
            return 2
    tree, report = hecate_schema.check(merged.get("hecate"))
    for path, reason in report.warnings:
        print(f"warning: {path}: {reason}")
    if report.errors:
        for path, reason in report.errors:
            print(f"error: {path}: {reason}")
        print(f"{len(report.errors)} problem(s): nothing would be deployed")
        return 1
    routes = len(tree["reverse_proxy"]["caddy"]["routes"])
    print(f"valid: {routes} route(s), environment {tree['global']['environment']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
