"""A local stack for the tests, the benches and the demo: emulators of the vendors that cannot run here
(Nomad, Consul, Vault, Hetzner Cloud DNS, authentik), a real Caddy with backends behind it, the seed pillar
and a scratch host for hecate's roots. Nothing hecate ships imports it; it imports nothing under tests/.

``HECATE_SPECS`` points the emulators at another copy of the vendors' OpenAPI specs (default: the copies of
../shared/specs in ``devstack/fixtures/specs``)."""

import os
import pathlib

FIXTURES = pathlib.Path(__file__).resolve().parent / "fixtures"  # copies of ../shared: the seed, vendor specs
SPECS = pathlib.Path(os.environ.get("HECATE_SPECS", FIXTURES / "specs"))
SEED = FIXTURES / "seed"
