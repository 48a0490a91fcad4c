"""Monitor commands on the auth database: list, read keys, create, change caps, remove.

Pure like the other mon services. Caps are parsed when they are set, so an invalid string is
refused here (EINVAL, naming the bad token) and never reaches a daemon. Two rules keep
a key from buying more than it has (`caps.covers`): an entity can only be created with
caps its creator holds itself, and a key can only be read by someone holding every
power that key has; daemon profiles need mon `allow *`. `view.caller` is the caller's
parsed caps (None for the monitor's own commands).
"""

from __future__ import annotations

import base64

from sds.common import caps as caps_mod
from sds.common.command import Access, Cli, Param, opt
from sds.common.errors import AlreadyExists, InvalidArgument, NotFound, PermissionDenied
from sds.common.keyring import generate_key
from sds.mon.services.core import CommandResult, MonView, command
from sds.proto import maps_pb2

ENTITY_TYPES = ("client", "osd", "mgr", "mds")
PROTECTED = ("client.admin", "mon.")


ENTITY = Param("entity", help="e.g. client.NAME")
_PAIRS = "SERVICE CAP pairs, e.g. mon 'allow r' osd 'allow rw pool=x'"
CAPS = opt("caps", "any", help="{service: cap string}", cli=Cli(positional=True, kind="pairs", help=_PAIRS))
NEW_CAPS = opt("caps", "any", help="{service: cap string}", cli=Cli(
    positional=True, kind="pairs", help="SERVICE CAP pairs: they replace all of the entity's caps"))
READ_KEYS, CHANGE_ENTITIES = Access(caps="rx"), Access(caps="rwx")  # Ceph's auth needs


def _entity_name(args: dict) -> str:
    name = args["entity"]
    kind, _, rest = name.partition(".")
    if kind not in ENTITY_TYPES or not rest:
        raise InvalidArgument(f"entity '{name}' must look like client.NAME, osd.N, mgr.X or mds.X")
    return name


def _existing(view: MonView, name: str) -> maps_pb2.AuthEntity:
    entity = view.auth.get(name)
    if entity is None:
        raise NotFound(f"entity '{name}' does not exist (see `sds auth ls`)")
    return entity


def _may_hand_out(view: MonView, caps: dict[str, str], what: str) -> None:
    if view.caller is None:
        return
    if not caps_mod.covers(view.caller, caps_mod.parse(caps)):
        raise PermissionDenied(f"{what}: those caps are not all yours to give "
                               "(daemon profiles and `allow *` need mon 'allow *')")


def _may_read_key(view: MonView, entity: maps_pb2.AuthEntity) -> None:
    if view.caller is None:
        return
    try:
        target = caps_mod.parse(dict(entity.caps))
    except InvalidArgument:
        target = caps_mod.parse({s: "allow *" for s in caps_mod.SERVICES})
    if not caps_mod.covers(view.caller, target):
        raise PermissionDenied(f"the key of {entity.name} has powers the caller lacks")


def _keyed(entity: maps_pb2.AuthEntity, **extra) -> dict:
    return {"entity": entity.name, "key": base64.b64encode(entity.key).decode(),
            "caps": dict(entity.caps), **extra}


def _set(entity: maps_pb2.AuthEntity) -> maps_pb2.MapUpdate:
    return maps_pb2.MapUpdate(auth=maps_pb2.AuthIncremental(set=[entity]))


@command("auth ls", access=READ_KEYS)
def cmd_auth_ls(view: MonView, args: dict) -> CommandResult:
    """Entities and their capabilities (never their keys)."""
    return CommandResult({"auth": [{"entity": name, "caps": dict(e.caps)}
                                   for name, e in sorted(view.auth.items())]})


@command("auth get", ENTITY, access=READ_KEYS)
def cmd_auth_get(view: MonView, args: dict) -> CommandResult:
    """One entity with its key (base64) and capabilities."""
    entity = _existing(view, args["entity"])
    _may_read_key(view, entity)
    return CommandResult(_keyed(entity))


@command("auth print-key", ENTITY, access=READ_KEYS)
def cmd_auth_print_key(view: MonView, args: dict) -> CommandResult:
    """Only the key (base64) of one entity."""
    entity = _existing(view, args["entity"])
    _may_read_key(view, entity)
    return CommandResult({"entity": entity.name,
                          "key": base64.b64encode(entity.key).decode()})


@command("auth export", opt("entity", cli=Cli(positional=True)), access=READ_KEYS)
def cmd_auth_export(view: MonView, args: dict) -> CommandResult:
    """Entities with keys and caps, all of them or the one named: a keyring's content."""
    name = args["entity"]
    entities = [_existing(view, name)] if name else \
        [e for _, e in sorted(view.auth.items())]
    for entity in entities:
        _may_read_key(view, entity)
    return CommandResult({"auth": [_keyed(e) for e in entities]})


@command("auth get-or-create", ENTITY, CAPS, write=True, access=CHANGE_ENTITIES)
def cmd_auth_get_or_create(view: MonView, args: dict) -> CommandResult:
    """An entity's key, created (with the given caps) if it does not exist yet."""
    existing = view.auth.get(args["entity"])
    if existing is not None:
        _may_read_key(view, existing)
        asked = args["caps"]
        if asked and caps_mod.check(asked) != dict(existing.caps):
            raise InvalidArgument(f"{existing.name} exists with other caps "
                                  f"({dict(existing.caps)}); change them with `auth caps`")
        return CommandResult(_keyed(existing, created=False))
    name = _entity_name(args)
    caps = caps_mod.check(args["caps"] or {})
    _may_hand_out(view, caps, f"creating {name}")
    entity = maps_pb2.AuthEntity(name=name, key=generate_key(), caps=caps)
    return CommandResult(_keyed(entity, created=True), _set(entity))


@command("auth add", ENTITY, CAPS, opt("key", help="base64"), write=True,
         access=CHANGE_ENTITIES)
def cmd_auth_add(view: MonView, args: dict) -> CommandResult:
    """Create an entity with the given caps and, optionally, a given key (base64)."""
    name = _entity_name(args)
    caps = caps_mod.check(args["caps"] or {})
    raw = args["key"]
    try:
        key = base64.b64decode(raw, validate=True) if raw else generate_key()
    except (ValueError, TypeError):
        raise InvalidArgument("'key' must be base64") from None
    if len(key) < 16:
        raise InvalidArgument("a key needs at least 16 bytes")
    existing = view.auth.get(name)
    if existing is not None:
        if existing.key == key and dict(existing.caps) == caps:
            return CommandResult({"entity": name, "created": False})
        raise AlreadyExists(f"entity {name} exists with another key or caps; "
                            "use `auth caps` or `auth rm` first")
    _may_hand_out(view, caps, f"creating {name}")
    entity = maps_pb2.AuthEntity(name=name, key=key, caps=caps)
    return CommandResult({"entity": name, "created": True, "caps": caps}, _set(entity))


@command("auth caps", ENTITY, NEW_CAPS, write=True, access=CHANGE_ENTITIES)
def cmd_auth_caps(view: MonView, args: dict) -> CommandResult:
    """Replace an entity's caps; its open sessions get the new caps at once."""
    current = _existing(view, _entity_name(args))
    caps = caps_mod.check(args["caps"] or {})
    if current.name in PROTECTED:
        raise PermissionDenied(f"refusing to change the caps of {current.name}: "
                               "the cluster needs them")
    _may_read_key(view, current)  # changing a key's caps is as strong as holding it
    _may_hand_out(view, caps, f"giving {current.name} new caps")
    entity = maps_pb2.AuthEntity(name=current.name, key=current.key, caps=caps)
    return CommandResult({"entity": current.name, "caps": caps}, _set(entity))


@command("auth rm", ENTITY, write=True, access=CHANGE_ENTITIES,
         cli_paths=("auth rm", "auth del"))
def cmd_auth_rm(view: MonView, args: dict) -> CommandResult:
    """Remove an entity: it can no longer authenticate and its sessions are dropped."""
    name = args["entity"]
    entity = _existing(view, name)
    if name in PROTECTED:
        raise PermissionDenied(f"refusing to remove {name}: the cluster needs it")
    _may_read_key(view, entity)
    return CommandResult({"entity": name, "removed": True},
                         maps_pb2.MapUpdate(auth=maps_pb2.AuthIncremental(removed=[name])))
