"""Native async client library (librados-like): `Rados`, `IoCtx`, and a sync wrapper."""

from sds.client.rados import IoCtx, ObjectStat, Rados
from sds.client.sync import SyncRados

__all__ = ["IoCtx", "ObjectStat", "Rados", "SyncRados"]
