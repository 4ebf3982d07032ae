"""A real headless browser for a page hecate writes: Debian's chromium (``make setup`` installs it), started
as the environment notes say (no sandbox as root, no network of its own, a new profile each time)."""

import shutil
import subprocess
import tempfile

FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def chromium():
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    assert found, "chromium is missing: make setup installs Debian's chromium (apt-get install chromium)"
    return found


def dump_dom(path, timeout=120):
    """The DOM chromium builds from the file at ``path`` (``--dump-dom``), as serialised HTML: text a page
    shows is escaped there (``&lt;``), markup it runs is an element."""
    with tempfile.TemporaryDirectory(prefix="hecate-chromium-") as profile:
        done = subprocess.run(
            [chromium(), *FLAGS, f"--user-data-dir={profile}", "--dump-dom", path.resolve().as_uri()],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    assert done.returncode == 0 and done.stdout.strip(), done.stderr[-2000:]
    return done.stdout
