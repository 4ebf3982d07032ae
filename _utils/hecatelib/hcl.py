"""Python values written as HCL2, for the Nomad job templates and the Terraform module (their Jinja ``hcl``
and ``heredoc`` filters). One encoder, so that a pillar string means the same text in both, and nothing in it
becomes an HCL template sequence (``${...}``, ``%{...}``) or breaks out of its quotes.

Property-tested against python-hcl2 (tests/unit/test_properties.py); ``$\\u007b`` is read as the literal
``${`` by Terraform's own parser too (checked with ``terraform console``).
"""

import json


def _literal_braces(text):
    """For quoted strings: the ``{`` of ``${`` / ``%{`` written ``\\u007b``. hclsyntax finds template
    sequences in the raw text before it reads escapes, so ``"$\\u007b"`` is the literal ``${``, as ``"$${"``
    is; python-hcl2 (the tests' and the Nomad emulator's parser) refuses ``$${`` with no ``}`` after it and
    reads this form."""
    return text.replace("${", "$\\u007b").replace("%{", "%\\u007b")


def expression(value):
    """A Python value as an HCL2 expression: strings quoted and escaped (HCL's escapes only: ``\\n \\r \\t
    \\" \\\\ \\uNNNN``; other control characters as ``\\uNNNN``; non-ASCII text as it is, since HCL's
    ``\\u`` takes no surrogate pairs), template sequences made literal; lists; maps."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, (int, float)):
        return json.dumps(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(expression(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{expression(str(k))} = {expression(v)}" for k, v in value.items()) + " }"
    if not isinstance(value, str):
        raise TypeError(f"cannot write {type(value).__name__} as HCL")
    out = []
    for char in value:
        if char == "\\":
            out.append("\\\\")
        elif char == '"':
            out.append('\\"')
        elif char == "\n":
            out.append("\\n")
        elif char == "\r":
            out.append("\\r")
        elif char == "\t":
            out.append("\\t")
        elif ord(char) < 0x20 or ord(char) == 0x7F:
            out.append(f"\\u{ord(char):04x}")
        else:
            out.append(char)
    return '"' + _literal_braces("".join(out)) + '"'


def heredoc(text, marker="EOT"):
    """A multi-line string as an HCL2 heredoc (``<<EOT ... EOT``, a marker no line of the text equals); template
    sequences escaped (``${`` -> ``$${``, ``%{`` -> ``%%{``: escapes are not read in a heredoc)."""
    text = str(text)
    if not text.endswith("\n"):
        text += "\n"
    lines = set(text.splitlines())
    n = 0
    while (marker if not n else f"{marker}{n}") in lines:
        n += 1
    marker = marker if not n else f"{marker}{n}"
    return f"<<{marker}\n" + text.replace("${", "$${").replace("%{", "%%{") + marker
