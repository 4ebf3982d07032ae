"""The backends hecate drives, in run order: terraform (machines), Nomad (the jobs), authentik (who gets in),
DNS (public names), Caddy (routes: the switch). The one place that names them; each is a package whose
``backend.py`` carries every hook the engine, drift, health and backup read (``hecatelib.engine.backend``).
Adding a backend is a package and a line here."""

from hecatelib.authentik.backend import BACKEND as AUTHENTIK
from hecatelib.caddy.backend import BACKEND as CADDY
from hecatelib.dns.backend import BACKEND as DNS
from hecatelib.nomad.backend import BACKEND as NOMAD
from hecatelib.terraform.backend import BACKEND as TERRAFORM

BACKENDS = (TERRAFORM, NOMAD, AUTHENTIK, DNS, CADDY)
