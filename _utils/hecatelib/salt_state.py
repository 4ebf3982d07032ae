"""What every hecate state module shares: the virtual check, the validated tree, the return dict,
``test=True`` and ``mod_watch``. A state module is a short shell over it:

.. code-block:: python

    import hecatelib.salt_state

    __virtualname__ = "caddy"

    def __virtual__():
        return hecatelib.salt_state.virtual(__virtualname__, __salt__, "caddy.snapshot")

    def routes_managed(name):
        ret = hecatelib.salt_state.ret(name)
        try:
            tree = hecatelib.salt_state.tree(__pillar__, __opts__, __context__)
        except hecatelib.salt_state.PillarError as exc:
            return hecatelib.salt_state.fail(ret, f"nothing was changed: {exc}")
        ...
        if hecatelib.salt_state.test(__opts__):
            return hecatelib.salt_state.pending(ret, changes, "would apply ...")
        ...

    def mod_watch(name, sfun=None, **kwargs):
        return hecatelib.salt_state.mod_watch({"routes_managed": routes_managed}, name, sfun, kwargs)

The API, all pure of Salt's dunders (a state passes its own ``__pillar__``, ``__opts__``, ``__context__``;
helpers are plain modules on ``sys.path`` and get no dunders of their own):

``virtual(virtualname, salt, function)``
    ``virtualname`` when the execution module's ``function`` is loaded, else ``(False, reason)``.
``tree(pillar, opts, context)``
    The validated ``hecate`` tree from **pillar only**, validated once per state run and cached in
    ``context`` under a digest of the raw tree, so a pillar override later in the same process (the runner's
    rollback, a test's second call) is validated on its own. The digest is taken once per pillar object:
    the states of one run ask with the same object, which Salt does not change during the run. Raises ``PillarError`` naming every bad key
    path. A ``hecate`` key in the minion config is not merged (``config.get("hecate")`` would return it
    instead of the whole pillar); it is named in a warning, values never echoed. The returned tree is
    shared by every state of the run: treat it as read-only (``copy.deepcopy`` before changing it).
``ret(name, result=True, changes=None, comment="")``
    Salt's return dict. The default result is ``True``: a state that changed nothing succeeded.
``test(opts)``
    Whether this is a ``test=True`` run.
``pending(ret, changes, comment)``
    ``test=True`` with something to change: ``result: None``, the changes, the comment.
``fail(ret, comment)``
    ``result: False`` with ``comment``; ``changes`` kept only when the caller says what was done.
``mod_watch(functions, name, sfun, kwargs)``
    Re-run ``functions[sfun]`` with the state's own arguments only: Salt's internal keywords (``__reqs__``,
    ``__id__``, ``__sls__``, ``__env__``, ``__pub_*``, ``sfun``, requisites, ``order``...) are dropped, and so
    is anything the function does not accept. An ``sfun`` not in ``functions`` fails, naming it.
"""

import inspect
import logging

from salt.state import STATE_INTERNAL_KEYWORDS

from hecatelib import paths, schema

log = logging.getLogger(__name__)

PillarError = schema.PillarError

__all__ = ["PillarError", "fail", "mod_watch", "pending", "ret", "test", "tree", "virtual"]

CACHE_KEY = "hecatelib.salt_state.tree"
WARNED_KEY = "hecatelib.salt_state.warned_minion_config"

# What the state engine hands mod_watch besides the state's own arguments: Salt's own list (salt/state.py
# STATE_INTERNAL_KEYWORDS: requisites, runtime options, __id__, __sls__, __pub_*...), mod_watch's ``sfun``,
# and ``__reqs__``/``__run_num__``, which Salt adds without listing them (dropped with every ``__`` key).
ENGINE_KEYWORDS = STATE_INTERNAL_KEYWORDS | {"sfun", "name", "names"}


def virtual(virtualname, salt, function):
    """``virtualname`` when the execution module function ``function`` is loaded, else ``(False, reason)``."""
    if function in salt:
        return virtualname
    module = function.split(".", 1)[0]
    return (False, f"{virtualname}: the {module} execution module is not loaded (no {function})")


def ret(name, result=True, changes=None, comment=""):
    return {"name": name, "result": result, "changes": changes or {}, "comment": comment}


def test(opts):
    return bool(opts.get("test"))


def pending(state_ret, changes, comment):
    state_ret.update(result=None, changes=changes, comment=comment)
    return state_ret


def fail(state_ret, comment, changes=None):
    state_ret.update(result=False, changes=changes or {}, comment=comment)
    return state_ret


def _digest(raw):
    # Canonical JSON: equal trees give equal keys whatever their dict order. default=str covers the odd
    # non-JSON scalar (a date from YAML); the digest keys the cache and matches the ext_pillar's mark.
    return schema.digest(raw)


def _warn_minion_config(opts, context):
    if "hecate" not in opts or context.get(WARNED_KEY):
        return
    context[WARNED_KEY] = True
    section = opts["hecate"]
    keys = ", ".join(sorted(map(str, section))) if isinstance(section, dict) else type(section).__name__
    log.warning(
        "the minion config has a 'hecate' key (%s): hecate's states read the tree from pillar only and ignore it"
        " (execution modules still read single settings such as hecate:dns:token from it through config.get)",
        keys,
    )


def tree(pillar, opts, context):
    """The validated ``hecate`` tree from pillar, validated once per run (see the module docstring)."""
    _warn_minion_config(opts, context)
    raw = pillar.get("hecate")
    if raw is None and "hecate" in opts:
        raise PillarError([("hecate", "missing from pillar (a 'hecate' key in the minion config is not read: move it to pillar)")])
    cached = context.get(CACHE_KEY)
    if cached and cached[0] is raw:  # the very pillar object of the last call: every state of one run asks
        return cached[2]
    key = _digest(raw)  # a JSON dump of the whole tree: 30 ms at 5000 routes, so once per pillar object
    if cached and cached[1] == key:
        context[CACHE_KEY] = (raw, key, cached[2])
        return cached[2]
    try:
        root_prefix = paths.prefix(opts)
    except ValueError as exc:  # the minion config's, not the pillar's: named as such
        raise PillarError([(paths.PREFIX_OPTION, str(exc))]) from None
    validated = schema.validate_on_host(raw, opts.get("cachedir"), root_prefix, key)  # a new tree, or raw when a fixed point
    context[CACHE_KEY] = (raw, key, validated)
    return validated


def mod_watch(functions, name, sfun, kwargs):
    """Run ``functions[sfun]`` for a ``watch`` with only the state's own arguments (see the module docstring)."""
    function = functions.get(sfun)
    if function is None:
        return ret(name, False, comment=f"watch is not supported by {sfun}; supported: {', '.join(sorted(functions))}")
    own = {k: v for k, v in kwargs.items() if not k.startswith("__") and k not in ENGINE_KEYWORDS}
    params = inspect.signature(function).parameters
    if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        own = {k: v for k, v in own.items() if k in params}
    return function(name, **own)
