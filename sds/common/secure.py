"""Secure mode of the messenger (like msgr2's): every frame after the handshake is
encrypted and authenticated with AES-256-GCM.

Session keys come from HKDF-SHA256 over the entity's secret, salted with both
handshake nonces, so every connection has its own keys and nobody without the
secret can derive them. Each direction has its own key and 4-byte IV prefix; the
rest of the 12-byte GCM nonce is a record counter that both ends advance in step,
so a replayed, reordered, dropped or flipped record fails its tag and the
connection is dropped.

On the wire a secure frame keeps the 8-byte header (lengths of the two sealed
records, each including its 16-byte tag; data_len is 0 when there is no data),
authenticated as associated data of both records:

    u32 env_len | u32 data_len | AEAD(envelope) | AEAD(data)
"""

from __future__ import annotations

import struct

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from sds.common.errors import InvalidArgument

HEADER = struct.Struct("!II")
TAG = 16
KEY_BYTES = 32
IV_PREFIX = 4
INFO = b"sds-messenger secure v1|"

MODES = ("crc", "secure")
CRC, SECURE = 0, 1           # values of the handshake's `mode` fields


def mode_value(name: str) -> int:
    if name not in MODES:
        raise InvalidArgument(f"messenger mode {name!r}: expected one of {', '.join(MODES)}")
    return MODES.index(name)


class SecureSession:
    """Seals outgoing and opens incoming records of one connection, in order."""

    def __init__(self, tx_key: bytes, tx_iv: bytes, rx_key: bytes, rx_iv: bytes):
        self._tx_key = tx_key
        self._tx = AESGCM(tx_key)
        self._rx = AESGCM(rx_key)
        self._tx_iv, self._rx_iv = tx_iv, rx_iv
        self._tx_seq = 0
        self._rx_seq = 0

    @classmethod
    def derive(cls, key: bytes, server_nonce: bytes, client_nonce: bytes, entity: str,
               is_client: bool) -> SecureSession:
        okm = HKDF(algorithm=hashes.SHA256(), length=2 * (KEY_BYTES + IV_PREFIX),
                   salt=server_nonce + b"|" + client_nonce,
                   info=INFO + entity.encode()).derive(key)
        c2s = okm[:KEY_BYTES], okm[KEY_BYTES:KEY_BYTES + IV_PREFIX]
        s2c = okm[KEY_BYTES + IV_PREFIX:2 * KEY_BYTES + IV_PREFIX], okm[2 * KEY_BYTES + IV_PREFIX:]
        tx, rx = (c2s, s2c) if is_client else (s2c, c2s)
        return cls(tx[0], tx[1], rx[0], rx[1])

    def _tx_nonce(self) -> bytes:
        seq, self._tx_seq = self._tx_seq, self._tx_seq + 1
        return self._tx_iv + seq.to_bytes(8, "big")

    def seal(self, env: bytes, segments: list, size: int) -> list:
        """The wire form of one frame: header, sealed envelope, sealed data (if any)."""
        header = HEADER.pack(len(env) + TAG, size + TAG if size else 0)
        out = [header, self._tx.encrypt(self._tx_nonce(), env, header)]
        if not size:
            return out
        nonce = self._tx_nonce()
        if len(segments) == 1:   # one call, no join: AESGCM reads the buffer in place
            out.append(self._tx.encrypt(nonce, segments[0], header))
            return out
        enc = Cipher(algorithms.AES(self._tx_key), modes.GCM(nonce)).encryptor()
        enc.authenticate_additional_data(header)
        for seg in segments:
            out.append(enc.update(seg))
        out.append(enc.finalize())
        out.append(enc.tag)
        return out

    def open(self, sealed: memoryview, header: bytes) -> bytes:
        """The plaintext of the next incoming record; InvalidArgument if it was altered."""
        seq, self._rx_seq = self._rx_seq, self._rx_seq + 1
        try:
            return self._rx.decrypt(self._rx_iv + seq.to_bytes(8, "big"), sealed, header)
        except InvalidTag:
            raise InvalidArgument(f"secure record {seq} failed authentication "
                                  "(altered, replayed or reordered)") from None
