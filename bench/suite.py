"""The main table: one workload at one protocol, picklex against the stdlib (and peers).

``dumps`` is timed on the workload's object; ``loads`` on the stdlib's pickle of it, so both
libraries decode the same bytes. Before timing, picklex's output is compared with the stdlib's
(a row whose bytes differ is kept but flagged) and picklex's ``loads`` result is re-pickled by
the stdlib to check it rebuilt the same object.
"""

from __future__ import annotations

import collections
import pickle
from dataclasses import dataclass, field
from typing import Any

from bench import peers as peerlib
from bench.timing import Batch, Settings, Timing, calls, calls_each, interleaved
from bench.workloads import SHARED, Workload

# A buffer_callback that keeps every buffer out of band and drops it (returns None).
_discard = collections.deque(maxlen=0).append


@dataclass
class PeerResult:
    """A peer's times next to the stdlib's, measured in their own interleaved round."""

    size: int = 0  # encoded bytes per call
    dumps_ratio: float | None = None  # stdlib time / peer time (above 1: peer faster)
    loads_ratio: float | None = None
    dumps_ns: float | None = None
    loads_ns: float | None = None
    lossy: bool = False  # round trip changes the object (JSON/MessagePack types)
    skipped: str = ""  # why the peer was not timed on this workload


@dataclass
class Row:
    """One workload at one protocol."""

    workload: str
    protocol: int
    size: int  # stdlib pickle bytes per call
    calls: int  # dumps/loads calls per measurement (per-item workloads: one per item)
    tags: list[str] = field(default_factory=list)
    dumps: dict[str, Timing] = field(default_factory=dict)  # per library
    loads: dict[str, Timing] = field(default_factory=dict)
    identical: bool | None = None  # picklex.dumps wrote the stdlib's bytes (None: not run)
    notes: list[str] = field(default_factory=list)
    peers: dict[str, PeerResult] = field(default_factory=dict)

    def ratio(self, op: str) -> float | None:
        """Stdlib time / picklex time for "dumps" or "loads" (above 1: picklex faster)."""
        times = getattr(self, op)
        if "picklex" not in times or "pickle" not in times:
            return None
        return times["pickle"].median_ns / times["picklex"].median_ns


def _dumps_batch(lib: Any, workload: Workload, obj: Any, protocol: int) -> Batch:
    if workload.oob:
        return calls(lib.dumps, obj, protocol, buffer_callback=_discard)
    if workload.per_item:
        return calls_each(lib.dumps, obj, protocol)
    return calls(lib.dumps, obj, protocol)


def _loads_batch(lib: Any, workload: Workload, data: list[bytes], buffers: list[Any]) -> Batch:
    if workload.oob:
        return calls(lib.loads, data[0], buffers=buffers)
    if workload.per_item:
        return calls_each(lib.loads, data)
    return calls(lib.loads, data[0])


def _encode_all(
    lib: Any, items: list[Any], protocol: int, oob: bool
) -> tuple[list[bytes], list[Any]]:
    buffers: list[Any] = []
    if oob:
        return [lib.dumps(items[0], protocol, buffer_callback=buffers.append)], buffers
    return [lib.dumps(item, protocol) for item in items], buffers


def _same_buffers(a: list[Any], b: list[Any]) -> bool:
    return len(a) == len(b) and all(x.raw() == y.raw() for x, y in zip(a, b))


def measure(workload: Workload, protocol: int, obj: Any, px: Any | None, settings: Settings) -> Row:
    """Time one workload at one protocol for the stdlib and, when usable, picklex."""
    items = obj if workload.per_item else [obj]
    ref, ref_buffers = _encode_all(pickle, items, protocol, workload.oob)
    row = Row(
        workload.name, protocol, sum(map(len, ref)) // len(items), len(items), list(workload.tags)
    )
    dumps: dict[str, Batch] = {"pickle": _dumps_batch(pickle, workload, obj, protocol)}
    loads: dict[str, Batch] = {"pickle": _loads_batch(pickle, workload, ref, ref_buffers)}
    if px is not None:
        try:
            ours, our_buffers = _encode_all(px, items, protocol, workload.oob)
            row.identical = ours == ref and _same_buffers(our_buffers, ref_buffers)
            if not row.identical:
                row.notes.append("picklex.dumps output differs from pickle.dumps")
            dumps["picklex"] = _dumps_batch(px, workload, obj, protocol)
        except Exception as exc:
            row.notes.append(f"picklex.dumps failed: {type(exc).__name__}: {exc}")
        try:
            _check_loads(px, ref[:100], ref_buffers, protocol, row)
            loads["picklex"] = _loads_batch(px, workload, ref, ref_buffers)
        except Exception as exc:
            row.notes.append(f"picklex.loads failed: {type(exc).__name__}: {exc}")
    per_call = len(items)
    for op, batches in (("dumps", dumps), ("loads", loads)):
        timings = interleaved(batches, settings)
        for timing in timings.values():
            timing.median_ns /= per_call
        setattr(row, op, timings)
    return row


def _check_loads(px: Any, data: list[bytes], buffers: list[Any], protocol: int, row: Row) -> None:
    """picklex.loads must rebuild what pickle.loads rebuilds (compared as stdlib pickles)."""
    kwargs = {"buffers": buffers} if buffers else {}
    for blob in data:
        mine = pickle.dumps(px.loads(blob, **kwargs), protocol)
        theirs = pickle.dumps(pickle.loads(blob, **kwargs), protocol)
        if mine != theirs:
            row.notes.append("picklex.loads rebuilt a different object than pickle.loads")
            return


def measure_peers(
    row: Row,
    workload: Workload,
    obj: Any,
    protocol: int,
    peers: list[peerlib.Peer],
    settings: Settings,
) -> None:
    """Time each peer against the stdlib (interleaved, pairwise) and store it on the row."""
    items = obj if workload.per_item else [obj]
    ref, ref_buffers = _encode_all(pickle, items, protocol, workload.oob)
    for peer in peers:
        result = PeerResult()
        row.peers[peer.name] = result
        if SHARED in workload.tags and not peer.pickle_based:
            result.skipped = "shared references would be expanded into copies"
            continue
        ok, result.lossy, why = peerlib.support(peer, items[0], protocol, workload.oob)
        if not ok:
            result.skipped = why
            continue
        try:
            encoded = [peerlib.encode(peer, item, protocol, workload.oob) for item in items]
        except Exception as exc:  # a later item the format cannot hold
            result.skipped = f"{type(exc).__name__}: {str(exc)[:80]}"
            continue
        result.size = sum(len(data) for data, _ in encoded) // len(items)
        dumps = {
            "pickle": _dumps_batch(pickle, workload, obj, protocol),
            peer.name: _peer_dumps(peer, workload, obj, protocol),
        }
        loads = {
            "pickle": _loads_batch(pickle, workload, ref, ref_buffers),
            peer.name: _peer_loads(peer, workload, encoded),
        }
        for op, batches in (("dumps", dumps), ("loads", loads)):
            timings = interleaved(batches, settings)
            mine, theirs = timings[peer.name].median_ns, timings["pickle"].median_ns
            setattr(result, f"{op}_ns", mine / len(items))
            setattr(result, f"{op}_ratio", theirs / mine)


def _peer_dumps(peer: peerlib.Peer, workload: Workload, obj: Any, protocol: int) -> Batch:
    if not peer.pickle_based:
        return calls_each(peer.dumps, obj) if workload.per_item else calls(peer.dumps, obj)
    if workload.oob:
        return calls(peer.dumps, obj, protocol, buffer_callback=_discard)
    if workload.per_item:
        return calls_each(peer.dumps, obj, protocol)
    return calls(peer.dumps, obj, protocol)


def _peer_loads(peer: peerlib.Peer, workload: Workload, encoded: list[tuple[Any, Any]]) -> Batch:
    data = [blob for blob, _ in encoded]
    if workload.oob:
        return calls(peer.loads, data[0], buffers=encoded[0][1])
    if workload.per_item:
        return calls_each(peer.loads, data)
    return calls(peer.loads, data[0])
