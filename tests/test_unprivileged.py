"""fakesys works for an unprivileged user (user namespace + fusermount3)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile

import pytest

from conftest import ROOT, needs_ndctl

NOBODY = 65534


def _usable() -> str | None:
    if os.getuid() != 0:
        return "needs root to switch to an unprivileged user"
    if shutil.which("setpriv") is None or shutil.which("fusermount3") is None:
        return "setpriv or fusermount3 missing"
    if os.stat("/dev/fuse").st_mode & 0o006 != 0o006:
        return "/dev/fuse is not world-accessible on this machine (Debian's default is 0666)"
    probe = subprocess.run(["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups",
                            sys.executable, "-c", "import fakesys"], cwd=ROOT, capture_output=True)
    if probe.returncode != 0:
        return "the checkout or its venv is not readable by an unprivileged user"
    # `fakesys run` as a user needs a user namespace: refused in a chroot
    # (EPERM), by kernel.unprivileged_userns_clone=0 or by a container's policy
    probe = subprocess.run(["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups",
                            "unshare", "--user", "--map-root-user", "--mount", "true"], capture_output=True)
    if probe.returncode != 0:
        return "an unprivileged user cannot create a user namespace here"
    return None


@needs_ndctl
def test_unprivileged_user_runs_ndctl():
    why = _usable()
    if why:
        pytest.skip(why)
    state = tempfile.mkdtemp(prefix="fakesys-unpriv-")
    os.chmod(state, 0o777)
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": state}
    as_user = ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups",
               sys.executable, "-m", "fakesys.cli"]
    name = f"unpriv-{os.getpid()}"
    try:
        subprocess.run(as_user + ["up", "--name", name, "--state", state], cwd=ROOT, env=env,
                       check=True, capture_output=True)
        out = subprocess.run(as_user + ["run", "--name", name, "--", "sh", "-c",
                                        "ndctl create-namespace -r region1 -m fsdax -s 64M && id -u"],
                             cwd=ROOT, env=env, capture_output=True, text=True)
        assert out.returncode == 0, out.stderr
        ns_json, uid = out.stdout.rsplit("}", 1)
        assert json.loads(ns_json + "}")["mode"] == "fsdax"
        assert uid.strip() == "0"  # mapped to root inside its own user namespace
    finally:
        subprocess.run(as_user + ["down", "--name", name], cwd=ROOT, env=env, capture_output=True)
        shutil.rmtree(state, ignore_errors=True)
