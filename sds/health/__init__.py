"""The PG, OSD, pool, scrub and fullness health checks, as pure functions of the maps
and the manager's digest. The manager runs them on every report (health lives in the
mgr); the monitors run the same functions only as a fallback, when the mgr's checks
are missing or judged by an older map. Neutral ground, so neither daemon imports the
other; the check type is sds.common.health."""
