"""``hecate-validate`` on files from a pull request: it never runs the file's code, stays small and fast on
YAML alias bombs, reads YAML as Salt does, and a pillar without routes is valid."""

import os
import pathlib
import subprocess
import sys

import pytest

from hecatelib import cli
from tests.unit.test_hostile import alias_bomb

CLI = pathlib.Path(__file__).resolve().parents[2] / "_utils" / "hecatelib" / "cli.py"
SANDBOX_ESCAPES = [
    "{{% set x = cycler.__init__.__globals__.os.popen('touch {marker}').read() %}}",
    "{{{{ joiner.__init__.__globals__.os.system('touch {marker}') }}}}",
    "{{{{ lipsum.__globals__['os'].popen('touch {marker}').read() }}}}",
    "{{{{ namespace.__init__.__globals__.os.system('touch {marker}') }}}}",
    "{{{{ ''.__class__.__mro__[1].__subclasses__() }}}}",
    "{{{{ self._TemplateReference__context.cycler.__init__.__globals__.os.system('touch {marker}') }}}}",
    "{{{{ salt.__class__.__init__.__globals__['sys'].modules['os'].system('touch {marker}') }}}}",
    "{{% for k, v in salt.items() %}}{{% endfor %}}{{{{ salt.clear() }}}}",
]


# The validator's own peak memory: the kernel's ru_maxrss of a child also counts the pytest process it was
# forked from (the old address space's high-water mark is carried over at exec), so the child reports
# VmHWM of its own address space as it exits.
PEAK_WRAPPER = """
import runpy, sys
peak_path, sys.argv = sys.argv[1], sys.argv[2:]
try:
    runpy.run_path(sys.argv[0], run_name="__main__")
finally:
    with open("/proc/self/status") as status, open(peak_path, "w") as out:
        out.write(next(line.split()[1] for line in status if line.startswith("VmHWM:")))
"""


def run_cli(*files):
    """Run hecate-validate as CI does: (exit code, stdout, stderr, its CPU seconds, its peak RSS in KB).
    CPU time, not wall time: the machine is shared, and others' load is not the validator's cost."""
    base = pathlib.Path(str(files[0]))
    out_path, err_path, peak_path = (pathlib.Path(f"{base}.{ext}") for ext in ("out", "err", "peak"))
    with open(out_path, "wb") as out, open(err_path, "wb") as err:
        command = [sys.executable, "-c", PEAK_WRAPPER, str(peak_path), str(CLI), *map(str, files)]
        process = subprocess.Popen(command, stdout=out, stderr=err)
        _, status, usage = os.wait4(process.pid, 0)  # this child's own CPU time (RUSAGE_CHILDREN mixes all)
    process.returncode = os.waitstatus_to_exitcode(status)
    cpu = usage.ru_utime + usage.ru_stime
    return process.returncode, out_path.read_text(), err_path.read_text(), cpu, int(peak_path.read_text())


def validate_text(tmp_path, text):
    """run_cli on one pillar file holding ``text``."""
    sls = tmp_path / "hecate.sls"
    sls.write_text(text)
    return run_cli(sls)


@pytest.mark.fault
@pytest.mark.parametrize("payload", SANDBOX_ESCAPES, ids=range(len(SANDBOX_ESCAPES)))
def test_jinja_in_a_pillar_file_cannot_run_code(payload, tmp_path):
    marker = tmp_path / "pwned"
    with pytest.raises(cli.RenderError, match="sandboxed"):
        cli.render_text(payload.format(marker=marker) + "\nhecate: {}\n")
    assert not marker.exists()


def test_the_cli_refuses_the_issues_payload_without_running_it(tmp_path):
    marker = tmp_path / "pwned"
    text = f"{{% set x = cycler.__init__.__globals__.os.popen('touch {marker}').read() %}}\nhecate: {{}}\n"
    code, out, err, _, _ = validate_text(tmp_path, text)
    assert code == 2 and "sandboxed" in err and out == ""
    assert not marker.exists()


def test_seed_style_salt_calls_still_render_as_placeholders():
    data = cli.render_text("hecate:\n  token: {{ salt['vault.read_secret']('secret/x', 'token') }}\n")
    assert data == {"hecate": {"token": "<vault.read_secret:secret/x,token>"}}


RENDERER_CASES = [
    ("", True),
    ("#!jinja|yaml\n", True),
    ("#!jinja | yaml\n", True),
    ("#!yaml\n", True),
    ("#!py\n", False),
    ("#!gpg|yaml\n", False),
]


@pytest.mark.parametrize(("shebang", "ok"), RENDERER_CASES)
def test_only_renderers_that_run_no_code_are_supported(shebang, ok):
    text = shebang + "hecate: {global: {domain: example.org}}\n"
    if ok:
        assert cli.render_text(text)["hecate"]["global"]["domain"] == "example.org"
    else:
        with pytest.raises(cli.RenderError, match="not supported"):
            cli.render_text(text)


def test_plain_yaml_renderer_does_not_run_jinja():
    assert cli.render_text("#!yaml\nhecate: {x: '{{ 1 + 1 }}'}\n") == {"hecate": {"x": "{{ 1 + 1 }}"}}


@pytest.mark.fault
def test_alias_bomb_through_the_cli_is_fast_small_and_named(tmp_path):
    code, out, err, seconds, usage = validate_text(
        tmp_path, alias_bomb(where="terraform:\n    workdir: /var/lib/hecate/tf\n    vars:\n      x")
    )
    assert code == 1, err
    assert "error: hecate:terraform:vars:x" in out and "expands to more than" in out
    assert len(out) + len(err) < 2000
    assert seconds < 10  # CPU; the issue measured 115 s; here ~1 s, the interpreter and Salt's import
    assert usage < 300_000  # KB; the issue measured 432 MB


def test_duplicate_key_is_refused_with_line_and_column(tmp_path):
    code, _, err, _, _ = validate_text(tmp_path, "hecate:\n  global:\n    domain: a.example.org\n    domain: b.example.org\n")
    assert code == 2
    assert "line 4, column 5: duplicate key 'domain'" in err


def test_a_dns_only_pillar_is_valid(tmp_path):
    code, out, err, _, _ = validate_text(tmp_path, "hecate:\n  dns: {zone: example.org, token: t, targets: {ipv4: [203.0.113.1]}}\n")
    assert (code, out.strip()) == (0, "valid: 0 route(s), environment production"), err


def test_errors_exit_1_with_key_paths(tmp_path):
    code, out, _, _, _ = validate_text(
        tmp_path, "hecate:\n  reverse_proxy:\n    caddy:\n      routes:\n        - {domain: app.example.org, backnd: x}\n"
    )
    assert code == 1
    assert "error: hecate:reverse_proxy:caddy:routes[0](app.example.org):backnd: unknown key; did you mean 'backend'?" in out


def test_importing_the_cli_first_leaves_salts_yaml_whole():
    """Salt's config loading (salt-master, salt-call) needs salt.utils.yaml.safe_load after hecatelib.cli was
    imported first, as devstack/pillars.py does (importing salt.utils.yamlloader first broke it)."""
    code = "import hecatelib.cli, salt.utils.yaml; print(salt.utils.yaml.safe_load('a: 1'))"
    done = subprocess.run([sys.executable, "-c", code], cwd=CLI.parent.parent, capture_output=True, text=True, timeout=120)
    assert done.stdout.strip() == "{'a': 1}", done.stderr[-500:]


ONE_PASS = """hecate:
  reverse_proxy:
    caddy:
      routes:
        - {domain: app.example.org, backend: "10.0.0.5:80", service: app}
        - {domain: bad.example.org, backend: "10.0.0.6:99999", service: bad}
        - {domain: app.example.org, backend: "10.0.0.7:80", service: app2}
        - {domain: secret.example.org, backend: "10.0.0.8:80", service: secret, auth: {groups: [admins]}}
"""


def test_one_run_lists_field_errors_and_the_checks_across_routes(tmp_path):
    """A CI run lists every problem at once: a route's bad field, a duplicate domain between two other routes
    (named by their pillar index past the broken one) and a protected route with no authentik."""
    code, out, _, _, _ = validate_text(tmp_path, ONE_PASS)
    assert code == 1
    routes = "error: hecate:reverse_proxy:caddy:routes"
    assert f"{routes}[1](bad.example.org):backend: '10.0.0.6:99999': port 99999 is out of range 1..65535" in out
    assert f"{routes}[2](app.example.org):domain: duplicate domain 'app.example.org' (also at routes[0])" in out
    assert f"{routes}[3](secret.example.org):auth: needs authentik" in out
    assert out.strip().endswith("3 problem(s): nothing would be deployed"), out


def test_an_unclosed_bracket_names_where_it_opened_and_keeps_the_quote(tmp_path):
    text = "hecate:\n  reverse_proxy:\n    caddy:\n      routes:\n        - domain: app.example.org\n" \
           '          backends: ["10.0.0.5:80", "10.0.0.6:80"\n          service: app\n'  # fmt: skip
    code, _, err, _, _ = validate_text(tmp_path, text)
    assert code == 2
    assert (
        "YAML: line 7, column 11: did not find expected ',' or ']' (while parsing a flow sequence that began at line 6, column 21)" in err
    )
