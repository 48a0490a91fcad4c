"""Inode numbers handed to clients, which give them to files they create themselves.

A mount that holds a directory's exclusive cap answers a create there at once and tells
the MDS later (an async create, as CephFS clients do with the inode ranges their MDS
session is given). It needs the new file's number in advance: ALLOC_INOS takes a range
from the allocator (already durable, so no MDS ever gives them out again) and notes it
here under the client's name, which survives its reconnects. A CREATE naming one of them
(MdsRequest.new_ino) takes it, once; a number given to another client is refused. The
memory is bounded: PER_CLIENT numbers for each of the MAX_CLIENTS latest clients (an
older client's numbers are forgotten; its creates with them then follow the rule of
replayed creates: a number an earlier MDS handed out that names no inode).
"""

from __future__ import annotations

from collections import OrderedDict

PER_CLIENT = 512
MAX_CLIENTS = 256


class InoDelegations:
    def __init__(self, per_client: int = PER_CLIENT, max_clients: int = MAX_CLIENTS):
        self.per_client = per_client
        self.max_clients = max_clients
        self._given: OrderedDict[str, set[int]] = OrderedDict()

    def room(self, client: str) -> int:
        """How many more numbers `client` may hold."""
        return self.per_client - len(self._given.get(client, ()))

    def give(self, client: str, first: int, count: int) -> None:
        held = self._given.setdefault(client, set())
        held.update(range(first, first + count))
        self._given.move_to_end(client)
        while len(self._given) > self.max_clients:
            self._given.popitem(last=False)

    def take(self, client: str, ino: int) -> bool:
        """Was `ino` given to `client` and not used yet? It is used now."""
        held = self._given.get(client)
        if held is None or ino not in held:
            return False
        held.discard(ino)
        return True

    def held(self, client: str) -> int:
        return len(self._given.get(client, ()))
