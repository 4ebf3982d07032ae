"""``hecate-validate``: check a pillar file the way the master will, without a master.

For the CI of a pillar repository, where the file comes from a pull request and may be hostile::

    hecate-validate pillar/hecate.sls            # after pip install .
    python _utils/hecatelib/cli.py pillar/hecate.sls # from a checkout

The file is rendered as Salt's default renderer would (Jinja, then YAML), with three differences
that make it safe to run on anyone's file (docs/security.md):

- Jinja runs in a sandbox (``jinja2.sandbox.ImmutableSandboxedEnvironment``): no attribute that starts
  with ``_`` (so no ``cycler.__init__.__globals__.os``), no mutation of data, ranges of at most 100000,
  no number above MAX_NUMBER given to a call, a filter, ``*`` or ``%``, no exponent above 1000, no ``*``
  that makes more than MAX_RENDERED items, rendered text of at most MAX_RENDERED characters,
  RENDER_SECONDS of rendering at most.
- ``salt[...]`` calls (the seed's ``salt['vault.read_secret'](...)``) render to placeholder strings: no
  execution module runs, no secret is fetched, no network is used.
- Renderers: none given, ``#!jinja|yaml``, ``#!yaml_jinja`` and ``#!yaml``. Any other (``#!py``,
  ``#!pyobjects``, ``#!gpg``...) is refused: it would run Python or need keys.

YAML is read by Salt's own loader (salt.utils.yaml.SaltYamlSafeLoader: a key twice in one
mapping is refused, as Salt refuses it), then the tree goes through ``hecatelib.schema.check``, whose
first step bounds its size (YAML alias bombs), depth and keys.

Exit status 0 when valid, 1 when not (every problem printed with its key path), 2 when the file
cannot be read or rendered.
"""

import argparse
import contextlib
import functools
import os
import signal
import sys
import threading

if not __package__:  # run as a file (python _utils/hecatelib/cli.py): import hecatelib from its parent, and
    # never this directory's sub-packages as top-level ones (hecatelib/consul would shadow py-consul)
    _here = os.path.dirname(os.path.abspath(__file__))
    sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != _here]
    sys.path.insert(0, os.path.dirname(_here))

import jinja2
import jinja2.sandbox
import salt.utils.yaml  # not salt.utils.yamlloader first: that import order leaves salt.utils.yaml half-built
import yaml

from hecatelib import schema
from hecatelib.spec import quote

MAX_NUMBER = 10_000_000  # largest int a template may pass to a call or use with * and **
MAX_RENDERED = 20_000_000  # characters of rendered text
RENDER_SECONDS = 30
RENDERERS = {"": ("jinja", "yaml"), "jinja|yaml": ("jinja", "yaml"), "yaml_jinja": ("jinja", "yaml"), "yaml": ("yaml",)}


class RenderError(Exception):
    """The file cannot be rendered; the message is short and names the file."""


class _SaltFunctions(dict):
    """``salt['vault.read_secret']('secret/x')`` -> ``"<vault.read_secret:secret/x>"``: rendering must not
    need a master, a Vault or a network."""

    def __getitem__(self, function):
        return lambda *args, **kwargs: f"<{function}:{','.join(map(str, args))}>"


class _Sandbox(jinja2.sandbox.ImmutableSandboxedEnvironment):
    """Jinja's immutable sandbox, plus bounds on what makes big strings, lists or ints: numbers given to
    calls and filters, ``*`` and ``**`` and ``%``."""

    intercepted_binops = frozenset({"*", "**", "%"})

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.filters = {name: _bounded(function) for name, function in self.filters.items()}

    def call_binop(self, context, operator, left, right):
        _small(left, right)
        if operator == "**" and isinstance(right, int) and abs(right) > 1000:
            raise jinja2.sandbox.SecurityError("an exponent above 1000 is refused in a pillar template")
        if operator == "*":
            for sequence, count in ((left, right), (right, left)):
                if isinstance(sequence, (str, list, tuple)) and isinstance(count, int) and len(sequence) * count > MAX_RENDERED:
                    raise jinja2.sandbox.SecurityError(f"a value of more than {MAX_RENDERED} items is refused in a pillar template")
        return super().call_binop(context, operator, left, right)

    def call(__self, __context, __obj, *args, **kwargs):  # jinja2's own signature (kwargs may be "self")
        _small(*args, *kwargs.values())
        return super().call(__context, __obj, *args, **kwargs)


def _bounded(function):
    """A filter that refuses big numbers among its arguments (``center(10**9)`` would build 1 GB)."""

    @functools.wraps(function)  # keeps jinja_pass_arg (pass_context, pass_environment)
    def bounded(*args, **kwargs):
        _small(*args, *kwargs.values())
        return function(*args, **kwargs)

    return bounded


def _small(*values):
    for value in values:
        if isinstance(value, (tuple, list)) and len(value) < 100:  # "%" arguments, filter argument lists
            _small(*(v for v in value if not isinstance(v, (tuple, list))))
        elif isinstance(value, int) and not isinstance(value, bool) and abs(value) > MAX_NUMBER:
            raise jinja2.sandbox.SecurityError(f"number {quote(value)} is above {MAX_NUMBER}: refused in a pillar template")


@contextlib.contextmanager
def _time_limit(seconds):
    """Stop rendering after ``seconds`` (only where signals work: the main thread)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def expired(signum, frame):
        raise TimeoutError(f"rendering took more than {seconds} s")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def renderer_of(text):
    """The render pipeline named by the file's ``#!`` line (Salt's shebang), or RenderError."""
    first = text.split("\n", 1)[0]
    name = "".join(first[2:].split()) if first.startswith("#!") else ""
    if name not in RENDERERS:
        supported = ", ".join(f"#!{n}" for n in RENDERERS if n)
        raise RenderError(f"renderer {quote(name)} is not supported (it could run code): use {supported} or none")
    return RENDERERS[name]


def render_text(text, pillar=None, grains=None):
    """Render pillar SLS text as described in the module docstring. Returns the data, or RenderError."""
    pipeline = renderer_of(text)
    if text.startswith("#!"):
        text = text.split("\n", 1)[1] if "\n" in text else ""
    if "jinja" in pipeline:
        try:
            with _time_limit(RENDER_SECONDS):
                template = _Sandbox().from_string(text)
                parts, size = [], 0
                for chunk in template.generate(salt=_SaltFunctions(), pillar=pillar or {}, grains=grains or {}, opts={}, saltenv="base"):
                    size += len(chunk)
                    if size > MAX_RENDERED:
                        raise RenderError(f"Jinja renders more than {MAX_RENDERED} characters")
                    parts.append(chunk)
                text = "".join(parts)
        except jinja2.sandbox.SecurityError as exc:
            raise RenderError(f"Jinja refused (sandboxed: no code runs): {_short(exc)}") from None
        except jinja2.TemplateSyntaxError as exc:
            raise RenderError(f"Jinja syntax error on line {exc.lineno}: {_short(exc.message)}") from None
        except (jinja2.TemplateError, TimeoutError, ArithmeticError, TypeError, ValueError, MemoryError, RecursionError) as exc:
            raise RenderError(f"Jinja failed: {_short(exc)}") from None
    try:
        data = yaml.load(text, Loader=salt.utils.yaml.SaltYamlSafeLoader)  # noqa: S506 - Salt's loader is a SafeLoader
    except yaml.MarkedYAMLError as exc:
        raise RenderError(_yaml_message(exc)) from None
    except (yaml.YAMLError, RecursionError) as exc:
        raise RenderError(f"YAML: {_short(exc)}") from None
    return data or {}


def render_sls(path, pillar=None, grains=None):
    """Read and render one pillar SLS file (see :func:`render_text`)."""
    with open(path, encoding="utf-8") as handle:
        return render_text(handle.read(), pillar=pillar, grains=grains)


def _short(exc):
    return _plain(str(exc), 400)


def _plain(text, limit):
    """``text`` as a message may show it: control characters escaped (as ``repr`` does, without its quotes:
    a message ending in a quote keeps it), at most ``limit`` characters."""
    shown = "".join(c if c.isprintable() else repr(c)[1:-1] for c in str(text))
    return shown if len(shown) <= limit else f"{shown[:limit]}... ({len(shown)} characters)"


def _yaml_message(exc):
    """A YAML error as ``line L, column C: problem``, plus where the construct it was reading began when that
    is elsewhere (an unclosed ``[`` is reported where the parser gave up, lines after it opened); Salt's
    "conflicting ID" said plainly."""
    mark = exc.problem_mark or exc.context_mark
    where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
    problem = str(exc.problem or exc.context or "invalid YAML")
    if problem.startswith("found conflicting ID"):
        problem = f"duplicate key {problem[len('found conflicting ID ') :]} (Salt refuses a key twice in one mapping)"
    elif problem.startswith("found unacceptable key"):
        problem = "a key that is a list or a mapping (keys are strings or numbers)"
    began = exc.context_mark
    if exc.problem and exc.context and began and (began.line, began.column) != (mark.line, mark.column):
        problem += f" ({exc.context} that began at line {began.line + 1}, column {began.column + 1})"
    return f"YAML: {where}{_plain(problem, 300)}"


def main(argv=None):
    parser = argparse.ArgumentParser(prog="hecate-validate", description=__doc__.split("\n\n")[0])
    parser.add_argument("files", nargs="+", help="pillar SLS files; merged in order (later keys win)")
    args = parser.parse_args(argv)
    merged = {}
    for path in args.files:
        try:
            data = render_sls(path)
        except (OSError, UnicodeDecodeError, RenderError) as exc:
            print(f"{path}: cannot render: {_short(exc)}", file=sys.stderr)
            return 2
        if not isinstance(data, dict):
            print(f"{path}: cannot render: the file is not a mapping", file=sys.stderr)
            return 2
        merged.update(data)
    tree, report = schema.check(merged.get("hecate"))
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
