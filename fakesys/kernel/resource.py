"""The iomem resource tree (kernel/resource.c) and its ``/proc/iomem`` view.

Every range of physical address space that someone owns is a node of one
tree: firmware puts System RAM, Reserved, Soft Reserved and Persistent
Memory in at boot; drivers request their ranges below those.  The rules
that matter to the tools:

* ``request_region`` (``__request_region``) walks down through any
  resource that is not BUSY and fully contains the request, and fails
  when the request overlaps a BUSY one or straddles a boundary.  That is
  how ``dax0.0`` lands under ``Soft Reserved`` or ``Persistent Memory``
  and how a range kmem could not give back keeps device_dax (and kmem
  itself) out: EBUSY.
* ``insert`` (``insert_resource``) adopts the existing resources that lie
  inside the new one as its children: ``hmem.0`` wraps ``Soft Reserved``.
* ``remove`` (``remove_resource``) moves the children up to the parent;
  ``release`` (``release_resource``) drops the whole subtree.

The rendering is ``r_show()``'s: two spaces per level, addresses in hex
with at least 8 digits (4 if the whole tree ends below 64 KiB).
"""

from __future__ import annotations

from dataclasses import dataclass, field

IORESOURCE_MEM = 0x00000200
IORESOURCE_SYSRAM = 0x01000000
IORESOURCE_BUSY = 0x80000000
IORESOURCE_SYSTEM_RAM = IORESOURCE_MEM | IORESOURCE_SYSRAM


@dataclass(eq=False)
class Resource:
    name: str
    start: int
    end: int                       # inclusive
    flags: int = IORESOURCE_MEM
    parent: "Resource | None" = None
    children: list["Resource"] = field(default_factory=list)   # sorted by start

    @property
    def size(self) -> int:
        return self.end - self.start + 1

    @property
    def busy(self) -> bool:
        return bool(self.flags & IORESOURCE_BUSY)

    def __repr__(self) -> str:
        return f"<Resource {self.start:#x}-{self.end:#x} {self.name!r}>"

    def walk(self, depth: int = 0):
        for child in self.children:
            yield child, depth
            yield from child.walk(depth + 1)


class ResourceTree:
    """``iomem_resource``: the root spans the whole physical address space."""

    def __init__(self, end: int = (1 << 52) - 1) -> None:
        self.root = Resource("PCI mem", 0, end)

    # -- lookups ------------------------------------------------------------

    def find(self, start: int, end: int, name: str | None = None) -> Resource | None:
        """The resource with exactly this range (and name, if given)."""
        for res, _ in self.root.walk():
            if res.start == start and res.end == end and (name is None or res.name == name):
                return res
        return None

    def resources(self) -> list[Resource]:
        return [res for res, _ in self.root.walk()]

    # -- the kernel's operations -------------------------------------------

    @staticmethod
    def _conflict(parent: Resource, start: int, end: int) -> Resource | None:
        """__request_resource(): the parent itself if the range does not fit
        in it, the first overlapping child, or None (free)."""
        if end < start or start < parent.start or end > parent.end:
            return parent
        for child in parent.children:
            if child.start <= end and start <= child.end:
                return child
        return None

    @staticmethod
    def _link(parent: Resource, res: Resource) -> None:
        res.parent = parent
        parent.children.append(res)
        parent.children.sort(key=lambda r: r.start)

    def request_region(self, start: int, size: int, name: str,
                       flags: int = IORESOURCE_MEM | IORESOURCE_BUSY,
                       parent: Resource | None = None) -> Resource | None:
        """__request_region(): a BUSY resource, or None when the range is taken."""
        parent = parent or self.root
        end = start + size - 1
        while True:
            conflict = self._conflict(parent, start, end)
            if conflict is None:
                res = Resource(name, start, end, flags)
                self._link(parent, res)
                return res
            if conflict is parent or conflict.busy:
                return None
            if conflict.start <= start and end <= conflict.end:
                parent = conflict      # descend into a non-busy container
                continue
            return None

    def insert(self, name: str, start: int, end: int, flags: int = IORESOURCE_MEM,
               parent: Resource | None = None) -> Resource | None:
        """insert_resource(): below the deepest resource that strictly
        contains the range, adopting the siblings it contains (one of
        exactly the same range too); None on a partial overlap."""
        parent = parent or self.root
        while True:
            inner = [c for c in parent.children if c.start <= end and start <= c.end]
            if not inner:
                break
            first = inner[0]
            if first.start <= start and end <= first.end and (first.start, first.end) != (start, end):
                parent = first
                continue
            if all(start <= c.start and c.end <= end for c in inner):
                break
            return None
        res = Resource(name, start, end, flags)
        adopted = [c for c in parent.children if start <= c.start and c.end <= end]
        for c in adopted:
            parent.children.remove(c)
            self._link(res, c)
        self._link(parent, res)
        return res

    def remove(self, res: Resource) -> None:
        """remove_resource(): the children take its place."""
        parent = res.parent
        if parent is None or res not in parent.children:
            return
        parent.children.remove(res)
        for c in res.children:
            self._link(parent, c)
        res.children = []
        res.parent = None

    def release(self, res: Resource) -> None:
        """release_resource(): the resource and everything below it go."""
        parent = res.parent
        if parent is not None and res in parent.children:
            parent.children.remove(res)
        res.parent = None

    def release_region(self, start: int, size: int) -> None:
        """__release_region(): the BUSY resource of exactly this range."""
        end = start + size - 1
        for res, _ in self.root.walk():
            if res.start == start and res.end == end and res.busy:
                self.release(res)
                return

    # -- /proc/iomem ------------------------------------------------------------

    def render(self) -> str:
        width = 4 if self.root.end < 0x10000 else 8
        return "".join(f"{'  ' * depth}{res.start:0{width}x}-{res.end:0{width}x} : {res.name}\n"
                       for res, depth in self.root.walk())


def parse_iomem(text: str) -> list[tuple[int, int, int, str]]:
    """Lines in /proc/iomem format: (depth, start, end, name); the depth is
    the indentation (two spaces per level)."""
    out = []
    for line in text.splitlines():
        if not line.strip():
            continue
        depth = (len(line) - len(line.lstrip(" "))) // 2
        span, sep, name = line.strip().partition(" : ")
        if not sep:
            raise ValueError(f"not an iomem line: {line!r}")
        lo, _, hi = span.partition("-")
        out.append((depth, int(lo, 16), int(hi, 16), name))
    return out
