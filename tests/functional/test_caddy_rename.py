"""A route whose ``service`` (its ``@id``) changes is renamed, as Salt runs the routes state (``state.sls
hecate.routes``) against a real Caddy: the state's changes and the run's summary name one renamed route,
not an added and a removed one, and the host keeps answering."""

import copy

from devstack.http import backend_of, get
from hecatelib.engine import results


def test_a_changed_service_shows_as_one_renamed_route(make_loaders, local_tree):
    loaders = make_loaders({"hecate": local_tree})
    [first] = loaders.modules.state.sls("hecate.routes")
    assert first.result is True, first.comment
    renamed = copy.deepcopy(local_tree)
    route = next(r for r in renamed["reverse_proxy"]["caddy"]["routes"] if r["service"] == "grafana")
    route["service"] = "dashboards"

    [dry] = loaders.modules.state.sls("hecate.routes", test=True, pillar={"hecate": renamed})
    [applied] = loaders.modules.state.sls("hecate.routes", pillar={"hecate": renamed})
    rename = {"hecate_route_dashboards": {"hosts": [route["domain"]], "old": "hecate_route_grafana", "new": "hecate_route_dashboards"}}
    assert dry.result is None and dry.changes == {"renamed": rename}
    assert applied.result is True and applied.changes == {"renamed": rename}, applied.changes

    ok, changes, problems = results.read_state_returns({"edge-1": {"ret": applied.raw}})  # as a stage reads it
    assert ok and not problems
    assert results.summarize(changes) == [f"renamed: {route['domain']} (hecate_route_grafana -> hecate_route_dashboards)"]
    assert results.count_changes(changes) == 1
    port = local_tree["reverse_proxy"]["caddy"]["ports"]["http"]
    assert backend_of(get(port, route["domain"])[2]) == "grafana"
