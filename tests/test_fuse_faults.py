"""A fault of the daemon costs one request, never the mount.

A small tree is served in-process (the server on the trio thread, the file
operations on a worker thread): an attribute whose ``show`` raises, one
whose ``store`` raises, and an injected fault in the FUSE layer itself.
Each failing request gets EIO, the fault is logged with the request's
context (operation, inode or path), and the next request works.
"""

from __future__ import annotations

import errno
import logging
import os

import trio

from conftest import needs_root
from fakesys.fuse.server import Server, mount_options, serve
from fakesys.sysfs.tree import File, Tree

pytestmark = needs_root


def _tree() -> Tree:
    tree = Tree()
    d = tree.root.mkdir("dev0")
    d.add(File("good", 0o444, lambda: "ok\n"))
    d.add(File("bad_show", 0o444, lambda: {}["injected show fault"]))
    d.add(File("bad_store", 0o644, lambda: "x\n", lambda data: 1 / 0))
    d.add(File("good_store", 0o644, lambda: "y\n", lambda data: None))
    tree.root.mkdir("dev1").add(File("other", 0o444, lambda: "other\n"))
    return tree


def _errno(fn, *args) -> int:
    try:
        fn(*args)
    except OSError as e:
        return e.errno
    return 0


def _read(path) -> str:
    with open(path) as f:
        return f.read()


def _write(path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)


async def test_faults_cost_one_request(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="fakesys.fuse")
    tree = _tree()
    server = Server(tree, uid=os.getuid(), gid=os.getgid())
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    async with trio.open_nursery() as nursery:
        await nursery.start(serve, server, str(mnt), mount_options("faulttest"))

        def attributes() -> None:
            # stat of an attribute whose show crashes works; reading it is EIO
            assert os.stat(mnt / "dev0/bad_show").st_mode & 0o777 == 0o444
            assert _errno(_read, mnt / "dev0/bad_show") == errno.EIO
            assert _read(mnt / "dev0/good") == "ok\n"
            # a crashing store is EIO for the writer, and the next write works
            assert _errno(_write, mnt / "dev0/bad_store", b"1\n") == errno.EIO
            _write(mnt / "dev0/good_store", b"1\n")
            assert sorted(os.listdir(mnt / "dev0")) == ["bad_show", "bad_store", "good", "good_store"]
        await trio.to_thread.run_sync(attributes)

        # a fault in the server itself (here: building a node's attributes)
        real_attr = server._attr
        victim = tree.root.walk("dev1/other")

        def broken_attr(node):
            if node is victim:
                raise RuntimeError("injected handler fault")
            return real_attr(node)
        server._attr = broken_attr

        def handler() -> None:
            assert _errno(os.stat, mnt / "dev1/other") == errno.EIO
            assert _errno(os.listdir, mnt / "dev1") == errno.EIO
            assert _read(mnt / "dev0/good") == "ok\n"
        await trio.to_thread.run_sync(handler)
        server._attr = real_attr

        def recovered() -> None:
            assert _read(mnt / "dev1/other") == "other\n"
            assert os.listdir(mnt / "dev1") == ["other"]
        await trio.to_thread.run_sync(recovered)
        # show (at stat; the read may get its EIO from the front), store, lookup, readdir
        assert server.faults >= 4
        nursery.cancel_scope.cancel()

    text = caplog.text
    assert "show /dev0/bad_show failed" in text and "injected show fault" in text
    assert "store" in text and "/dev0/bad_store" in text and "ZeroDivisionError" in text
    assert "FUSE lookup failed (inode" in text and "name 'other'" in text
    assert "FUSE readdir failed (fh" in text and "/dev1" in text
    assert "injected handler fault" in text
