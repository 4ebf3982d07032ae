"""Properties over large input spaces (hypothesis): DNS value normalisation is idempotent and keeps the
value's meaning (dnspython as the oracle), TXT chunking round-trips, redaction removes every encoding of a
secret, both HCL string encoders round-trip any string through python-hcl2, IDNA conversion round-trips."""

import base64
import ipaddress
from urllib.parse import quote, quote_plus

import dns.rdata
import hcl2
import idna
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hecatelib import api, hcl, spec
from hecatelib.dns import zones as dns_zones

SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
ZONE = "cybermonkey.dev"

# -- DNS values -----------------------------------------------------------------------------------------
TEXT = st.text(st.characters(blacklist_categories=("Cs", "Cc")), max_size=700)  # what a TXT value may hold
LABEL = st.from_regex(r"\A[a-z0-9]([a-z0-9-]{0,20}[a-z0-9])?\Z")
HOST = (
    st.lists(LABEL, min_size=1, max_size=4)
    .map(lambda labels: ".".join(labels) + ".example")
    .map(
        lambda h: h.upper() if len(h) % 2 else h  # upper case too: names compare lower-cased
    )
)
U16 = st.integers(0, 65535)
ALPN = st.lists(st.sampled_from(["h2", "h3", "http/1.1"]), min_size=1, max_size=3, unique=True)
VALUES = st.one_of(
    st.tuples(st.just("A"), st.ip_addresses(v=4).map(str)),
    st.tuples(st.just("AAAA"), st.ip_addresses(v=6).map(lambda a: ipaddress.IPv6Address(a).exploded)),
    st.tuples(st.just("CNAME"), HOST),
    st.tuples(st.just("MX"), st.builds(lambda p, h: f"{p}   {h}", U16, HOST)),
    st.tuples(st.just("SRV"), st.builds(lambda a, b, c, h: f"{a} {b} {c} {h}", U16, U16, U16, HOST)),
    st.tuples(
        st.just("CAA"), st.builds(lambda f, t, h: f'{f} {t} "{h}"', st.integers(0, 255), st.sampled_from(["issue", "ISSUEWILD"]), HOST)
    ),
    st.tuples(st.just("TXT"), TEXT.filter(lambda t: t.strip() and not t.lstrip().startswith('"'))),  # '"..."': pre-quoted
    st.tuples(
        st.just("DS"), st.builds(lambda t, d: f"{t} 13 2 {d}", U16, st.binary(min_size=32, max_size=32).map(lambda b: b.hex().upper()))
    ),
    st.tuples(st.just("TLSA"), st.builds(lambda d: f"3 1 1 {d[:20]} {d[20:]}", st.binary(min_size=32, max_size=32).map(bytes.hex))),
    st.tuples(st.just("HINFO"), st.builds(lambda a, b: f"{a} {b}", LABEL, LABEL)),
    st.tuples(st.just("RP"), st.builds(lambda a, b: f"{a}. {b}.", HOST, HOST)),
    st.tuples(
        st.just("HTTPS"),
        st.builds(lambda p, h, alpn, port: f"{p} {h}. alpn={','.join(alpn)} port={port}", st.integers(1, 65535), HOST, ALPN, U16),
    ),
)


def meaning(rtype, value):
    """What a resolver reads: the rdata dnspython parses (names compared case-insensitively, as DNS does)."""
    return dns.rdata.from_text("IN", rtype, value, origin=dns.name.root, relativize=False)


@SETTINGS
@given(VALUES)
def test_normalising_is_idempotent_and_keeps_the_meaning(item):
    rtype, value = item
    once = dns_zones.normalise_value(rtype, value)
    assert dns_zones.normalise_value(rtype, once) == once
    assert dns_zones.normalise_value(rtype, once, origin=ZONE) == once  # as read back from the API
    if rtype == "TXT":
        assert b"".join(meaning(rtype, once).strings) == value.encode()
    elif rtype == "HINFO":  # character-strings: case matters
        assert meaning(rtype, once) == meaning(rtype, value)
    else:  # names (and CAA tags, hex digits) compare case-insensitively; pillar host names are absolute
        read = value + "." if rtype in ("CNAME", "MX", "SRV") else value
        assert meaning(rtype, once).to_text().lower() == meaning(rtype, read).to_text().lower()


@SETTINGS
@given(TEXT)
def test_txt_chunks_round_trip(text):
    chunks = dns_zones.chunk_txt(text)
    assert "".join(chunks) == text
    assert all(len(chunk.encode()) <= dns_zones.TXT_CHUNK for chunk in chunks)
    value = dns_zones.quote_txt(chunks)
    assert dns_zones.parse_txt(value) == chunks
    assert [s.decode() for s in meaning("TXT", value).strings] == chunks  # a resolver reads the same chunks


# -- redaction ------------------------------------------------------------------------------------------
SECRET = st.text(st.characters(blacklist_categories=("Cs",)), min_size=12, max_size=40)
AROUND = st.binary(max_size=12)


@SETTINGS
@given(SECRET, st.text(max_size=20), st.text(max_size=20))
def test_redaction_removes_every_plain_encoding(secret, before, after):
    raw = secret.encode()
    forms = [secret, quote(secret, safe=""), quote_plus(secret), raw.hex(), raw.hex().upper()]
    if secret.isascii():  # tokens are ASCII; Unicode case mappings may change the length (ß -> SS)
        forms += [secret.upper(), secret.lower()]
    encoded = [encode(raw).decode() for encode in (base64.b64encode, base64.urlsafe_b64encode)]
    forms += encoded + [form.rstrip("=") for form in encoded]  # base64 without its padding (a secret's own "=" stays)
    for form in forms:
        redacted = api.redact(f"{before}{form}{after}", [secret])
        assert form not in redacted, form
        assert "<redacted>" in redacted


def whole_bytes_left(head, tail, total):
    """Byte positions of a base64 text of ``total`` characters whose 8 bits all survive in ``head``
    (kept before the redaction) or ``tail`` (kept after it): ``range`` of each."""
    end = len(head) * 6 // 8  # bytes wholly inside the head
    first = -(-(total - len(tail)) * 6 // 8)  # the first byte wholly inside the tail (a ceiling)
    return range(0, end), range(first, total * 6 // 8)


@SETTINGS
@given(SECRET, AROUND, AROUND)
def test_redaction_removes_a_secret_inside_longer_base64(secret, before, after):
    """A Basic credential (``user:secret``) and the like: of the secret's bytes, at most the 2 that share
    a 4-character group with the bytes around it survive on each side."""
    raw = secret.encode()
    secret_bytes = range(len(before), len(before) + len(raw))
    for encode in (base64.b64encode, base64.urlsafe_b64encode):
        text = encode(before + raw + after).decode()
        head, marker, tail = api.redact(text, [secret]).partition("<redacted>")
        assert marker
        kept_head, kept_tail = whole_bytes_left(head, tail, len(text))
        assert len(set(kept_head) & set(secret_bytes)) <= 2 and len(set(kept_tail) & set(secret_bytes)) <= 2


# -- HCL ------------------------------------------------------------------------------------------------
HCL_STRING = st.text(st.characters(blacklist_categories=("Cs",)), max_size=60) | st.lists(
    st.sampled_from(["$", "%", "{", "}", "${", "%{", "$${", "\\", '"', "\n", "a", "\\u007b"]), max_size=12
).map("".join)


def read_back(expression):
    """The string python-hcl2 reads from ``x = <expression>``, its escapes decoded. It keeps a template
    escape (``$${``) as written, so an encoder must not need one: ``"$\\u007b"`` is the literal ``${``."""
    return hcl2.loads(f"x = {expression}\n", serialization_options=hcl2.SerializationOptions(strip_string_quotes=True))["x"]


@SETTINGS
@given(HCL_STRING)
def test_the_hcl_encoder_round_trips_any_string(text):
    """One encoder for the Nomad jobs and the Terraform module (hecatelib.hcl)."""
    assert read_back(hcl.expression(text)) == text


# -- IDNA -----------------------------------------------------------------------------------------------
# letters and beyond: ASCII past "z" ({|}~ and DEL) is no hostname character, which to_ascii leaves to the validator
U_LABEL = st.text(
    st.characters(min_codepoint=0x61, max_codepoint=0x2FFF, blacklist_categories=("Cs", "Zs"), blacklist_characters="{|}~\x7f"),
    min_size=1,
    max_size=12,
)


@SETTINGS
@given(st.lists(U_LABEL, min_size=1, max_size=3))
def test_idna_conversion_round_trips(labels):
    name = ".".join(labels) + ".example"
    try:
        ascii_name = spec.to_ascii(name)
    except ValueError:
        return  # refused: nothing to round-trip (the corpus pins which names are refused)
    assert ascii_name.isascii()
    assert spec.to_ascii(ascii_name) == ascii_name  # idempotent: an A-label name is its own conversion
    assert spec.to_ascii(spec.to_unicode(ascii_name)) == ascii_name  # U-labels back to the same A-labels
    assert spec.to_unicode(ascii_name) == idna.decode(ascii_name)  # the display form is IDNA's U-label form
