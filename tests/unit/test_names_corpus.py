"""The corpus of valid and invalid international names and record values (tests/fixtures/names_corpus.yaml,
each entry with its source: RFC sections, UTS 46 / IDNA test data, dnspython's tests): every valid entry is
accepted (converted to its ``ascii`` form when the entry gives one), every invalid one is refused with
its reason, at the key path an operator would see."""

import pytest
import yaml

from hecatelib.dns import zones as dns_zones
from hecatelib.spec import Hostname, Report
from tests.conftest import FIXTURES

CORPUS = yaml.safe_load((FIXTURES / "names_corpus.yaml").read_text(encoding="utf-8"))
PATHS = {
    "domain": "hecate:reverse_proxy:caddy:routes[0]:domain",
    "dns": "hecate:dns:records[0]:name",
    "value": "hecate:dns:records[0]:values",
}


def check(entry, spec_module=None, zones_module=dns_zones):
    """``(normalised, [(path, reason)])`` of one corpus entry, the way the pillar validator sees it."""
    kind = next(k for k in PATHS if k in entry)
    report = Report("hecate")
    text = entry[kind]
    if kind == "domain":
        out = (spec_module.Hostname if spec_module else Hostname)(wildcard=True)(text, PATHS[kind], report)
    elif kind == "dns":
        out = zones_module.DnsName()(text, PATHS[kind], report)
    else:
        rtype, _, value = text.partition(" ")
        out = None
        try:
            out = zones_module.normalise_records(rtype, [value])[0]
        except ValueError as exc:
            report.error(PATHS[kind], str(exc))
    return out, report.errors


def label(entry):
    return next(entry[k] for k in PATHS if k in entry)


def test_the_corpus_is_big_enough_and_every_entry_has_a_source():
    assert len(CORPUS["valid"]) >= 40 and len(CORPUS["invalid"]) >= 40
    assert all(entry.get("source") for entry in CORPUS["valid"] + CORPUS["invalid"])
    for side in ("valid", "invalid"):
        names = [e for e in CORPUS[side] if "value" not in e]
        assert len(names) >= 15 and len(CORPUS[side]) - len(names) >= 20, side  # names and record values both


@pytest.mark.parametrize("entry", CORPUS["valid"], ids=label)
def test_valid_entries_are_accepted(entry):
    out, errors = check(entry)
    assert errors == []
    if entry.get("ascii"):
        assert out == entry["ascii"]


@pytest.mark.parametrize("entry", CORPUS["invalid"], ids=label)
def test_invalid_entries_are_refused_with_their_reason(entry):
    _, errors = check(entry)
    kind = next(k for k in PATHS if k in entry)
    assert [(path, reason) for path, reason in errors if path == PATHS[kind] and entry["reason"] in reason], errors
