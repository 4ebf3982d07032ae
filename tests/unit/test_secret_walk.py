"""Which pillar values are secrets is known from the schema alone: ``hecatelib.spec.secret_values`` and
``without_secrets`` walk the ``Secret`` type through Map, MapOf and ListOf."""

from hecatelib import schema, spec
from hecatelib.spec import Either, ListOf, Map, MapOf, Secret, Str


def _children(spec):
    if isinstance(spec, Map):
        return [field.spec for field in spec.fields.values()]
    if isinstance(spec, MapOf):
        return [spec.value_spec]
    if isinstance(spec, ListOf):
        return [spec.spec]
    if isinstance(spec, Either):
        return list(spec.specs)
    return []


def _under(spec):
    yield spec
    for child in _children(spec):
        yield from _under(child)


def test_no_secret_hides_where_the_walker_does_not_go():
    """The walker follows Map/MapOf/ListOf only: a Secret inside an Either would go unnoticed."""
    eithers = [spec for spec in _under(schema.SCHEMA) if isinstance(spec, Either)]
    assert eithers  # the schema has some (route dns, consul verify)
    assert not [spec for either in eithers for spec in _under(either) if isinstance(spec, Secret)]
    assert sum(isinstance(spec, Secret) for spec in _under(schema.SCHEMA)) >= 10


def test_secrets_under_free_keys_and_lists_are_found_and_dropped():
    shape = Map({"name": Str(), "vars": MapOf(Secret()), "keys": ListOf(Map({"id": Str(), "value": Secret()}))})
    tree = {"name": "n", "vars": {"a": "value-AAAAAA", "b": "vault:secret/x#y"}, "keys": [{"id": "k1", "value": "value-BBBBBB"}]}
    assert spec.secret_values(tree, shape) == [("hecate:vars:a", "value-AAAAAA"), ("hecate:keys[0]:value", "value-BBBBBB")]
    assert spec.without_secrets(tree, shape) == {"name": "n", "vars": {}, "keys": [{"id": "k1"}]}
    assert tree["vars"]["a"] == "value-AAAAAA"  # the input is not changed
