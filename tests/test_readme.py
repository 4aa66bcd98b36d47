"""The README's documented rehearsal runs as written, with the real tools.

#5 asks for "CXL memory becomes a NUMA node in a lower tier" as one
documented example: the shell block under "Rehearsal" in README.md is run
here verbatim (under a name of its own), and what its comments promise is
checked in the order it prints it.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess

from conftest import FAKESYS, ROOT, needs_ndctl, needs_numactl, needs_root

pytestmark = [needs_root, needs_ndctl, needs_numactl]

HEADING = "### Rehearsal: CXL memory becomes a NUMA node in a lower tier"


def rehearsal_block() -> str:
    with open(os.path.join(ROOT, "README.md")) as f:
        text = f.read()
    section = text.split(HEADING, 1)[1]
    return re.search(r"```sh\n(.*?)```", section, re.S).group(1)


def test_the_cxl_rehearsal_does_what_the_readme_says():
    block = rehearsal_block()
    name = f"readme-{os.getpid()}"
    assert block.count("--name cxl") == 3    # up, run, down
    script = (f"fakesys() {{ {shlex.join(FAKESYS)} \"$@\"; }}\nset -e\n"
              + block.replace("--name cxl", f"--name {name}"))
    try:
        proc = subprocess.run(["bash", "-c", script], cwd=ROOT, capture_output=True,
                              text=True, timeout=120)
    finally:
        subprocess.run(FAKESYS + ["down", "--name", name], capture_output=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    promised = [
        '"target_node":2',                                          # dax0.0 on node 2
        "0-1\n",                                                    # online before
        '"mode":"system-ram"',
        "available: 3 nodes (0-2)",
        "node 2 cpus:\n",                                           # no CPUs
        "node 2 size: 512 MB",
        "memory_tier22/nodelist:2\n",
        "memory_tier4/nodelist:0-1\n100\n",                         # then read latency
        "  100000000-11fffffff : Soft Reserved\n"
        "    100000000-11fffffff : dax0.0\n"
        "      100000000-11fffffff : System RAM (kmem)\n",
        '"mode":"devdax"',
        "0-1\n",                                                    # online again
    ]
    at = 0
    for piece in promised:
        found = out.find(piece, at)
        assert found >= 0, f"{piece!r} not printed after offset {at}:\n{out}"
        at = found + len(piece)
