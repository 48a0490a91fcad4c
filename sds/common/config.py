"""sds.conf: one INI file per cluster, read with the defaults of `options.py`."""

from __future__ import annotations

import configparser
import os
from pathlib import Path
from typing import Any

from sds.common.errors import InvalidArgument, NotFound
from sds.common.options import OPTIONS, parse_value

LAST_CLUSTER_FILE = Path.home() / ".sds" / "last-cluster"


class Config:
    """Options as seen by one entity (e.g. "osd.1" reads [osd.1], [osd], [global])."""

    def __init__(self, path: str | os.PathLike | None, entity: str = "client.admin"):
        self.path = Path(path) if path else None
        self.entity = entity
        self._parser = configparser.ConfigParser(interpolation=None)
        if self.path is not None:
            if not self.path.exists():
                raise NotFound(f"config file {self.path} does not exist")
            self._parser.read(self.path)

    def _sections(self) -> list[str]:
        role = self.entity.split(".", 1)[0]
        return [self.entity, role, "global"]

    def get(self, name: str) -> Any:
        option = OPTIONS.get(name)
        if option is None:
            raise InvalidArgument(f"unknown option {name!r}")
        env = os.environ.get(f"SDS_{name.upper()}")
        if env is not None:
            return parse_value(option, env)
        for section in self._sections():
            if self._parser.has_option(section, name):
                return parse_value(option, self._parser.get(section, name))
        return option.default

    def __getitem__(self, name: str) -> Any:
        return self.get(name)

    def section_names(self) -> list[str]:
        return self._parser.sections()

    def resolve_path(self, value: str) -> Path:
        """Paths in sds.conf are relative to the file's directory."""
        p = Path(value)
        if not p.is_absolute() and self.path is not None:
            p = self.path.parent / p
        return p

    @property
    def mon_addrs(self) -> list[str]:
        return [a.strip() for a in self.get("mon_host").split(",") if a.strip()]


def find_conf(explicit: str | None = None) -> Path:
    """--conf, else $SDS_CONF, else the cluster that `sds cluster up` started last."""
    if explicit:
        return Path(explicit)
    env = os.environ.get("SDS_CONF")
    if env:
        return Path(env)
    if LAST_CLUSTER_FILE.exists():
        conf = Path(LAST_CLUSTER_FILE.read_text().strip()) / "sds.conf"
        if conf.exists():
            return conf
    raise NotFound("no cluster config: pass --conf, set SDS_CONF, or run `sds cluster up`")
