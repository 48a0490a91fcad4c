"""Keyrings: INI files of entity secret keys, like Ceph's (`[client.admin] key = ...`)."""

from __future__ import annotations

import base64
import configparser
import os
import secrets
from pathlib import Path

from sds.common.errors import AuthError, NotFound


def generate_key() -> bytes:
    return secrets.token_bytes(32)


class Keyring:
    def __init__(self, entries: dict[str, tuple[bytes, dict[str, str]]] | None = None):
        self.entries: dict[str, tuple[bytes, dict[str, str]]] = dict(entries or {})

    @classmethod
    def load(cls, path: str | os.PathLike) -> Keyring:
        p = Path(path)
        if not p.exists():
            raise NotFound(f"keyring {p} does not exist")
        parser = configparser.ConfigParser(interpolation=None)
        parser.read(p)
        entries = {}
        for name in parser.sections():
            section = parser[name]
            key = base64.b64decode(section.get("key", ""))
            caps = {k[5:]: v for k, v in section.items() if k.startswith("caps ")}
            entries[name] = (key, caps)
        return cls(entries)

    def text(self) -> str:
        """The keyring file's contents (secrets: never log them)."""
        lines = []
        for name, (key, caps) in sorted(self.entries.items()):
            lines.append(f"[{name}]")
            lines.append(f"key = {base64.b64encode(key).decode()}")
            for service, cap in sorted(caps.items()):
                lines.append(f"caps {service} = {cap}")
            lines.append("")
        return "\n".join(lines)

    def only(self, *names: str) -> Keyring:
        """A keyring of just these entities (a daemon gets its own key, nothing else)."""
        return Keyring({n: self.entries[n] for n in names})

    def save(self, path: str | os.PathLike) -> None:
        """Written with mode 0600: the file holds secrets."""
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.fchmod(fd, 0o600)  # an existing file keeps its mode otherwise
        with os.fdopen(fd, "w") as f:
            f.write(self.text())

    def add(self, name: str, key: bytes | None = None, caps: dict[str, str] | None = None) -> bytes:
        key = key or generate_key()
        self.entries[name] = (key, dict(caps or {}))
        return key

    def key_of(self, name: str) -> bytes:
        try:
            return self.entries[name][0]
        except KeyError:
            raise AuthError(f"no key for {name} in the keyring") from None

    def __contains__(self, name: str) -> bool:
        return name in self.entries
