"""``hecate:backup`` is read (it was validated, documented and set in pillar/hecate.sls, and nothing read it):
its targets choose the sections, its cron schedule says when the scheduled ``salt-run hecate.backup`` writes,
and its retention removes old backups, never the newest, never anything that is not a backup."""

import datetime

from devstack.pillars import seed_tree
from hecatelib import backups, schema
from hecatelib.backends import BACKENDS

UTC = datetime.timezone.utc


def at(text):
    return datetime.datetime.strptime(text, "%Y-%m-%d %H:%M").replace(tzinfo=UTC)


def test_the_seeds_targets_are_hecates_sections_and_a_stranger_is_a_warning():
    tree = schema.validate(seed_tree())
    assert tree["backup"]["targets"] == ["caddy_data", "authentik_database", "nginx_configs"]
    assert backups.chosen(tree, BACKENDS) == ["nomad", "authentik", "caddy"]
    _, report = schema.check({**seed_tree(), "backup": {"targets": ["caddy", "mail_spool"]}})
    assert not report.errors and [w for w in report.warnings if w[0].startswith("hecate:backup")] == [
        ("hecate:backup:targets[1]", "'mail_spool' is not something hecate backs up (it saves authentik, caddy, dns, nomad)")
    ]
    assert backups.chosen({"backup": {}}, BACKENDS) == ["nomad", "authentik", "dns", "caddy"]  # none named: all


def test_a_scheduled_backup_is_due_once_per_firing_of_its_cron():
    daily = "0 3 * * *"
    assert backups.due(daily, None, at("2026-12-07 01:00"))  # none yet
    assert not backups.due(daily, at("2026-12-07 03:00"), at("2026-12-07 23:59"))
    assert backups.due(daily, at("2026-12-07 03:00"), at("2026-12-08 03:00"))
    assert backups.due(daily, at("2026-12-05 03:00"), at("2026-12-07 01:00"))  # missed ones: one now


def test_retention_removes_old_backups_only(tmp_path):
    for name in ("20261101T030000Z", "20261201T030000Z", "20261206T030000Z"):
        (tmp_path / name).mkdir()
        (tmp_path / name / backups.MANIFEST).write_text("{}")
    (tmp_path / "20261001T030000Z").mkdir()  # no manifest: not a backup
    (tmp_path / "notes").mkdir()
    removed = backups.expire(tmp_path, 30, at("2026-12-07 03:00"))
    assert [p.rsplit("/", 1)[1] for p in removed] == ["20261101T030000Z"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["20261001T030000Z", "20261201T030000Z", "20261206T030000Z", "notes"]
    assert backups.expire(tmp_path, 1, at("2027-06-01 00:00")) and [p for _, p in backups.taken(tmp_path)][-1].endswith("20261206T030000Z")
