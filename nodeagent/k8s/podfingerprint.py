"""The ``nodeTopologyPodsFingerprint`` of a set of pods, as k8stopologyawareschedwg/podfingerprint signs it.

The scheduler-plugins' NodeResourceTopology cache (overreserve) compares this attribute with the
fingerprint of the pods it believes run on the node, and resyncs its view of the node only when they
match. The format is ``pfp0`` + ``v001`` + hex of a 64-bit XXH64 digest:

* each pod is hashed as ``XXH64(name, seed=XXH64(namespace, seed=0))``;
* the pod hashes are sorted as unsigned integers and each written as 8 little-endian bytes;
* the digest is XXH64 (seed 0) of those bytes, written big-endian as 16 hex digits.

The order the pods are listed in does not matter. XXH64 is implemented here (it is short, and the
only user) so that no compiled dependency is needed.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable

PREFIX = "pfp0"
VERSION = "v001"
ATTRIBUTE = "nodeTopologyPodsFingerprint"
ATTRIBUTE_METHOD = "nodeTopologyPodsFingerprintMethod"
METHOD_ALL = "all"

_MASK = 2**64 - 1
_P1 = 11400714785074694791
_P2 = 14029467366897019727
_P3 = 1609587929392839161
_P4 = 9650029242287828579
_P5 = 2870177450012600261


def _rotl(value: int, bits: int) -> int:
    return ((value << bits) | (value >> (64 - bits))) & _MASK


def _round(acc: int, lane: int) -> int:
    acc = (acc + lane * _P2) & _MASK
    return (_rotl(acc, 31) * _P1) & _MASK


def _merge(acc: int, value: int) -> int:
    acc ^= _round(0, value)
    return (acc * _P1 + _P4) & _MASK


def xxh64(data: bytes, seed: int = 0) -> int:
    """XXH64 of ``data`` (the reference algorithm, Yann Collet's xxHash specification)."""
    length = len(data)
    offset = 0
    if length >= 32:
        v1 = (seed + _P1 + _P2) & _MASK
        v2 = (seed + _P2) & _MASK
        v3 = seed & _MASK
        v4 = (seed - _P1) & _MASK
        while offset + 32 <= length:
            a, b, c, d = struct.unpack_from("<4Q", data, offset)
            v1, v2, v3, v4 = _round(v1, a), _round(v2, b), _round(v3, c), _round(v4, d)
            offset += 32
        acc = (_rotl(v1, 1) + _rotl(v2, 7) + _rotl(v3, 12) + _rotl(v4, 18)) & _MASK
        for v in (v1, v2, v3, v4):
            acc = _merge(acc, v)
    else:
        acc = (seed + _P5) & _MASK
    acc = (acc + length) & _MASK
    while offset + 8 <= length:
        (lane,) = struct.unpack_from("<Q", data, offset)
        acc ^= _round(0, lane)
        acc = (_rotl(acc, 27) * _P1 + _P4) & _MASK
        offset += 8
    if offset + 4 <= length:
        (lane,) = struct.unpack_from("<I", data, offset)
        acc ^= (lane * _P1) & _MASK
        acc = (_rotl(acc, 23) * _P2 + _P3) & _MASK
        offset += 4
    while offset < length:
        acc ^= (data[offset] * _P5) & _MASK
        acc = (_rotl(acc, 11) * _P1) & _MASK
        offset += 1
    acc ^= acc >> 33
    acc = (acc * _P2) & _MASK
    acc ^= acc >> 29
    acc = (acc * _P3) & _MASK
    acc ^= acc >> 32
    return acc


def pod_hash(namespace: str, name: str) -> int:
    return xxh64(name.encode(), seed=xxh64(namespace.encode()))


def sign(pods: Iterable[tuple[str, str]]) -> str:
    """The fingerprint of a set of (namespace, name) pairs: ``pfp0v001`` + 16 hex digits."""
    hashes = sorted(pod_hash(namespace, name) for namespace, name in pods)
    digest = xxh64(b"".join(struct.pack("<Q", h) for h in hashes))
    return f"{PREFIX}{VERSION}{digest:016x}"
