"""Other serialisers, timed for context when they are installed (never part of the targets).

cloudpickle and dill are pickle-based and run on every workload at the row's protocol.
msgspec (MessagePack) and orjson (JSON) take only what their formats hold; a workload they
reject is skipped, and one they accept but give back changed (tuples as lists, dates as
strings, dataclasses as dicts) is marked lossy.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Peer:
    """A serialiser with a dumps/loads pair."""

    name: str
    dumps: Callable[..., Any]
    loads: Callable[..., Any]
    pickle_based: bool  # takes a protocol and pickle's buffer_callback/buffers arguments
    version: str


def _cloudpickle() -> Peer:
    import cloudpickle

    # cloudpickle.loads is pickle.loads itself; listed so the table says so.
    return Peer("cloudpickle", cloudpickle.dumps, cloudpickle.loads, True, cloudpickle.__version__)


def _dill() -> Peer:
    import dill

    return Peer("dill", dill.dumps, dill.loads, True, dill.__version__)


def _msgspec() -> Peer:
    import msgspec

    encoder, decoder = msgspec.msgpack.Encoder(), msgspec.msgpack.Decoder()
    return Peer("msgspec", encoder.encode, decoder.decode, False, msgspec.__version__)


def _orjson() -> Peer:
    import orjson

    return Peer("orjson", orjson.dumps, orjson.loads, False, orjson.__version__)


_FACTORIES: dict[str, Callable[[], Peer]] = {
    "cloudpickle": _cloudpickle,
    "dill": _dill,
    "msgspec": _msgspec,
    "orjson": _orjson,
}


def available_peers(names: list[str] | None = None) -> tuple[list[Peer], list[str]]:
    """The installed peers (all known, or those named) and the names that are missing."""
    peers, missing = [], []
    for name in names or list(_FACTORIES):
        if name not in _FACTORIES:
            raise ValueError(f"unknown peer {name!r}; known: {', '.join(_FACTORIES)}")
        try:
            importlib.import_module(name)
        except ImportError:
            missing.append(name)
            continue
        peers.append(_FACTORIES[name]())
    return peers, missing


def support(peer: Peer, obj: Any, protocol: int, oob: bool) -> tuple[bool, bool, str]:
    """Whether peer can round-trip obj: (supported, lossy, reason if not supported)."""
    if oob and not peer.pickle_based:
        return False, False, "no out-of-band buffers"
    try:
        data, buffers = encode(peer, obj, protocol, oob)
        back = decode(peer, data, buffers)
    except Exception as exc:  # each library raises its own error types
        return False, False, f"{type(exc).__name__}: {str(exc)[:80]}"
    if peer.pickle_based:
        return True, False, ""
    try:
        lossy = bool(back != obj)
    except Exception:
        lossy = True
    return True, lossy, ""


def encode(peer: Peer, obj: Any, protocol: int, oob: bool) -> tuple[Any, list[Any] | None]:
    """One encoding of obj, with its out-of-band buffers when oob."""
    if not peer.pickle_based:
        return peer.dumps(obj), None
    if oob:
        buffers: list[Any] = []
        return peer.dumps(obj, protocol, buffer_callback=buffers.append), buffers
    return peer.dumps(obj, protocol), None


def decode(peer: Peer, data: Any, buffers: list[Any] | None) -> Any:
    """Decode data produced by :func:`encode`."""
    if buffers is not None:
        return peer.loads(data, buffers=buffers)
    return peer.loads(data)
