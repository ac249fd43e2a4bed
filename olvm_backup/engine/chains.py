"""What the engine links child to parent (a VM's checkpoints, a disk's volumes), put in chain order."""
from __future__ import annotations

from typing import Callable, Iterable, TypeVar

T = TypeVar("T")


def linked_order(items: Iterable[T], id_of: Callable[[T], str], parent_of: Callable[[T], str | None]) -> list[T]:
    """Oldest first by the parent links: an item whose parent is not among them starts a chain (in the order
    given), each followed by its child; what the links leave out (a loop, a second child) follows in the order
    given."""
    items = list(items)
    ids = {id_of(i) for i in items}
    children = {parent_of(i): i for i in items if parent_of(i) in ids}
    ordered: list[T] = []
    for root in (i for i in items if parent_of(i) not in ids):
        node: T | None = root
        while node is not None and node not in ordered:
            ordered.append(node)
            node = children.get(id_of(node))
    return ordered + [i for i in items if i not in ordered]
