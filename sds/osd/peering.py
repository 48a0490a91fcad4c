"""Peering and recovery of one placement group on one OSD, as a pure state machine.

Like sds.mon.paxos this core does no I/O: the driver (sds/osd/pg.py) feeds it map changes
(`advance_map`), protocol messages (`step`), clock ticks (`tick`), local writes (`write`,
`replica_write`) and recovery completions (`on_push`), and every call returns a `Ready`
holding durable writes, messages and recovery actions. No sockets, sleeps or randomness:
the same inputs always give the same outputs (tests/sim/peering_sim.py relies on it).

sds/osd/pg.py drives it in the running OSD; tests/sim/peering_sim.py drives it in a
seeded simulation with message loss, reordering and crashes.

Versions
    A log entry's version is an (epoch, v) pair compared as a tuple (Ceph's eversion_t):
    `epoch` is the first map epoch of the interval whose primary wrote it, `v` grows by one
    along a history. Only one primary writes in an interval, so a version names one entry;
    entries are also compared by (oid, reqid, delete) to be safe. Histories that forked
    (an old primary wrote entries nobody else kept) are told apart by the epoch: the fork
    made in a later interval always sorts above the dead interval's entries.

PG info and log (per member)
    last_update = head of the log; log_tail = every entry above it is still in the log;
    missing = oid -> Need (the state this member must fetch); last_complete = the newest
    version below every missing need (everything up to it is present locally). A member's
    store always agrees with its log for every object not in `missing`.

Peering (primary only; Ceph PeeringState: GetInfo -> GetLog -> GetMissing -> Active)
    1. GetInfo: query info + log + missing from the acting set and from every up OSD of a
       past interval since the last recovered epoch (`lec`) that may have gone read-write.
       If such an interval has no member left to ask, the PG is `incomplete` and says whom
       it waits for. Every query reply carries the whole log (bounded by log_max).
    2. The authoritative log is the highest last_update (ties: the primary, then acting
       members, then the lowest id).
    3. A member whose last_update is below the authoritative log_tail cannot be recovered
       from the log: both it and the authority are asked for object listings (`scan`,
       answered by the driver from its store) and its missing set is the difference
       (backfill). Otherwise its missing set is: objects of authoritative entries after the
       point where the logs agree, objects of its divergent entries (entries the authority
       does not have), and its old missing objects. Every missing object is re-fetched as
       the authority holds it now, so divergent writes are rolled back and deleted objects
       are removed.
    4. Activate: every acting member adopts the authoritative log and persists its missing
       set; once all acked, the PG is active (serving I/O if acting >= min_size) and
       recovery runs in the background.

Recovery
    At most `max_active` `Recover` actions in flight (objects missing on the primary first,
    then on log-recovered replicas, then on backfill targets); `need_object` jumps the queue
    for an op blocked on a degraded object (up to `max_active` more). The driver copies the
    object from `source` to every target; the target calls `on_push`, which persists the
    missing-set removal (atomically with the object write) and acks the primary. When no
    acting member misses anything the PG is recovered: `lec` becomes this interval's epoch
    and older past intervals are forgotten.

Durable layout (values are JSON bytes), to be namespaced per PG by the driver:
    peering/info                  last_update, log_tail, last_complete, les, lec,
                                  map_epoch, interval, past_intervals
    peering/log/<epoch>.<v>       one log entry (zero-padded so key order = version order)
    peering/missing/<oid>         Need of one missing object
The driver applies `Ready.persist` atomically with the object change of the same call,
then sends `Ready.messages`, runs `Ready.recover` and, on `Ready.purge`, deletes its stray
copy. Everything the core decides comes out this way, or through a method's return value
(`next_version`, the version `write` hands out); the driver tells it what it found through
methods (`set_inconsistent`), never by writing its fields.
"""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass, field

from sds.common.errors import Retry

Version = tuple[int, int]
ZERO: Version = (0, 0)

KEY_INFO = "peering/info"
LOG_PREFIX = "peering/log/"
MISSING_PREFIX = "peering/missing/"

PRIMARY, REPLICA, STRAY = "primary", "replica", "stray"
# Primary phases.
GET_INFO, SCAN, ACTIVATING, ACTIVE, INCOMPLETE = (
    "get_info", "scan", "activating", "active", "incomplete")
RESTARTED = "restarted"  # volatile state lost; waits for a new interval

STATE_ORDER = ["stale", "creating", "active", "clean", "incomplete", "recovery_unfound",
               "peering", "activating", "recovering", "recovery_wait", "undersized",
               "degraded", "remapped", "inconsistent", "backfilling", "backfill_wait", "peered"]


class NotActive(Retry):
    """The PG does not serve client I/O right now; resend later."""


class ObjectDegraded(Retry):
    """The object is missing on an acting member: call need_object and wait."""


def log_key(version: Version) -> str:
    return f"{LOG_PREFIX}{version[0]:010d}.{version[1]:016d}"


@dataclass(frozen=True)
class Entry:
    """One PG log entry: the write of `oid` at `version` by client request `reqid`;
    `prior` is the object's version before it (None: it did not exist), so a divergent
    entry can be rolled back to the state the authoritative history still has."""

    version: Version
    oid: str
    reqid: str = ""
    delete: bool = False
    prior: Version | None = None

    def encode(self) -> list:
        return [list(self.version), self.oid, self.reqid, self.delete,
                list(self.prior) if self.prior else None]

    @classmethod
    def decode(cls, raw: list) -> Entry:
        return cls(tuple(raw[0]), raw[1], raw[2], raw[3], tuple(raw[4]) if raw[4] else None)


@dataclass(frozen=True)
class Need:
    """The state a member must fetch: the object at `version`, or absent if `delete`
    (`version` is then the deleting entry's, or ZERO when only a listing said so)."""

    version: Version
    delete: bool = False

    def encode(self) -> list:
        return [list(self.version), self.delete]

    @classmethod
    def decode(cls, raw: list) -> Need:
        return cls(tuple(raw[0]), raw[1])

    @classmethod
    def of(cls, held: Version | None) -> Need:
        return cls(ZERO, True) if held is None else cls(held)

    def matches(self, held: Version | None) -> bool:
        """Does an object held at `held` (None = absent) satisfy this need?"""
        return held is None if self.delete else held == self.version


@dataclass(frozen=True)
class MapView:
    """What one OSD map says about this PG: acting set, incarnations, pool sizes."""

    epoch: int
    acting: tuple[int, ...]
    up: frozenset[int]
    up_from: dict[int, int]
    size: int
    min_size: int

    def ident(self) -> tuple:
        return (self.acting, tuple(self.up_from.get(o, 0) for o in self.acting),
                self.size, self.min_size)


@dataclass
class PastInterval:
    first: int
    last: int
    acting: tuple[int, ...]


@dataclass
class Message:
    """One peering message; plain data so the driver can encode it."""

    kind: str       # query, info, scan, scan_reply, activate, activated, recovered, lec, purge
    src: int
    dst: int
    epoch: int      # the interval (its first epoch) the sender is in
    last_update: Version = ZERO
    log_tail: Version = ZERO
    lec: int = 0
    log: list[Entry] = field(default_factory=list)
    missing: dict[str, Need] = field(default_factory=dict)
    objects: dict[str, Version] = field(default_factory=dict)
    oid: str = ""


@dataclass
class Recover:
    """Copy `oid` from `source` to every target (need.delete / absent: remove it there)."""

    oid: str
    need: Need
    source: int
    targets: list[int]
    epoch: int
    urgent: bool = False  # a client op waits for it: do not queue it behind the others


@dataclass
class Ready:
    """Effects of one call: persist (atomically with the caller's object change), then send
    messages and start recoveries."""

    persist: dict[str, bytes | None] = field(default_factory=dict)
    messages: list[Message] = field(default_factory=list)
    recover: list[Recover] = field(default_factory=list)
    purge: bool = False   # a stray whose PG is recovered elsewhere: delete this copy


@dataclass
class _Peer:
    last_update: Version
    log_tail: Version
    lec: int
    log: dict[Version, Entry]
    missing: dict[str, Need]


def _common(peer: _Peer, auth: _Peer) -> Version | None:
    """Newest version both histories contain, if the authority's log still covers it; None:
    no overlap, the peer needs backfill. A version names one entry, which was appended to
    one history, so sharing it means sharing everything before it."""
    shared = (peer.log.keys() | {peer.log_tail}) & (auth.log.keys() | {auth.log_tail})
    shared = {v for v in shared if v == auth.log_tail or peer.log.get(v, auth.log.get(v))
              == auth.log.get(v, peer.log.get(v))}
    return max(shared, default=None)


@dataclass
class _Op:
    need: Need
    source: int
    targets: set[int]
    started: int
    urgent: bool = False


class PeeringCore:
    """Peering + recovery of one PG on OSD `whoami`; see the module docstring."""

    def __init__(self, whoami: int, durable: dict[str, bytes], max_active: int = 3,
                 log_max: int = 3000, retry_ticks: int = 5):
        assert max_active >= 1 and log_max >= 1 and retry_ticks >= 1
        self.whoami = whoami
        self.max_active = max_active
        self.log_max = log_max
        self.retry_ticks = retry_ticks
        self._ready = Ready()
        self._load(durable)
        self.role = STRAY
        self.phase = RESTARTED if self.interval else GET_INFO
        self.up: frozenset[int] = frozenset()
        self.prev_epoch = self.interval.epoch if self.interval else 0  # previous interval
        self.stale = False          # set by the driver when the mons lost track of the PG
        self.inconsistent = False   # set_inconsistent: scrub or a repair found a bad copy
        self.ticks = 0
        self._reset_volatile()

    # ------------------------------------------------------------------ durable state

    def _load(self, durable: dict[str, bytes]) -> None:
        info = json.loads(durable.get(KEY_INFO, b"{}"))
        self.last_update: Version = tuple(info.get("last_update", ZERO))
        self.log_tail: Version = tuple(info.get("log_tail", ZERO))
        self.les = info.get("les", 0)   # interval epoch of the last activation
        self.lec = info.get("lec", 0)   # interval epoch of the last full recovery
        self.map_epoch = info.get("map_epoch", 0)
        raw = info.get("interval")
        self.interval: MapView | None = None
        if raw:
            self.interval = MapView(raw[0], tuple(raw[1]), frozenset(),
                                    {int(k): v for k, v in raw[2].items()}, raw[3], raw[4])
        self.past = [PastInterval(a, b, tuple(c)) for a, b, c in info.get("past", [])]
        self.log: dict[Version, Entry] = {}
        self.missing: dict[str, Need] = {}
        for key, value in sorted(durable.items()):
            if key.startswith(LOG_PREFIX):
                entry = Entry.decode(json.loads(value))
                self.log[entry.version] = entry
            elif key.startswith(MISSING_PREFIX):
                self.missing[key[len(MISSING_PREFIX):]] = Need.decode(json.loads(value))
        self._drop_after_hole()
        assert all(self.log_tail < v <= self.last_update for v in self.log), "log out of range"

    def _drop_after_hole(self) -> None:
        """A log with a hole (v runs one by one along a history) lost a commit while later
        ones of the same store batch succeeded, just before the OSD stopped for it. Keep
        the log up to the hole only: peering then re-fetches every object written after
        it as the authority holds it, so the store agrees with the log again."""
        expect = self.log_tail[1] + 1
        for i, version in enumerate(self.log):
            if version[1] != expect:
                dropped = list(self.log)[i:]
                for v in dropped:
                    del self.log[v]
                    self._ready.persist[log_key(v)] = None
                self.last_update = next(reversed(self.log), self.log_tail)
                return  # the first map persists the info (advance_map) with these removals
            expect += 1

    def _save_info(self) -> None:
        iv = self.interval
        info = {"last_update": self.last_update, "log_tail": self.log_tail,
                "last_complete": self.last_complete(), "les": self.les, "lec": self.lec,
                "map_epoch": self.map_epoch, "past": [[p.first, p.last, p.acting]
                                                      for p in self.past],
                "interval": [iv.epoch, iv.acting, iv.up_from, iv.size, iv.min_size]
                if iv else None}
        self._ready.persist[KEY_INFO] = json.dumps(info).encode()

    def _set_missing(self, oid: str, need: Need | None) -> None:
        if need is None:
            self.missing.pop(oid, None)
            self._ready.persist[MISSING_PREFIX + oid] = None
        else:
            self.missing[oid] = need
            self._ready.persist[MISSING_PREFIX + oid] = json.dumps(need.encode()).encode()

    def _append(self, entry: Entry) -> None:
        assert entry.version > self.last_update, (entry, self.last_update)
        self.log[entry.version] = entry
        self.last_update = entry.version
        self._ready.persist[log_key(entry.version)] = json.dumps(entry.encode()).encode()
        excess = len(self.log) - self.log_max
        if excess > 0:  # the log dict is kept in version order: the oldest come first
            for version in list(itertools.islice(self.log, excess)):
                del self.log[version]
                self._ready.persist[log_key(version)] = None
                self.log_tail = version

    def _adopt(self, entries: list[Entry], tail: Version, head: Version,
               missing: dict[str, Need]) -> None:
        """Replace this member's log and missing set with the authoritative ones."""
        new = {e.version: e for e in sorted(entries, key=lambda e: e.version)}
        for version in self.log:
            if version not in new:
                self._ready.persist[log_key(version)] = None
        for version, entry in new.items():
            if self.log.get(version) != entry:
                self._ready.persist[log_key(version)] = json.dumps(entry.encode()).encode()
        self.log, self.log_tail, self.last_update = new, tail, head
        for oid in list(self.missing):
            if oid not in missing:
                self._set_missing(oid, None)
        for oid, need in missing.items():
            if self.missing.get(oid) != need:
                self._set_missing(oid, need)

    def last_complete(self) -> Version:
        """Newest version up to which this member holds everything its log says."""
        if not self.missing:
            return self.last_update
        first = min(n.version for n in self.missing.values())
        below = [v for v in self.log if v < first]
        if below:
            return max(below)
        return self.log_tail if self.log_tail < first else ZERO

    def _flush(self) -> Ready:
        ready, self._ready = self._ready, Ready()
        return ready

    # ------------------------------------------------------------------ maps and intervals

    def advance_map(self, view: MapView) -> Ready:
        """Feed every map epoch in order (after a restart: all since `map_epoch`)."""
        assert view.epoch > self.map_epoch, (view.epoch, self.map_epoch)
        old = self.interval
        changed = old is None or old.ident() != view.ident()
        if changed:
            self.prev_epoch = old.epoch if old is not None else 0
            if old is not None and len(old.acting) >= old.min_size:
                self.past.append(PastInterval(old.epoch, view.epoch - 1, old.acting))
            self.interval = view
        else:
            self.interval = MapView(old.epoch, view.acting, view.up, view.up_from, view.size,
                                    view.min_size)
        self.map_epoch = view.epoch
        up_changed = view.up != self.up
        self.up = view.up
        self._save_info()
        if changed:
            self._start_interval()
        elif self.phase == RESTARTED and self.whoami not in view.acting:
            self.role, self.phase = STRAY, GET_INFO  # a restarted stray may answer queries
        elif self.role == PRIMARY and up_changed:
            self._on_up_change()
        return self._flush()

    def _start_interval(self) -> None:
        iv = self.interval
        self._reset_volatile()
        self.phase = GET_INFO
        if iv.acting and iv.acting[0] == self.whoami:
            self.role = PRIMARY
            self._peers[self.whoami] = self._own_peer()
            self._probe()
        else:
            self.role = REPLICA if self.whoami in iv.acting else STRAY

    def _reset_volatile(self) -> None:
        self._peers: dict[int, _Peer] = {}
        self._scans: dict[int, dict[str, Version]] = {}
        self._asked: dict[int, int] = {}           # osd -> tick of the last query/scan
        self._auth: int | None = None
        self._pmissing: dict[int, dict[str, Need] | None] = {}  # all probed osds
        self._backfill: set[int] = set()
        self._activated: set[int] = set()
        self._ops: dict[str, _Op] = {}
        self._urgent: set[str] = set()
        self._unfound: set[str] = set()
        self._done_pairs = 0
        self._waiting_down: list[int] = []
        self._replica_active = False

    def _own_peer(self) -> _Peer:
        return _Peer(self.last_update, self.log_tail, self.lec, dict(self.log),
                     dict(self.missing))

    def _relevant_past(self) -> list[PastInterval]:
        lec = max([self.lec] + [p.lec for p in self._peers.values()])
        return [p for p in self.past if p.last >= lec]

    def _probe_targets(self) -> set[int]:
        targets = set(self.interval.acting)
        for past in self._relevant_past():
            targets |= set(past.acting) & self.up
        return targets

    def _probe(self) -> None:
        """GetInfo: ask whoever has not answered; decide when everyone did."""
        assert self.role == PRIMARY
        targets = self._probe_targets()
        for osd in sorted(targets - set(self._peers)):
            self._send(osd, "query")
            self._asked[osd] = self.ticks
        if targets <= set(self._peers):
            self._choose()

    def _on_up_change(self) -> None:
        if self.phase in (GET_INFO, INCOMPLETE):
            self.phase = GET_INFO
            self._probe()
        elif self.phase == ACTIVE:  # a stray source may have gone away
            for osd in list(self._pmissing):
                if osd not in self.up and osd not in self.interval.acting:
                    self._pmissing[osd] = None
            for oid, op in list(self._ops.items()):
                if op.source not in self.up:
                    del self._ops[oid]
            self._kick()

    # ------------------------------------------------------------------ messages

    def _send(self, dst: int, kind: str, **fields) -> None:
        self._ready.messages.append(Message(kind, self.whoami, dst, self.interval.epoch,
                                            **fields))

    def step(self, msg: Message) -> Ready:
        """Handle one message; messages from another interval are ignored."""
        assert msg.dst == self.whoami, msg
        if msg.kind == "query":  # our durable info is valid whatever interval we are in
            self._on_query(msg)
            return self._flush()
        if self.interval is None or self.phase == RESTARTED:
            return self._flush()
        if msg.epoch != self.interval.epoch:
            self._relabel(msg)
            if msg.epoch != self.interval.epoch:
                return self._flush()
        getattr(self, f"_on_{msg.kind}")(msg)
        return self._flush()

    def _relabel(self, msg: Message) -> None:
        """An OSD that skipped map epochs dates the same interval later than one that saw
        them all. A member that has not activated yet follows its primary's date, so both
        sides of the interval agree on it (every date is after the previous interval)."""
        iv = self.interval
        if (self.role != PRIMARY and not self._replica_active and iv.acting
                and msg.src == iv.acting[0] and self.prev_epoch < msg.epoch <= self.map_epoch):
            self.interval = MapView(msg.epoch, iv.acting, iv.up, iv.up_from, iv.size,
                                    iv.min_size)
            self._save_info()

    def _on_query(self, msg: Message) -> None:
        self._ready.messages.append(Message(
            "info", self.whoami, msg.src, msg.epoch, last_update=self.last_update,
            log_tail=self.log_tail, lec=self.lec, log=[self.log[v] for v in sorted(self.log)],
            missing=dict(self.missing)))

    def _on_info(self, msg: Message) -> None:
        if self.role != PRIMARY or self.phase not in (GET_INFO, INCOMPLETE):
            return
        if msg.src not in self._peers:
            self._peers[msg.src] = _Peer(msg.last_update, msg.log_tail, msg.lec,
                                         {e.version: e for e in msg.log}, dict(msg.missing))
            self._probe()

    def _on_scan_reply(self, msg: Message) -> None:
        if self.role != PRIMARY or self.phase != SCAN or msg.src in self._scans:
            return
        self._scans[msg.src] = dict(msg.objects)
        if self._scan_targets() <= set(self._scans):
            self._activate()

    def _on_activate(self, msg: Message) -> None:
        if self.role != REPLICA:
            return
        if not self._replica_active:  # a resent activate must not undo later writes
            self._adopt(msg.log, msg.log_tail, msg.last_update, msg.missing)
            self.les, self.lec = self.interval.epoch, max(self.lec, msg.lec)
            self._trim_past()
            self._save_info()
            self._replica_active = True
        self._send(msg.src, "activated")

    def _on_activated(self, msg: Message) -> None:
        if self.role != PRIMARY or self.phase != ACTIVATING:
            return
        self._activated.add(msg.src)
        if self._activated >= set(self.interval.acting):
            self.phase = ACTIVE
            self._kick()
            self._check_recovered()

    def _on_recovered(self, msg: Message) -> None:
        if self.role == PRIMARY and self.phase == ACTIVE:
            self._object_done(msg.oid, msg.src)

    def _on_lec(self, msg: Message) -> None:
        if msg.lec > self.lec:
            self.lec = msg.lec
            self._trim_past()
            self._save_info()

    def _on_purge(self, msg: Message) -> None:
        if self.role == STRAY and self.interval.acting and msg.src == self.interval.acting[0]:
            self._ready.purge = True

    def _trim_past(self) -> None:
        self.past = [p for p in self.past if p.last >= self.lec]

    # ------------------------------------------------------------------ choosing and activating

    def _choose(self) -> None:
        """All probed members answered: check past intervals, pick the authority."""
        self._waiting_down = []
        for past in self._relevant_past():
            if not set(past.acting) & set(self._peers):
                self._waiting_down = sorted(set(past.acting))
                self.phase = INCOMPLETE
                return
        acting = self.interval.acting
        self._auth = max(self._peers, key=lambda o: (
            self._peers[o].last_update, o == self.whoami, o in acting, -o))
        auth = self._peers[self._auth]
        self._backfill = {o for o in acting
                          if o != self._auth and _common(self._peers[o], auth) is None}
        if self._backfill:
            self.phase = SCAN
            for osd in sorted(self._scan_targets()):
                self._send(osd, "scan")
                self._asked[osd] = self.ticks
        else:
            self._activate()

    def _scan_targets(self) -> set[int]:
        return self._backfill | {self._auth}

    def _auth_state(self, auth: _Peer, latest: dict[str, Entry], oid: str,
                    otherwise: Need) -> Need:
        """The state the authority has (or must get) of `oid`; `otherwise` when neither
        its log nor its missing set says (unchanged since before its log tail)."""
        entry = latest.get(oid)
        if entry is not None:
            return Need(entry.version, entry.delete)
        return auth.missing.get(oid, otherwise)

    def _missing_of(self, osd: int, auth: _Peer, latest: dict[str, Entry]) -> dict | None:
        """What `osd` lacks of the authoritative history; None if unknown (needs backfill)."""
        peer = self._peers[osd]
        if osd == self._auth:
            return dict(peer.missing)
        common = _common(peer, auth)
        if common is None:
            if osd not in self._scans:
                return None
            mine, theirs = self._scans[osd], self._scans[self._auth]
            oids = {o for o in mine.keys() | theirs.keys() if mine.get(o) != theirs.get(o)}
            needs = {o: self._auth_state(auth, latest, o, Need.of(theirs.get(o)))
                     for o in oids | auth.missing.keys()}
            return {o: n for o, n in needs.items() if not n.matches(mine.get(o))}
        divergent = sorted((e for v, e in peer.log.items() if v > common),
                           key=lambda e: e.version, reverse=True)
        needs = {o: n for o, n in peer.missing.items()}
        for entry in divergent:  # oldest last: roll back to what preceded the fork
            needs[entry.oid] = Need.of(entry.prior)
        for version, entry in auth.log.items():
            if version > common:
                needs[entry.oid] = Need(ZERO)  # placeholder: the auth state replaces it
        return {o: self._auth_state(auth, latest, o, n) for o, n in needs.items()}

    def _activate(self) -> None:
        auth = self._peers[self._auth]
        latest: dict[str, Entry] = {}
        for version in sorted(auth.log):
            latest[auth.log[version].oid] = auth.log[version]
        self._pmissing = {o: self._missing_of(o, auth, latest) for o in sorted(self._peers)}
        entries = [auth.log[v] for v in sorted(auth.log)]
        mine = self._pmissing[self.whoami]
        assert mine is not None
        self._adopt(entries, auth.log_tail, auth.last_update, mine)
        self._pmissing[self.whoami] = self.missing
        self.les = self.interval.epoch
        self._save_info()
        self.phase = ACTIVATING
        self._activated = {self.whoami}
        for osd in self.interval.acting:
            if osd != self.whoami:
                self._send_activate(osd)
        if self._activated >= set(self.interval.acting):
            self.phase = ACTIVE
            self._kick()
            self._check_recovered()

    def _send_activate(self, osd: int) -> None:
        self._send(osd, "activate", last_update=self.last_update, log_tail=self.log_tail,
                   lec=self.lec, log=[self.log[v] for v in sorted(self.log)],
                   missing=dict(self._pmissing[osd]))
        self._asked[osd] = self.ticks

    # ------------------------------------------------------------------ recovery

    def _acting_missing(self) -> dict[int, dict[str, Need]]:
        return {o: self._pmissing[o] for o in self.interval.acting}

    def _priority(self, oid: str) -> tuple:
        if oid in self._urgent:
            return (0, oid)
        if oid in self.missing:
            return (1, oid)
        log_based = any(oid in m for o, m in self._acting_missing().items()
                        if o not in self._backfill)
        return (2 if log_based else 3, oid)

    def _source(self, oid: str) -> int | None:
        order = [self.whoami] + [o for o in self.interval.acting if o != self.whoami]
        order += sorted(o for o in self._pmissing if o not in order and o in self.up)
        for osd in order:
            missing = self._pmissing.get(osd)
            if missing is not None and oid not in missing:
                return osd
        return None

    def _start(self, oid: str, urgent: bool = False) -> bool:
        targets = {o for o, m in self._acting_missing().items() if oid in m}
        if not targets:
            return False
        source = self._source(oid)
        if source is None:
            self._unfound.add(oid)
            return False
        self._unfound.discard(oid)
        need = self._pmissing[min(targets)][oid]
        self._ops[oid] = _Op(need, source, targets, self.ticks, urgent)
        self._ready.recover.append(Recover(oid, need, source, sorted(targets),
                                           self.interval.epoch, urgent))
        return True

    def _kick(self) -> None:
        """Start recoveries, most urgent first, up to max_active in flight."""
        if self.role != PRIMARY or self.phase != ACTIVE:
            return
        wanted = set()
        for missing in self._acting_missing().values():
            wanted |= missing.keys()
        self._unfound &= wanted
        normal = sum(1 for op in self._ops.values() if not op.urgent)
        for oid in sorted(wanted - self._ops.keys(), key=self._priority):
            if normal >= self.max_active:
                break
            if self._start(oid):
                normal += 1

    def _object_done(self, oid: str, osd: int) -> None:
        missing = self._pmissing.get(osd)
        if missing is None or oid not in missing:
            return
        if osd == self.whoami:
            self._set_missing(oid, None)
            self._save_info()
        else:
            del missing[oid]
        self._done_pairs += 1
        op = self._ops.get(oid)
        if op is not None:
            op.targets.discard(osd)
            if not op.targets:
                del self._ops[oid]
                self._urgent.discard(oid)
        self._kick()
        self._check_recovered()

    def _check_recovered(self) -> None:
        if self.phase != ACTIVE or any(self._acting_missing().values()):
            return
        if self.lec != self.interval.epoch:
            self.lec = self.interval.epoch
            self._trim_past()
            self._save_info()
            for osd in self.interval.acting:
                if osd != self.whoami:
                    self._send(osd, "lec", lec=self.lec)
            for osd in sorted(self._pmissing.keys() - set(self.interval.acting)):
                self._send(osd, "purge")  # every acting member has it all: drop stray copies

    def wants_copy(self, oid: str, need: Need, epoch: int) -> bool:
        """Would `on_push` take this copy now? The parts of a large copy are written only
        while the object is still missing here (and so never served)."""
        if self.interval is None or epoch != self.interval.epoch or self.phase == RESTARTED:
            return False
        if self.missing.get(oid) != need:
            return False
        if self.role == PRIMARY:
            return self.phase == ACTIVE
        return self.role == REPLICA and self._replica_active

    def on_push(self, oid: str, need: Need, epoch: int) -> Ready | None:
        """A recovered copy of `oid` arrived here. None: ignore it (stale); a Ready with
        empty persist: already recovered (send the re-ack, do not write the object);
        otherwise write the object atomically with the Ready's persist."""
        if self.interval is None or epoch != self.interval.epoch or self.phase == RESTARTED:
            return None
        if self.missing.get(oid) != need:
            if oid not in self.missing and self.role == REPLICA and self._replica_active:
                self._send(self.interval.acting[0], "recovered", oid=oid)  # ack was lost
                return self._flush()
            return None
        if self.role == PRIMARY:
            if self.phase != ACTIVE:
                return None
            self._object_done(oid, self.whoami)
        elif self.role == REPLICA and self._replica_active:
            self._set_missing(oid, None)
            self._save_info()
            self._send(self.interval.acting[0], "recovered", oid=oid)
        else:
            return None
        return self._flush()

    def need_object(self, oid: str) -> Ready:
        """An op waits on `oid`: recover it before anything else."""
        if self.role == PRIMARY and self.phase == ACTIVE and oid not in self._ops:
            urgent = sum(1 for op in self._ops.values() if op.urgent)
            if urgent < self.max_active and self.is_degraded(oid):
                self._urgent.add(oid)
                self._start(oid, urgent=True)
        return self._flush()

    def tick(self) -> Ready:
        """Resend what went unanswered for retry_ticks ticks."""
        self.ticks += 1
        if self.role != PRIMARY:
            return self._flush()
        due = [o for o, t in self._asked.items() if self.ticks - t >= self.retry_ticks]
        for osd in sorted(due):
            if self.phase == GET_INFO and osd not in self._peers:
                self._send(osd, "query")
            elif self.phase == SCAN and osd in self._scan_targets() - self._scans.keys():
                self._send(osd, "scan")
            elif (self.phase == ACTIVATING and osd in self.interval.acting
                  and osd not in self._activated):
                self._send_activate(osd)
            else:
                continue
            self._asked[osd] = self.ticks
        if self.phase == ACTIVE:
            for oid, op in sorted(self._ops.items()):
                if self.ticks - op.started >= self.retry_ticks:
                    del self._ops[oid]
                    self._start(oid, op.urgent)
            self._kick()
        return self._flush()

    # ------------------------------------------------------------------ client writes

    def serves_io(self) -> bool:
        iv = self.interval
        return (self.role == PRIMARY and self.phase == ACTIVE
                and len(iv.acting) >= iv.min_size)

    def next_version(self) -> Version:
        """Primary: the version the next `write` hands out (the driver stamps the object
        with it before it calls write, with nothing in between that could move the core)."""
        return (self.interval.epoch, self.last_update[1] + 1)

    def write(self, oid: str, reqid: str = "", delete: bool = False,
              prior: Version | None = None) -> tuple[Entry, Ready]:
        """Primary: order a client write of `oid` (now held at `prior`, None = absent); the
        driver applies it with Ready.persist and sends the entry to every acting replica
        (replica_write there)."""
        if not self.serves_io():
            raise NotActive(f"pg is {self.state_name()}: {self.why()}")
        if self.is_degraded(oid):
            raise ObjectDegraded(f"{oid} is being recovered")
        entry = Entry(self.next_version(), oid, reqid, delete, prior)
        self._append(entry)
        self._save_info()
        return entry, self._flush()

    def takes_write(self, entry: Entry, epoch: int) -> bool:
        """Replica: would replica_write append this entry now (not refuse it, nor find it
        already applied)? The driver checks the object's copy before it asks."""
        return (self.role == REPLICA and self._replica_active and epoch == self.interval.epoch
                and entry.version > self.last_update
                and entry.version[1] == self.last_update[1] + 1)

    def replica_write(self, entry: Entry, epoch: int) -> Ready | None:
        """Replica: None = refuse (other interval, not activated, out of order: the primary
        resends); a Ready with empty persist = already applied (ack, do not re-apply)."""
        if (self.role != REPLICA or not self._replica_active or epoch != self.interval.epoch):
            return None
        if entry.version <= self.last_update:
            applied = entry.version <= self.log_tail or self.log.get(entry.version) == entry
            return self._flush() if applied else None
        if not self.takes_write(entry, epoch):
            return None
        assert entry.oid not in self.missing, f"write to degraded {entry.oid}"
        self._append(entry)
        self._save_info()
        return self._flush()

    # ------------------------------------------------------------------ queries

    def set_inconsistent(self, inconsistent: bool) -> None:
        """Scrub found copies that differ (or found them all good again), or a repair on
        read or write replaced a bad copy: shown in the state name until a deep scrub."""
        self.inconsistent = inconsistent

    def is_missing(self, oid: str) -> bool:
        """Is `oid` missing on this OSD (a read here must wait)?"""
        return oid in self.missing

    def is_degraded(self, oid: str) -> bool:
        """Primary: is `oid` missing on any acting member (a write must wait)?"""
        if self.role != PRIMARY or self.phase != ACTIVE:
            return oid in self.missing
        return any(oid in m for m in self._acting_missing().values())

    def progress(self) -> tuple[int, int]:
        """(objects to recover, objects recovered) in this interval, counted per copy."""
        if self.role != PRIMARY or self.phase != ACTIVE:
            return (len(self.missing), 0)
        left = sum(len(m) for m in self._acting_missing().values())
        return (left + self._done_pairs, self._done_pairs)

    def state_name(self) -> str:
        """Ceph-style state, e.g. 'active+recovering+undersized+degraded'."""
        iv = self.interval
        if self.role != PRIMARY:
            names = {"active" if self._replica_active else self.role}
        else:
            names = set()
            if self.les == 0 and self.phase != ACTIVE:
                names.add("creating")
            names.add({GET_INFO: "peering", SCAN: "peering", ACTIVATING: "activating",
                       INCOMPLETE: "incomplete"}.get(self.phase, "active"))
            if len(iv.acting) < iv.size:
                names.add("undersized")
            if self.phase == ACTIVE:
                names |= self._recovery_names()
                if len(iv.acting) < iv.min_size:  # recovers, but serves no client I/O
                    names = (names - {"active"}) | {"peered"}
        if self.stale:
            names.add("stale")
        if self.inconsistent:
            names.add("inconsistent")
        return "+".join(n for n in STATE_ORDER if n in names)

    def _recovery_names(self) -> set[str]:
        iv = self.interval
        missing = self._acting_missing()
        log_left = any(m for o, m in missing.items() if o not in self._backfill)
        backfill_left = any(missing[o] for o in self._backfill)
        names = set()
        if len(iv.acting) < iv.size or log_left or backfill_left:
            names.add("degraded")
        else:
            names.add("clean")
        running = {o for op in self._ops.values() for o in op.targets}
        if log_left:
            log_running = any(o not in self._backfill for o in running)
            names.add("recovering" if log_running else "recovery_wait")
        if backfill_left:  # the PG's data is moving to OSDs that do not hold it yet
            names |= {"remapped",
                      "backfilling" if running & self._backfill else "backfill_wait"}
        if self._unfound:
            names.add("recovery_unfound")
        return names

    def why(self) -> str:
        """Plain words: what this PG is doing or waiting for."""
        if self.phase == RESTARTED or self.interval is None:
            return "restarted; waiting for a new osd map"
        if self.role != PRIMARY:
            return f"{self.role} of an interval led by osd.{self.interval.acting[0]}" \
                if self.interval.acting else "not in the acting set"
        if self.phase == GET_INFO:
            waiting = sorted(self._probe_targets() - set(self._peers))
            return "waiting for " + ", ".join(f"osd.{o}" for o in waiting) + \
                " to report " + ("its log" if len(waiting) == 1 else "their logs")
        if self.phase == INCOMPLETE:
            return ("incomplete: newest writes may be only on down " +
                    ", ".join(f"osd.{o}" for o in self._waiting_down) +
                    "; waiting for one of them to come back up")
        if self.phase == SCAN:
            waiting = sorted(self._scan_targets() - set(self._scans))
            return "waiting for object listings from " + ", ".join(f"osd.{o}" for o in waiting)
        if self.phase == ACTIVATING:
            waiting = sorted(set(self.interval.acting) - self._activated)
            return "waiting for " + ", ".join(f"osd.{o}" for o in waiting) + " to activate"
        return self._why_active()

    def _why_active(self) -> str:
        iv = self.interval
        parts = []
        for osd, missing in sorted(self._acting_missing().items()):
            if missing:
                how = "backfilling" if osd in self._backfill else "recovering"
                parts.append(f"{how} {len(missing)} objects onto osd.{osd}")
        if self._unfound:
            parts.append(f"{len(self._unfound)} objects unfound: no up OSD has them")
        if len(iv.acting) < iv.min_size:
            parts.append(f"only {len(iv.acting)} of min_size {iv.min_size} OSDs up: "
                         "client I/O blocked")
        elif len(iv.acting) < iv.size:
            parts.append(f"undersized: {len(iv.acting)} of {iv.size} copies")
        return "; ".join(parts) if parts else "active and clean"
