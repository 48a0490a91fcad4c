"""The monitors' services, one module each; importing the package registers them all.

`core` holds what they share (MonView, CommandResult, the registry) and `health` the
checks; a service imports those two and nothing of another service, so there is no
import circle. Dispatch (validation, authorization) is sds.mon.commands.
"""

from sds.mon.services import (  # noqa: F401 (each registers its commands)
    auth,
    auth_health,
    balance,
    blocklist,
    fs,
    full,
    health,
    osd,
    osd_admin,
    pg,
    pool,
    reports,
    status,
    tickets,
)
