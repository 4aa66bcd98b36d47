"""ndctl's own test suites, unmodified, run against fakesys.

The judge of the fake is the test suite the kernel maintainers wrote for
the in-kernel ``nfit_test`` fake: ndctl's ``test/`` directory, built from
the release tarball beside the checkout (../shared/ndctl/ndctl-81.tar.gz)
and run with ``meson test`` inside one ``fakesys run``.

* :func:`ensure_built` unpacks and builds the tarball in a cache outside
  the checkout (``$NDCTL_SUITE_CACHE``, by default
  ``${XDG_CACHE_HOME:-~/.cache}/fakesys/ndctl-81-<sha256 prefix>``) and
  returns its build directory; a stamp file makes it a no-op while the
  tarball and the meson options are unchanged.
* :func:`run` runs the chosen suites or tests in ONE ``fakesys run
  --topology T -- meson test ...`` and returns ``(name, result, seconds)``
  per test, read from meson's machine log (``meson-logs/testlog.json``),
  with result one of PASS, FAIL, SKIP, TIMEOUT.

``python -m harness.ndctl_suite`` is the command line (scripts/ndctl-suite
readies the machine, then calls it); tests/test_ndctl_suite.py calls the
functions.  Nothing of ndctl is copied here: it is only built and run.
"""

from __future__ import annotations

import argparse
import fcntl
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent           # the checkout
DEFAULT_TARBALL = ROOT.parent / "shared" / "ndctl" / "ndctl-81.tar.gz"
DEFAULT_TOPOLOGY = "devices/ndctl-test.toml"
DEFAULT_SUITES = ("ndctl", "dax")
DEFAULT_TIMEOUT = 120.0          # seconds per test (meson's own default is 600)
MESON_DEFAULT_TIMEOUT = 600.0    # what ndctl's test/meson.build gives every test

# ndctl's README for running its tests: the test binaries and scripts
# (-Dtest), the ones that reconfigure devices (-Ddestructive: they do, but
# only the fake's), the security tests (-Dkeyutils); no man pages (they need
# asciidoctor) and no systemd unit (nothing is installed).
MESON_OPTIONS = ("-Dtest=enabled", "-Ddestructive=enabled", "-Dkeyutils=enabled",
                 "-Ddocs=disabled", "-Dsystemd=disabled")
STAMP = ".fakesys-ndctl-build"

RESULTS = ("PASS", "FAIL", "SKIP", "TIMEOUT")
# meson's result names -> ours; anything else (ERROR, INTERRUPT,
# UNEXPECTEDPASS, a test that never reported) is a failure.
_MESON_RESULTS = {"OK": "PASS", "EXPECTEDFAIL": "PASS", "SKIP": "SKIP",
                  "TIMEOUT": "TIMEOUT", "FAIL": "FAIL"}


class BuildUnavailable(Exception):
    """The build cannot be made here (no tarball, no meson/ninja/compiler):
    a reason to skip, not a failure of fakesys."""


def _say(msg: str) -> None:
    print(f"ndctl-suite: {msg}", file=sys.stderr, flush=True)


def tarball() -> Path:
    """$NDCTL_TARBALL, else ../shared/ndctl/ndctl-81.tar.gz beside the
    checkout, else beside the main checkout when this one is a git worktree."""
    if os.environ.get("NDCTL_TARBALL"):
        return Path(os.environ["NDCTL_TARBALL"])
    if DEFAULT_TARBALL.is_file():
        return DEFAULT_TARBALL
    try:
        common = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--path-format=absolute",
                                 "--git-common-dir"], capture_output=True, text=True,
                                timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        common = ""
    if common:
        alt = Path(common).parent.parent / DEFAULT_TARBALL.relative_to(ROOT.parent)
        if alt.is_file():
            return alt
    return DEFAULT_TARBALL


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def cache_dir(tar: Path | None = None, digest: str | None = None) -> Path:
    if os.environ.get("NDCTL_SUITE_CACHE"):
        return Path(os.environ["NDCTL_SUITE_CACHE"])
    tar = tar or tarball()
    digest = digest or _sha256(tar)
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    name = tar.name.removesuffix(".tar.gz").removesuffix(".tgz")
    return base / "fakesys" / f"{name}-{digest[:12]}"


def _run_logged(cmd: list[str], log: Path, cwd: Path | None = None) -> None:
    with open(log, "ab") as f:
        f.write(("$ " + " ".join(cmd) + "\n").encode())
        f.flush()
        rc = subprocess.call(cmd, cwd=cwd, stdin=subprocess.DEVNULL, stdout=f,
                             stderr=subprocess.STDOUT)
    if rc != 0:
        tail = log.read_text(errors="replace").splitlines()[-30:]
        raise RuntimeError(f"{' '.join(cmd)} failed (exit {rc}); last lines of {log}:\n"
                           + "\n".join("  | " + l for l in tail))


# What meson setup looks for (ndctl's meson.build): pkg-config modules, and
# iniparser, which Debian ships without a .pc file.
_PC_MODULES = ("libkmod", "libudev", "uuid", "json-c", "libkeyutils", "libtraceevent",
               "libtracefs")


def _missing_build_deps() -> list[str]:
    """The build tools and libraries not found here: a missing one is a
    machine not readied (BuildUnavailable), not a failed build."""
    missing = [t for t in ("meson", "ninja", "cc", "pkg-config") if shutil.which(t) is None]
    if "pkg-config" not in missing:
        missing += [m for m in _PC_MODULES
                    if subprocess.call(["pkg-config", "--exists", m]) != 0]
    if not any(Path(d, "iniparser.h").is_file()
               for d in ("/usr/include/iniparser", "/usr/include", "/usr/local/include")):
        missing.append("iniparser.h")
    return missing


def ensure_built(tar: Path | None = None, cache: Path | None = None) -> Path:
    """Build ndctl (and its tests) from the tarball, once; return the build dir.

    Raises BuildUnavailable when the tarball or the build tools are missing,
    RuntimeError when the build itself fails."""
    tar = Path(tar) if tar else tarball()
    if not tar.is_file():
        raise BuildUnavailable(f"no ndctl tarball at {tar} (set NDCTL_TARBALL)")
    digest = _sha256(tar)
    cache = Path(cache) if cache else cache_dir(tar, digest)
    build = cache / "build"
    want = f"tarball: {digest}\noptions: {' '.join(MESON_OPTIONS)}\n"
    stamp = cache / STAMP
    cache.parent.mkdir(parents=True, exist_ok=True)
    # One builder at a time (scripts/ndctl-suite and pytest may start together).
    with open(cache.parent / f".{cache.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if stamp.is_file() and stamp.read_text() == want and (build / "ndctl" / "ndctl").is_file():
            return build
        missing = _missing_build_deps()
        if missing:
            raise BuildUnavailable(f"cannot build ndctl: missing {', '.join(missing)}"
                                   " (scripts/ndctl-suite installs them)")
        start = time.monotonic()
        _say(f"building {tar.name} in {cache} (log in {cache}/build.log)")
        # Only what we put there goes (the directory may be a user's choice).
        for old in (cache / "src", build):
            shutil.rmtree(old, ignore_errors=True)
        for old in (stamp, cache / "build.log"):
            old.unlink(missing_ok=True)
        cache.mkdir(parents=True, exist_ok=True)
        with tarfile.open(tar) as t:
            top = {m.name.split("/", 1)[0] for m in t.getmembers()}
            # (the extraction filters came with 3.11.4; Debian 12 has 3.11.2)
            kw = {"filter": "tar"} if hasattr(tarfile, "tar_filter") else {}
            t.extractall(cache / "src", **kw)
        src = cache / "src" / top.pop() if len(top) == 1 else cache / "src"
        log = cache / "build.log"
        _run_logged(["meson", "setup", str(build), str(src), *MESON_OPTIONS], log)
        _run_logged(["ninja", "-C", str(build)], log)
        stamp.write_text(want)
        _say(f"built in {time.monotonic() - start:.0f}s")
        return build


def _binaries(build: Path) -> dict[str, str]:
    return {"NDCTL": str(build / "ndctl" / "ndctl"), "DAXCTL": str(build / "daxctl" / "daxctl"),
            "CXL": str(build / "cxl" / "cxl")}


def meson_command(build: Path, suites=DEFAULT_SUITES, tests=(), timeout=DEFAULT_TIMEOUT,
                  logbase: str = "testlog") -> list[str]:
    cmd = ["meson", "test", "-C", str(build), "--no-rebuild", "--logbase", logbase,
           "--timeout-multiplier", f"{timeout / MESON_DEFAULT_TIMEOUT:g}"]
    if tests:
        cmd += list(tests)                   # names alone select; no suite filter
    else:
        for s in suites:
            cmd += ["--suite", s if ":" in s else f"ndctl:{s}"]
    return cmd


def _short(name: str) -> str:
    """meson's "ndctl:ndctl / create.sh" (project:suite / test) -> "create.sh"."""
    if " / " in name:
        return name.rsplit(" / ", 1)[1]
    return name.split(":", 1)[1] if ":" in name else name


def parse_testlog(path: Path) -> list[tuple[str, str, float]]:
    """meson's machine log: one JSON object per test and line."""
    out = []
    if not path.is_file():
        return out
    for line in path.read_text().splitlines():
        if not line.strip():
            continue
        rec = json.loads(line)
        name = _short(rec["name"])
        out.append((name, _MESON_RESULTS.get(rec.get("result", ""), "FAIL"),
                    float(rec.get("duration") or 0.0)))
    return out


def run(suites=DEFAULT_SUITES, tests=(), topology: str = DEFAULT_TOPOLOGY,
        timeout: float = DEFAULT_TIMEOUT, build: Path | None = None,
        logbase: str = "testlog", echo: bool = False) -> list[tuple[str, str, float]]:
    """Run the suites (or just ``tests``, by meson name) inside one
    ``fakesys run --topology``; return (name, result, seconds) per test.

    A named test that meson never reported (the run died) is a FAIL with
    0 seconds.  ``timeout`` is per test; the whole run is bounded too."""
    build = Path(build) if build else ensure_built()
    # meson runs in the build dir: a topology path is made absolute (from
    # the caller's directory, else the checkout); a bare name is a shipped one.
    topo = Path(topology)
    if topo.exists():
        topo = topo.resolve()
    elif (ROOT / topo).exists():
        topo = ROOT / topo
    log = build / "meson-logs" / f"{logbase}.json"
    log.unlink(missing_ok=True)
    env = dict(os.environ, **_binaries(build))
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    cmd = [sys.executable, "-m", "fakesys.cli", "run", "--topology", str(topo), "--",
           *meson_command(build, suites, tests, timeout, logbase)]
    # meson kills a test at its timeout; this bounds a run in which that
    # is not enough (a wedged fake): every test at its timeout, plus margin.
    n = len(tests) if tests else 60
    overall = n * (timeout + 10) + 120
    # meson's console output (and fakesys's, should the fake not come up)
    # goes to a log beside meson's own, shown when no test reported.
    runlog = build / "meson-logs" / f"{logbase}-run.txt"
    with open(runlog, "wb") as out:
        proc = subprocess.Popen(cmd, cwd=build, env=env, stdin=subprocess.DEVNULL,
                                stdout=None if echo else out, stderr=None if echo else out,
                                start_new_session=True)
        try:
            proc.wait(timeout=overall)
        except subprocess.TimeoutExpired:
            # SIGINT first: meson stops its test, `fakesys run` takes its
            # fake down on the way out; SIGKILL what is left after 30 s.
            _say(f"the run took over {overall:.0f}s: interrupting it")
            os.killpg(proc.pid, signal.SIGINT)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
    results = parse_testlog(log)
    if not results and not echo:
        tail = runlog.read_text(errors="replace").splitlines()[-20:]
        _say(f"no test reported (exit {proc.returncode}); last lines of {runlog}:\n"
             + "\n".join("  | " + l for l in tail))
    seen = {name for name, _, _ in results}
    for t in map(_short, tests):
        if t not in seen:
            results.append((t, "FAIL", 0.0))
    return results


def summary(results) -> str:
    passed = sum(r == "PASS" for _, r, _ in results)
    skipped = sum(r == "SKIP" for _, r, _ in results)
    return f"{passed} passed, {len(results) - passed - skipped} failed, {skipped} skipped"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="scripts/ndctl-suite",
        description="Build ndctl's release tarball and run its test suites inside "
                    "one `fakesys run`; prints each test's result and a summary.")
    p.add_argument("suites", nargs="*", metavar="SUITE",
                   help=f"meson suites of ndctl: ndctl, dax, cxl (default: {' '.join(DEFAULT_SUITES)})")
    p.add_argument("--test", action="append", default=[], metavar="NAME",
                   help="run only this test (meson's name, e.g. create.sh); repeatable")
    p.add_argument("--topology", default=os.environ.get("NDCTL_SUITE_TOPOLOGY", DEFAULT_TOPOLOGY),
                   help=f"the fake to run in (default {DEFAULT_TOPOLOGY}; env NDCTL_SUITE_TOPOLOGY)")
    p.add_argument("--timeout", type=float,
                   default=float(os.environ.get("NDCTL_SUITE_TIMEOUT", DEFAULT_TIMEOUT)),
                   help=f"seconds per test before meson kills it (default {DEFAULT_TIMEOUT:g};"
                        " env NDCTL_SUITE_TIMEOUT)")
    p.add_argument("--build-only", action="store_true", help="build, print the build dir, stop")
    p.add_argument("-v", "--verbose", action="store_true", help="show meson's own output")
    args = p.parse_args(argv)

    try:
        build = ensure_built()
    except BuildUnavailable as e:
        _say(f"error: {e}")
        return 2
    if args.build_only:
        print(build)
        return 0
    suites = tuple(args.suites) or DEFAULT_SUITES
    start = time.monotonic()
    what = " ".join(args.test) if args.test else " ".join(suites)
    _say(f"running {what} in `fakesys run --topology {args.topology}`"
         f" (per-test timeout {args.timeout:g}s)")
    results = run(suites, args.test, args.topology, args.timeout, build, echo=args.verbose)
    wall = time.monotonic() - start
    width = max((len(n) for n, _, _ in results), default=0)
    for name, result, secs in results:
        print(f"{result:<7}  {name:<{width}}  {secs:.1f}s")
    print(summary(results))
    print(f"wall time {wall:.1f}s")
    print(f"meson's full log: {build / 'meson-logs' / 'testlog.txt'}")
    if not results:
        _say("error: meson reported no test (see its log)")
        return 1
    return 0 if all(r in ("PASS", "SKIP") for _, r, _ in results) else 1


if __name__ == "__main__":
    sys.exit(main())
