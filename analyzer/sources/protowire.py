"""The protobuf wire format read with numpy: many messages of one type side by side.

A Monitoring page holds up to 100,000 points, each a small nest of messages (interval, two
timestamps, a value, maybe a distribution). Reading them through the protobuf runtime costs about a
microsecond per submessage; here each level of the nest is read for every point at once. A *walk
step* reads the next field of every message still open, so Python works once per field position
(a handful per message type), never per point.

1. ``records`` finds the repeated records of one field (the points of each series) in a buffer: every
   byte that could start one is a candidate, each candidate's length says where the next would
   start, and pointer doubling keeps the chain reached from each series' first point (a byte inside
   a point that happens to look like a tag is never reached).
2. ``walk`` reads the fields of many messages at once; ``Fields.one`` and ``Fields.all`` pick a field
   out by number and wire type, so unknown fields and any field order are read as the runtime reads
   them.
3. ``varints_at`` and ``packed_varints`` decode varints vectorized (continuation bits, up to 10 bytes,
   so negative int64s too); fixed64 doubles are a byte view.

Only what a proto3 serializer writes is read: VARINT, I64, LEN and I32 fields. Anything else (a
group, a truncated field, a singular field written twice, which the runtime would merge) raises
``Unusual``, and the caller reads that data the exact, slow way.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

VARINT, I64, LEN, I32 = 0, 1, 2, 5
PAD = 16  # zero bytes after the data, so that reading 10 bytes past any position stays inside
_TEN = np.arange(10)
_SHIFTS = (7 * _TEN).astype(np.uint64)
_EIGHT = np.arange(8)


class Unusual(Exception):
    """Wire data this reader leaves to the protobuf runtime (not necessarily malformed)."""


def padded(data: bytes) -> np.ndarray:
    """The bytes as a uint8 array with ``PAD`` zero bytes after them."""
    return np.frombuffer(data + bytes(PAD), np.uint8)


def varints_at(buf: np.ndarray, pos: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The varints starting at ``pos`` (uint64) and the positions after them."""
    first = buf[pos]
    if not (first & 0x80).any():  # one byte each: tags, lengths, small counts
        return first.astype(np.uint64), pos + 1
    value = (first & 0x7F).astype(np.uint64)
    after = pos + 1
    more = np.flatnonzero(first >= 0x80)
    for digit in range(1, 10):  # byte by byte, only the varints not finished yet (usually few)
        byte = buf[pos[more] + digit]
        value[more] |= (byte & 0x7F).astype(np.uint64) << _SHIFTS[digit]
        after[more] += 1
        more = more[byte >= 0x80]
        if not len(more):
            return value, after
    raise Unusual("a varint longer than 10 bytes")


def fixed64_at(buf: np.ndarray, pos: np.ndarray) -> np.ndarray:
    """The little-endian doubles starting at ``pos``."""
    return buf[pos[:, None] + _EIGHT].view("<f8").ravel().astype(np.float64)


def signed(values: np.ndarray) -> np.ndarray:
    """uint64 varint values as int64 (a negative int64 is a 10-byte varint of its two's complement)."""
    return values.view(np.int64)


def spans(starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """Every index of the half-open ranges, concatenated in order."""
    lengths = ends - starts
    total = int(lengths.sum())
    offsets = np.repeat(starts - (np.cumsum(lengths) - lengths), lengths)
    return offsets + np.arange(total)


def packed_varints(buf: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Decode packed varint runs ``buf[starts[i]:ends[i]]``: (values uint64, the run each came from)."""
    index = spans(starts, ends)
    raw = buf[index]
    last = raw < 0x80  # each varint ends at a byte without the continuation bit
    run_of_byte = np.repeat(np.arange(len(starts)), ends - starts)
    if len(raw) and not last[np.cumsum(ends - starts)[ends > starts] - 1].all():
        raise Unusual("a packed run ends inside a varint")
    if last.all():
        return raw.astype(np.uint64), run_of_byte
    ends_at = np.flatnonzero(last)
    begins = np.concatenate(([0], ends_at[:-1] + 1))
    digit = np.arange(len(raw)) - np.repeat(begins, ends_at - begins + 1)
    if digit.max() > 9:
        raise Unusual("a varint longer than 10 bytes")
    parts = (raw & 0x7F).astype(np.uint64) << _SHIFTS[digit]
    return np.bitwise_or.reduceat(parts, begins), run_of_byte[ends_at]


@dataclass
class Fields:
    """The fields met walking ``count`` messages side by side; within a message in wire order."""

    count: int
    message: np.ndarray  # which message (0 .. count-1)
    number: np.ndarray
    wire: np.ndarray
    value: np.ndarray  # VARINT: the value (uint64); I64, I32, LEN: where the payload starts
    end: np.ndarray  # where the payload ends

    def all(self, number: int, wire: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(message, value, end) of every occurrence, in wire order within each message."""
        hit = (self.number == number) & (self.wire == wire)
        return self.message[hit], self.value[hit], self.end[hit]

    def one(self, number: int, wire: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(present per message, value, end): a singular field; Unusual if one is written twice."""
        message, value, end = self.all(number, wire)
        present = np.zeros(self.count, bool)
        present[message] = True
        if len(message) != present.sum():
            raise Unusual(f"field {number} written twice in one message")
        values = np.zeros(self.count, value.dtype)
        values[message] = value
        ends = np.zeros(self.count, np.int64)
        ends[message] = end
        return present, values, ends


def walk(buf: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> Fields:
    """Read the fields of the messages ``buf[starts[i]:ends[i]]``, one field of each per step."""
    count = len(starts)
    message = np.arange(count)
    pos, end = starts.astype(np.int64), ends.astype(np.int64)
    open_ = pos < end
    message, pos, end = message[open_], pos[open_], end[open_]
    steps: list[tuple[np.ndarray, ...]] = []
    while len(message):
        tag, pos = varints_at(buf, pos)
        number, wire = (tag >> np.uint64(3)).astype(np.int64), (tag & np.uint64(7)).astype(np.int64)
        value, after = _payloads(buf, pos, wire)
        if (after > end).any() or (number == 0).any():
            raise Unusual("a field runs past its message")
        steps.append((message, number, wire, value, after))
        open_ = after < end
        message, pos, end = message[open_], after[open_], end[open_]
    if not steps:
        empty = np.empty(0, np.int64)
        return Fields(count, empty, empty, empty, empty.astype(np.uint64), empty)
    columns = [np.concatenate(c) for c in zip(*steps, strict=True)]
    return Fields(count, columns[0], columns[1], columns[2], columns[3], columns[4])


def _payloads(buf: np.ndarray, pos: np.ndarray, wire: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per field (positioned after its tag): VARINT's value or the payload's start, and its end."""
    if (wire == wire[0]).all():  # the usual step: every message has the same kind of field here
        return _payload(buf, pos, int(wire[0]))
    value, after = np.zeros(len(pos), np.uint64), np.zeros(len(pos), np.int64)
    for kind in np.flatnonzero(np.bincount(wire)):
        mask = wire == kind
        value[mask], after[mask] = _payload(buf, pos[mask], int(kind))
    return value, after


def _payload(buf: np.ndarray, pos: np.ndarray, wire: int) -> tuple[np.ndarray, np.ndarray]:
    if wire == VARINT:
        return varints_at(buf, pos)
    if wire == LEN:
        length, start = varints_at(buf, pos)
        if (length > np.uint64(len(buf))).any():
            raise Unusual("a length past the data")
        return start.astype(np.uint64), start + length.astype(np.int64)
    if wire == I64:
        return pos.astype(np.uint64), pos + 8
    if wire == I32:
        return pos.astype(np.uint64), pos + 4
    raise Unusual(f"wire type {wire}")


def records(
    buf: np.ndarray, firsts: np.ndarray, limits: np.ndarray, tag: int, counts: np.ndarray | None, opening: bytes
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The chains of LEN records with one-byte ``tag`` starting at ``firsts[i]`` (before ``limits[i]``).

    Returns (payload starts, payload ends, the chain each record belongs to, which chains hold exactly
    ``counts[i]`` records); records of chains that do not are left out. ``counts`` None (wire bytes
    nobody has parsed yet): a chain runs until the field after a record is not one, which is exact
    because each record says where the next field starts. ``opening``: the bytes a
    record's payload usually starts with (its first field's tag), which makes a byte inside a record
    that looks like ``tag`` rarely a candidate; a chain through a record that opens otherwise is
    found all the same, by pointer doubling over every candidate.
    """
    if not len(firsts):
        empty = np.empty(0, np.int64)
        return empty, empty, empty, np.empty(0, bool)
    candidates = np.flatnonzero(buf[: len(buf) - PAD] == tag)
    chain = np.searchsorted(firsts, candidates, side="right") - 1
    inside = (chain >= 0) & (candidates < limits[np.maximum(chain, 0)])
    candidates, chain = candidates[inside], chain[inside]
    length, start = varints_at(buf, candidates + 1)
    after = start + np.minimum(length, np.uint64(len(buf))).astype(np.int64)
    opens = buf[start]
    likely = (length == 0) | (opens == opening[0] if len(opening) == 1 else
                              np.isin(opens, np.frombuffer(opening, np.uint8)))
    likely[np.searchsorted(candidates, firsts)] = True
    record_next = buf[np.minimum(after, len(buf) - 1)] == tag  # another record may follow this one
    picked = np.flatnonzero(likely)
    candidates_l, after_l, chain_l = candidates[picked], after[picked], chain[picked]
    found = _walk_chains(candidates_l, after_l, chain_l, firsts, limits, counts, record_next[picked])
    if found is None:
        found = _double_chains(candidates, after, chain, firsts, limits, counts)
        held = np.bincount(chain[found], minlength=len(firsts))
        if counts is not None:
            return start[found], after[found], chain[found], held == counts
        overrun = np.bincount(chain[found & (after > limits[chain])], minlength=len(firsts))
        return start[found], after[found], chain[found], overrun == 0
    kept = picked[found]
    return start[kept], after_l[found], chain_l[found], np.ones(len(firsts), bool)


def _walk_chains(candidates: np.ndarray, after: np.ndarray, chain: np.ndarray, firsts: np.ndarray,
                 limits: np.ndarray, counts: np.ndarray | None, record_next: np.ndarray) -> np.ndarray | None:
    """Follow each chain through the candidates; runs where each record leads to the next candidate
    are taken whole, so Python only steps over the candidates that are not records. None when a
    chain leaves the candidates or holds other than ``counts[i]`` records (without counts: when a
    record is followed by one that is not a candidate)."""
    # A run ends at a record not followed by the very next candidate; where it leads is looked up
    # for those records only.
    breaks = np.flatnonzero(np.append(candidates[1:] != after[:-1], True))
    following = np.searchsorted(candidates, after[breaks])
    lands = np.zeros(len(breaks), bool)
    inside = following < len(candidates)
    lands[inside] = candidates[following[inside]] == after[breaks][inside]
    keep = np.zeros(len(candidates), bool)
    wanted = [-1] * len(firsts) if counts is None else counts.tolist()
    for first, limit, count in zip(np.searchsorted(candidates, firsts).tolist(), limits.tolist(), wanted,
                                   strict=True):
        k, taken = first, 0
        while True:
            run = int(np.searchsorted(breaks, k))
            stop = int(breaks[run])  # the last record of this run
            keep[k : stop + 1] = True
            taken += stop + 1 - k
            if count >= 0 and taken > count:
                return None
            if after[stop] > limit:
                return None
            if taken == count or (count < 0 and (after[stop] == limit or not record_next[stop])):
                break
            if not lands[run] or after[stop] >= limit:
                return None
            k = int(following[run])
    return keep


def _double_chains(candidates: np.ndarray, after: np.ndarray, chain: np.ndarray, firsts: np.ndarray,
                   limits: np.ndarray, counts: np.ndarray | None) -> np.ndarray:
    """Every candidate reached from a chain's first (pointer doubling: 2**k records after k rounds;
    without counts, until a round reaches nothing new)."""
    following = np.searchsorted(candidates, after)
    found = following < len(candidates)
    found[found] &= candidates[following[found]] == after[found]
    jump = np.append(np.where(found & (after <= limits[chain]), following, len(candidates)), len(candidates))
    reached = np.zeros(len(candidates) + 1, bool)
    reached[np.searchsorted(candidates, firsts)] = True  # a chain's first record is always a candidate
    longest = len(candidates) if counts is None else int(counts.max(initial=0))
    for _ in range(longest.bit_length()):
        before = int(reached.sum())
        reached[jump[np.flatnonzero(reached)]] = True
        if counts is None and int(reached.sum()) == before:
            break  # no record 2**k away: every chain is shorter, and wholly reached
        jump = jump[jump]
    return reached[:-1]


def fields_of(data: bytes, start: int, end: int) -> Iterator[tuple[int, int, int, int, int]]:
    """(number, wire, value or payload start, end, where the tag is) of one message's fields, read in
    Python: for the few top-level fields of a page or a series."""
    pos = start
    while pos < end:
        at = pos
        tag, pos = _varint(data, pos)
        number, wire = tag >> 3, tag & 7
        if wire == VARINT:
            value, after = _varint(data, pos)
        elif wire == LEN:
            length, value = _varint(data, pos)
            after = value + length
        elif wire in (I64, I32):
            value, after = pos, pos + (8 if wire == I64 else 4)
        else:
            raise Unusual(f"wire type {wire}")
        if after > end or number == 0:
            raise Unusual("a field runs past its message")
        yield number, wire, value, after, at
        pos = after


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    value, shift = 0, 0
    while True:
        if pos >= len(data) or shift > 63:
            raise Unusual("a truncated varint")
        byte = data[pos]
        value |= (byte & 0x7F) << shift
        pos += 1
        if byte < 0x80:
            return value, pos
        shift += 7
