"""Rolling a stage out over many edges: one canary first, then the rest in batches, stopping at the
first bad batch (``hecate:deployment:edge_batch``).

Pure sequencing: the caller passes ``apply(minions) -> {minion: result}`` (a result is Salt's state
return, ``result`` True/False) and ``roll_back(minions) -> [minions rolled back]``; this module decides
the order, stops at the first failure, and says what happened to every edge. A failed edge has already
restored its own snapshot (``caddy.routes_managed`` does); the edges of the failed batch that did apply
are rolled back; earlier batches were verified and keep the new config (the runner's rollback of the
whole run, if any, is the engine's business).
"""


def batches(minions, size):
    """``[[canary], [next size], ...]`` in a stable order: the first edge alone, then groups of ``size``."""
    ordered = sorted(minions)
    if not ordered:
        return []
    rest = ordered[1:]
    size = max(1, int(size))
    return [ordered[:1], *[rest[i : i + size] for i in range(0, len(rest), size)]]


def roll_out(minions, size, apply, roll_back, progress=None):
    """Apply batch by batch; on the first batch with a failed (or silent) edge, roll that batch back and
    stop. Returns ``{"ok", "edges": {minion: "applied"|"failed"|"rolled back"|"not reached"}, "failed_batch"}``.
    ``progress(minion, status)`` is called for every edge as its status becomes known."""
    progress = progress or (lambda minion, status: None)
    edges = {m: "not reached" for m in minions}
    for number, batch in enumerate(batches(minions, size)):
        answers = apply(batch)
        failed = [m for m in batch if not (answers.get(m) or {}).get("result")]
        for minion in batch:
            edges[minion] = "failed" if minion in failed else "applied"
            progress(minion, edges[minion])
        if failed:
            for minion in roll_back([m for m in batch if m not in failed]) or []:
                edges[minion] = "rolled back"
                progress(minion, "rolled back")
            return {"ok": False, "edges": edges, "failed_batch": number, "failed": failed}
    return {"ok": True, "edges": edges, "failed_batch": None, "failed": []}
