"""Replay a recorded real-kernel session against a fresh fake and score it.

``replay(golden_dir)`` reads an oracle result directory (``commands.tsv``,
``cmds/NNN.{cmd,out,err,rc}``, ``sysfs/TAG.txt``; see the oracle's README),
brings up a fake under a unique name with a temporary state directory, runs
every recorded command in order as ``fakesys run --name N -- sh -c CMD`` and
compares, per command, the exit status and stdout with the recording.
stderr is compared too but reported separately (it does not decide a
command's match).  For each command it prints::

    NNN  match|MISMATCH  rc=ours/golden  CMD

(with a unified diff of the normalised stdout, and of stderr when that
differs, if ``verbose``), then ``stderr match: ...`` and, last,
``match: X/Y (P%)``.  It returns 0 when every command matched, else 1.

At each ``DUMP TAG`` line the fake's sysfs is dumped like the oracle's
``sysdump-all`` (``python -m fakesys.sysdump --all``, with the node depth
and extra trees the recorded dump shows the scenario asked for) and
compared with ``sysfs/TAG.txt`` by :func:`fakesys.sysdump.compare`; the
contents of the nodes' ``meminfo``, ``numastat`` and ``vmstat`` are left
out (allocator counters that drift between any two reads on a real
machine; MemTotal and MemFree are checked by the recorded commands that
print them).  ``/proc/iomem`` is compared with ``sysfs/TAG.iomem``.
Dumps are reported on their own ``DUMP`` lines and in a ``dumps:`` line;
they do not count towards the score or the exit status.

Normalisation, kept to what is random on a real machine or an artefact of
replaying it elsewhere; there are no per-command exceptions:

* **uuids** (lower-case ``8-4-4-4-12`` hex, as the kernel and ndctl print
  them) are random on a real machine.  Within one stream (stdout or stderr)
  of one command, each distinct uuid is replaced by ``<uuid-N>`` in order of
  first appearance, separately for the recording and for our output.  So a
  consistent renaming matches, but using one uuid where the recording has
  two different ones (or the reverse) does not.  The nil uuid
  (``00000000-0000-0000-0000-000000000000``) is not random and is left as is.
* **printk timestamps**, **``ls -l`` dates** and **free memory**: the
  golden ``hmat`` session was recorded twice with the same oracle script on
  the same kernel, and between those two real recordings exactly these
  differ (commands 002 023 035 041, 004 008 009 022 034 040, 007 020 027
  033 039; nothing else): the ``[   12.711718]`` stamp that starts a
  ``dmesg`` line (the time since boot), the modification time ``ls -l``
  prints (``Nov 22 00:07``: when sysfs made the inode), and the number on
  the ``MemFree:``/``MemUsed:`` lines of a node's ``meminfo`` (what the
  machine's own allocations left free).  So:

  - ``[ seconds.micros]`` at the start of a line becomes ``[<time>]``;
  - in a line that starts like an ``ls -l`` entry (a mode string, then the
    link count), the date after the size column, ``Mon DD HH:MM`` or
    ``Mon DD  YYYY``, becomes ``<date>``;
  - the number and unit of a ``MemFree:`` or ``MemUsed:`` line, as node
    meminfo (``Node N MemFree:   123 kB``) and /proc/meminfo
    (``MemFree:   123 kB``) print it, becomes ``<kB>``.  The other lines
    (MemTotal above all) are compared as they are.

  Each pattern is anchored to its line's format, so the same text elsewhere
  is left alone.  All normalisation is applied, the same way, to the
  recording and to our output, stdout and stderr.
* **/out**: the recorded commands ran with the working directory ``/out``
  (the oracle's shared result directory) and some write files below it
  (``read-labels -o /out/labels/...``).  Each replay gets a temporary
  directory for that: ``/out`` in a command line is replaced by its path
  (the parent directories of the ``/out/...`` paths named in the command are
  created first, as the scenario script had done), commands run with it as
  their working directory, and its path is mapped back to ``/out`` in our
  stdout and stderr.

Commands run with ``LC_ALL=C`` (the oracle's initramfs has no locales).

**Userland.**  The oracle's guest ran every command with a static busybox
1.35 (``sh`` and all its applets) except the module tools (modprobe,
insmod, rmmod, lsmod, modinfo, depmod: Debian's kmod), ``find`` (GNU) and
ndctl, daxctl, cxl and jq (Debian's); see the oracle's
``build-initramfs.sh``.  When a static busybox is installed here
(``/bin/busybox``, Debian's ``busybox-static``), replay reproduces that:
it makes a temporary directory of symlinks to it, one per applet of
``busybox --list`` but those exclusions, puts it first in the commands'
PATH and runs each command line with busybox's ``sh -c``, so ``ls -la``
prints in busybox's format, as recorded.  (Only the sandbox's directory
with its ``modprobe`` stays before it: ``fakesys run`` puts it first.)
Without one, commands run with the host's ``sh`` and tools as before, and
replay says so in one note line on stderr.

That busybox's shell prefers its own applets to PATH ("standalone"), so a
bare ``modprobe`` runs busybox's (as it did in the oracle), which would act
on the host's kernel.  Hence a recorded ``/sbin/modprobe`` (kmod in the
oracle) becomes the absolute path of the sandbox's modprobe, which asks the
fake's daemon; and every replayed command runs under a seccomp filter that
fails ``init_module``, ``finit_module`` and ``delete_module`` with EPERM,
whatever the userland, so nothing replayed can load or unload a host module.
"""

from __future__ import annotations

import difflib
import glob
import os
import re
import shlex
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import tomllib
import uuid as uuidlib
from dataclasses import dataclass
from typing import IO

from fakesys import TOPOLOGY_DIR, lifecycle, runtime, sysdump
from fakesys.sandbox import seccomp
from fakesys.sandbox.namespace import BIN_DIR

MODPROBE_RE = re.compile(r"(^|[\s;&|(`'\"])(?:/usr)?/sbin/modprobe\b")

DUMP_EXCLUDE: tuple[str, ...] = ()
# files whose contents are the running machine's allocator counters
COUNTER_FILES = re.compile(r"^/sys/devices/system/node/node\d+/(meminfo|numastat|vmstat)$")
# trees sysdump-all dumps only when a scenario asks (SYSDUMP_EXTRA)
EXTRA_TREES = ("/sys/devices/virtual/memory_tiering", "/sys/bus/memory_tiering")
COMMAND_TIMEOUT = 120.0
# ELF program header type of an interpreter (a dynamically linked executable)
PT_INTERP = 3

UUID_RE = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
NIL_UUID = "00000000-0000-0000-0000-000000000000"
# "/out" as a whole path or the start of one, at the start of a shell word
# (or after a quote, "=", or a redirection)
OUT_RE = re.compile(r"(?<![^\s'\"=<>(])/out(?=/|$|[\s'\";|&)<>])")
OUT_PATH_RE = re.compile(r"(?<![^\s'\"=<>(])/out(/[^\s'\";|&)<>]*)")
# a printk timestamp "[%5lu.%06lu]" at the start of a (dmesg) line
PRINTK_TIME_RE = re.compile(r"^\[ *\d+\.\d{6}\]", re.M)
# the date of an `ls -l` entry (busybox's and coreutils' format, C locale):
# a mode string and a link count start the line, the date follows the size
# (or a device's "major, minor") and a space, and a space follows it
LS_DATE_RE = re.compile(
    r"^([-bcdlps][-rwxsStT]{9}[.+]?[ \t]+\d+[ \t][^\n]*?\d )"
    r"(?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) (?: [1-9]|[12]\d|3[01]) "
    r"(?:(?:[01]\d|2[0-3]):[0-5]\d| \d{4})(?= )", re.M)
# the free / used memory of node meminfo and /proc/meminfo
MEM_FREE_RE = re.compile(r"^((?:Node \d+ )?Mem(?:Free|Used):)[ \t]+\d+ kB$", re.M)

BUSYBOX = "/bin/busybox"
# what the oracle's initramfs did not take from busybox (build-initramfs.sh)
NOT_BUSYBOX = frozenset({"busybox", "modprobe", "insmod", "rmmod", "lsmod", "modinfo", "depmod", "find"})


# ---------------------------------------------------------------- normalisation

def normalise_uuids(text: str) -> str:
    """Rename uuids to ``<uuid-1>``, ``<uuid-2>``, ... in order of first appearance."""
    names: dict[str, str] = {}

    def sub(m: re.Match) -> str:
        u = m.group(0)
        if u == NIL_UUID:
            return u
        if u not in names:
            names[u] = f"<uuid-{len(names) + 1}>"
        return names[u]

    return UUID_RE.sub(sub, text)


def normalise(text: str) -> str:
    """Everything that is random on a real machine (module docstring)."""
    text = normalise_uuids(text)
    text = PRINTK_TIME_RE.sub("[<time>]", text)
    text = LS_DATE_RE.sub(lambda m: m.group(1) + "<date>", text)
    return MEM_FREE_RE.sub(lambda m: m.group(1) + " <kB>", text)


def outputs_match(ours: str, golden: str) -> bool:
    return normalise(ours) == normalise(golden)


def map_out(command: str, outdir: str, modprobe: str = "modprobe") -> str:
    """Point ``/out`` in a recorded command line at ``outdir``, and a recorded
    ``/sbin/modprobe`` at the sandbox's modprobe (``modprobe``: found in
    PATH; replay passes its absolute path), never the host's."""
    command = MODPROBE_RE.sub(lambda m: m.group(1) + modprobe, command)
    return OUT_RE.sub(lambda m: outdir, command)


# ---------------------------------------------------------------- userland

def static_busybox(path: str = BUSYBOX) -> str | None:
    """``path`` if it is a statically linked executable (an ELF file with no
    program interpreter), else None."""
    try:
        with open(path, "rb") as f:
            head = f.read(64)
            if len(head) < 64 or head[:4] != b"\x7fELF" or head[4] != 2 or head[5] != 1 \
                    or not os.access(path, os.X_OK):
                return None      # not a 64-bit little-endian ELF executable
            phoff, = struct.unpack_from("<Q", head, 0x20)
            phentsize, phnum = struct.unpack_from("<HH", head, 0x36)
            f.seek(phoff)
            table = f.read(phentsize * phnum)
    except OSError:
        return None
    types = [struct.unpack_from("<I", table, i * phentsize)[0] for i in range(len(table) // phentsize)]
    return None if PT_INTERP in types else path


def busybox_userland(bindir: str, busybox: str = BUSYBOX) -> bool:
    """Fill ``bindir`` with a symlink to ``busybox`` per applet, as the
    oracle's initramfs had them; False when there is no static busybox."""
    if static_busybox(busybox) is None:
        return False
    listed = subprocess.run([busybox, "--list"], capture_output=True, text=True)
    if listed.returncode != 0:
        return False
    os.makedirs(bindir, exist_ok=True)
    for applet in listed.stdout.split():
        if applet not in NOT_BUSYBOX and "/" not in applet:
            os.symlink(busybox, os.path.join(bindir, applet))
    return True


def unmap_out(text: str, outdir: str) -> str:
    return text.replace(outdir, "/out")


# ---------------------------------------------------------------- recordings

@dataclass
class Step:
    seq: str
    kind: str          # "cmd" or "dump"
    command: str = ""  # cmd: the exact command line; dump: the tag
    rc: int | None = None
    out: str = ""
    err: str = ""


def _read(path: str) -> str:
    try:
        with open(path, "rb") as f:
            return f.read().decode("utf-8", "surrogateescape")
    except FileNotFoundError:
        return ""


def load_session(golden_dir: str) -> list[Step]:
    steps: list[Step] = []
    with open(os.path.join(golden_dir, "commands.tsv"), encoding="utf-8", errors="surrogateescape") as f:
        for line in f:
            line = line.rstrip("\n")
            if not line:
                continue
            seq, rc, command = line.split("\t", 2)
            if rc == "-" and command.startswith("DUMP "):
                steps.append(Step(seq, "dump", command[5:]))
                continue
            base = os.path.join(golden_dir, "cmds", seq)
            exact = _read(base + ".cmd")
            steps.append(Step(seq, "cmd", exact[:-1] if exact.endswith("\n") else (exact or command),
                              int(rc), _read(base + ".out"), _read(base + ".err")))
    return steps


# ---------------------------------------------------------------- running

def _fakesys(*args: str) -> list[str]:
    return [sys.executable, "-m", "fakesys.cli", *args]


def _run(argv: list[str], cwd: str, env: dict, timeout: float) -> tuple[int | None, str, str]:
    """Run argv in its own session, unable to load or unload kernel modules;
    on timeout kill that session (rc None)."""
    proc = subprocess.Popen(argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True,
                            preexec_fn=seccomp.deny_module_loading)
    try:
        out, err = proc.communicate(timeout=timeout)
        rc: int | None = proc.returncode
    except subprocess.TimeoutExpired:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        out, err = proc.communicate()
        rc = None
        err += f"\nfakesys replay: timed out after {timeout:.0f}s\n".encode()
    return rc, out.decode("utf-8", "surrogateescape"), err.decode("utf-8", "surrogateescape")


def _diff(golden: str, ours: str, label: str) -> str:
    lines = difflib.unified_diff(golden.splitlines(keepends=True), ours.splitlines(keepends=True),
                                 f"golden/{label}", f"fakesys/{label}")
    return "".join(l if l.endswith("\n") else l + "\n\\ No newline at end of file\n" for l in lines)


def _pct(n: int, total: int) -> str:
    return f"{100.0 * n / total:.0f}%" if total else "-"


def dump_env(golden: sysdump.Dump) -> dict[str, str]:
    """The SYSDUMP_* settings the recorded dump was taken with, as far as it
    shows them: the extra trees it holds and how deep it went into
    /sys/devices/system/node."""
    extra = [t for t in EXTRA_TREES if t in golden]
    base = "/sys/devices/system/node"
    depth = max([p[len(base):].count("/") for p in golden.entries if p.startswith(base + "/")] or [2])
    env = {"SYSDUMP_NODE_DEPTH": str(max(depth, 2))}
    if extra:
        env["SYSDUMP_EXTRA"] = " ".join(extra)
    return env


def reproduced_sessions() -> dict[str, str]:
    """Golden session name -> the shipped topology that reproduces its
    machine: each topology names its session (``golden = "nfit"``), so a
    new subsystem's recording needs no entry here."""
    out = {}
    for path in sorted(glob.glob(os.path.join(TOPOLOGY_DIR, "*.toml"))):
        with open(path, "rb") as f:
            name = tomllib.load(f).get("golden")
        if name:
            out[name] = path
    return out


def default_topology(golden_dir: str) -> str | None:
    return reproduced_sessions().get(os.path.basename(os.path.normpath(golden_dir)))


def replay(golden_dir: str, topology: str | None = None, verbose: bool = False,
           out: IO[str] | None = None, timeout: float = COMMAND_TIMEOUT) -> int:
    out = out or sys.stdout
    if topology is None:
        topology = default_topology(golden_dir)
        if topology is None:
            print(f"fakesys replay: no default topology for {os.path.basename(os.path.normpath(golden_dir))!r}"
                  f" (known: {', '.join(sorted(reproduced_sessions()))}); pass --topology", file=sys.stderr)
            return 2
    steps = load_session(golden_dir)
    name = f"replay-{uuidlib.uuid4().hex[:10]}"
    tmp = tempfile.mkdtemp(prefix="fakesys-replay-")
    state, outdir = os.path.join(tmp, "state"), os.path.join(tmp, "out")
    os.makedirs(state)
    os.makedirs(outdir)
    env = dict(os.environ, LC_ALL="C", LANG="C")
    modprobe = shlex.quote(os.path.join(BIN_DIR, "modprobe"))
    matched = total = err_matched = 0
    err_mismatch: list[str] = []
    dumps_matched = dumps_total = 0
    try:
        # the commands' userland: the oracle's busybox when there is one (docstring)
        bbdir = os.path.join(tmp, "busybox")
        if busybox_userland(bbdir, BUSYBOX):
            shell = [BUSYBOX, "sh", "-c"]
            cmd_env = dict(env, PATH=bbdir + os.pathsep + env.get("PATH", "/usr/bin:/bin"))
        else:
            print(f"fakesys replay: note: no static busybox at {BUSYBOX} (Debian: busybox-static), so commands"
                  " run with this machine's sh and tools, not the recording's busybox", file=sys.stderr)
            shell, cmd_env = ["sh", "-c"], env
        lifecycle.up(topology, state, name, quiet=True)
        for step in steps:
            if step.kind == "dump":
                golden_dump = os.path.join(golden_dir, "sysfs", step.command + ".txt")
                if not os.path.exists(golden_dump):
                    continue
                dumps_total += 1
                golden = sysdump.load(golden_dump)
                rc, text, err = _run(_fakesys("run", "--name", name, "--", sys.executable, "-m",
                                              "fakesys.sysdump", "--all"), outdir,
                                     dict(env, **dump_env(golden)), timeout)
                if rc != 0:
                    print(f"DUMP  MISMATCH  {step.command}  (sysdump failed rc={rc}: {err.strip()})", file=out)
                    continue
                diffs = [d for d in sysdump.compare(sysdump.parse(text), golden, exclude=DUMP_EXCLUDE)
                         if not (d.kind == "data" and COUNTER_FILES.match(d.path))]
                iomem_note = ""
                golden_iomem = os.path.join(golden_dir, "sysfs", step.command + ".iomem")
                if os.path.exists(golden_iomem):
                    _, ours_iomem, _ = _run(_fakesys("run", "--name", name, "--", "cat", "/proc/iomem"),
                                            outdir, env, timeout)
                    iomem_ok = ours_iomem == _read(golden_iomem)
                    iomem_note = f"; /proc/iomem {'matches' if iomem_ok else 'differs'}"
                    if verbose and not iomem_ok:
                        out.write(_diff(_read(golden_iomem), ours_iomem, step.command + ".iomem"))
                dumps_matched += not diffs
                print(f"DUMP  {'match' if not diffs else 'MISMATCH'}  {step.command}"
                      f"  ({len(diffs)} differences; node counters excluded{iomem_note})", file=out)
                if verbose and diffs:
                    print("\n".join("    " + l for l in sysdump.report(diffs).splitlines()), file=out)
                continue
            total += 1
            for m in OUT_PATH_RE.finditer(step.command):
                os.makedirs(os.path.dirname(outdir + m.group(1)), exist_ok=True)
            rc, sout, serr = _run(_fakesys("run", "--name", name, "--", *shell,
                                           map_out(step.command, outdir, modprobe)), outdir, cmd_env, timeout)
            sout, serr = unmap_out(sout, outdir), unmap_out(serr, outdir)
            ok = rc == step.rc and outputs_match(sout, step.out)
            err_ok = outputs_match(serr, step.err)
            matched += ok
            err_matched += err_ok
            if not err_ok:
                err_mismatch.append(step.seq)
            print(f"{step.seq}  {'match' if ok else 'MISMATCH'}  rc={rc}/{step.rc}  {step.command}", file=out)
            if verbose:
                if not ok:
                    d = _diff(normalise(step.out), normalise(sout), f"{step.seq}.out")
                    if d:
                        out.write(d)
                if not err_ok:
                    out.write(_diff(normalise(step.err), normalise(serr), f"{step.seq}.err"))
            out.flush()
    except runtime.RuntimeErrorFakesys as e:
        print(f"fakesys replay: {e}", file=sys.stderr)
        return 1
    finally:
        lifecycle.down(name)
        runtime.remove_rundir(name)
        shutil.rmtree(tmp, ignore_errors=True)
    if dumps_total:
        print(f"dumps: {dumps_matched}/{dumps_total} match (not scored)", file=out)
    print(f"stderr match: {err_matched}/{total} ({_pct(err_matched, total)})"
          + (f"; differs: {' '.join(err_mismatch)}" if err_mismatch else ""), file=out)
    print(f"match: {matched}/{total} ({_pct(matched, total)})", file=out)
    out.flush()
    return 0 if matched == total else 1
