"""Small helpers shared by the tests."""

import os
import random
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def flip(hex_hash: str, bits: int, rng: random.Random | int = 1) -> str:
    """``hex_hash`` with ``bits`` distinct bits flipped (a near-duplicate at that distance)."""
    rng = rng if isinstance(rng, random.Random) else random.Random(rng)
    value = int(hex_hash, 16)
    for b in rng.sample(range(len(hex_hash) * 4), bits):
        value ^= 1 << b
    return f"{value:0{len(hex_hash)}x}"


def accepted_case(staff, items: list[dict], *, hash_list=None):  # noqa: ANN001, ANN201
    """Report ``items`` as one case (on ``hash_list``, else the default list), accept it as
    ``staff`` and sequence its changes, as the sequencer task would: the case and its PIN."""
    from cases.services import case_accept, case_create
    from hashlists.services import list_changes_sequence

    case, pin = case_create(
        reporter="self", under_18_when_made=True, items=items, hash_list=hash_list
    )
    case_accept(case=case, staff=staff)
    list_changes_sequence()
    return case, pin


def free_port() -> int:
    """A TCP port on loopback that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def numbered_image(n: int, quality: int = 90) -> dict:
    """A distinct, publishable image item for number ``n`` (pHash with 25 or more bits set,
    good PDQ quality)."""
    return {
        "media_type": "image",
        "md5": f"{n:032x}",
        "pdq": f"{n:04x}" + "5a" * 30,
        "pdq_quality": quality,
        "phash": f"{n:04x}f0f0f00f0f0f",
    }


def run_in_production(code: str) -> subprocess.CompletedProcess:
    """Run ``code`` after ``django.setup()`` under the production settings, in a process of its
    own whose environment holds only what production needs (a good secret key, an allowed
    host, a signing key file) besides the machine's non-Django variables."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("DJANGO_")}
    return subprocess.run(
        [sys.executable, "-c", f"import django; django.setup(); {code}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        env={
            **clean,
            "DJANGO_SETTINGS_MODULE": "tidportal.settings.production",
            "DJANGO_SECRET_KEY": "k" * 60,
            "DJANGO_ALLOWED_HOSTS": "tid.example",
            "TID_SIGNING_KEY_FILE": "/run/secrets/tidportal-signing.pem",
        },
    )


def gunicorn_serving(env: dict[str, str], *, timeout: float = 60) -> Iterator[str]:
    """The real WSGI app under gunicorn (one worker) on a free loopback port, with ``env``:
    yields its base URL once /healthz answers, whatever the answer (a dependency may be down on
    purpose), and stops it afterwards. A generator, for fixtures to ``yield from``."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "tidportal.wsgi", "-b", f"127.0.0.1:{port}", "-w", "1"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                urllib.request.urlopen(base + "/healthz", timeout=5)  # noqa: S310 - loopback
                break
            except urllib.error.HTTPError:
                break  # it answers, with an error status
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        yield base
    finally:
        process.terminate()
        process.wait(timeout=30)
