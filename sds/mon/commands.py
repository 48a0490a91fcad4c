"""Dispatch of the monitors' commands: find the descriptor, validate, run.

The commands themselves are declared in sds.mon.services (one module per service);
authorization is sds.mon.authz, from the same descriptors. `handle` is pure: the
daemon proposes the updates of the result through Paxos before it replies.
"""

from __future__ import annotations

from sds.common.errors import InvalidArgument
from sds.mon import services  # noqa: F401 (registers every service's commands)
from sds.mon.services.core import LEADER_TICKS, MON, CommandResult, MonView

COMMANDS = MON.commands
__all__ = ["COMMANDS", "LEADER_TICKS", "CommandResult", "MonView", "handle", "is_write",
           "report_args"]


def is_write(prefix: str) -> bool:
    """True for commands that may change a map: they must run on the leader."""
    desc = COMMANDS.get(" ".join(prefix.split()))
    return bool(desc and desc.write)


def handle(view: MonView, cmd: dict) -> CommandResult:
    """Run one command against `view`; InvalidArgument names a bad or missing argument."""
    desc = MON.find(cmd)
    if desc.fn is None:
        raise InvalidArgument(f"'{desc.prefix}' is a daemon report the monitor handles itself")
    return desc.fn(view, desc.validate(cmd))


def report_args(cmd: dict) -> dict:
    """The checked arguments of a report the daemon handles itself (`fn` None)."""
    desc = MON.find(cmd)
    if desc.fn is not None:
        raise InvalidArgument(f"'{desc.prefix}' is not a daemon report")
    return desc.validate(cmd)
