"""Which changelog records a worker may apply over its own writes to a global table, pure.

A worker keeps reading the changelog of a global table after its recovery (faust resumes the
changelog partitions of every table with `recovery_buffer_size=1`, which faust asks of global
tables), so it reads back its own writes too, a few milliseconds to seconds after it made them.
Applied blindly, the read-back of an earlier write lands on top of a later one: the job tracker
saved a run as `running` (completion in its outbox), then as `completed`, and the status route
answered `completed` and then `running` again until the second record was read back (CI, on a
busy machine). The rule that keeps a key's value from going back in time:

- a record for a key this worker has written is applied only if it is newer in the log than
  the worker's latest write of that key (a higher offset: another worker wrote after it);
- while that write is not yet acknowledged (its offset unknown), a record read for the key is
  held back (the newest one); when the acknowledgement comes, the held record is applied if its
  offset is the higher one, and dropped otherwise;
- a key the worker has not written (or whose own record has come back) takes every record.

So a key ends with the value of its last record in the log, as it would without the rule, and
never shows an older value than one it showed before."""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass
from typing import Generic, TypeVar

R = TypeVar("R")  # a changelog record, as the caller holds it


@dataclass
class _Write(Generic[R]):
    seq: int  # which local write (a later write of the same key replaces the entry)
    offset: int | None = None  # its changelog offset, once acknowledged
    held: tuple[int, R] | None = None  # the newest record read while it was unacknowledged


class OwnWrites(Generic[R]):
    """Per key, this worker's latest write and its changelog offset; small: an entry goes when
    the write's own record has been read back (or a newer one has)."""

    def __init__(self) -> None:
        self._writes: dict[Hashable, _Write[R]] = {}
        self._seq = 0

    def __len__(self) -> int:
        return len(self._writes)

    def wrote(self, key: Hashable) -> int:
        """A local write of `key` (already in the local store); the token its ack brings back."""
        self._seq += 1
        self._writes[key] = _Write(self._seq)
        return self._seq

    def acknowledged(self, key: Hashable, seq: int, offset: int) -> R | None:
        """Write `seq` of `key` is in the log at `offset`. Returns a held record to apply now
        (one the log holds after this write), if any."""
        entry = self._writes.get(key)
        if entry is None or entry.seq != seq:
            return None  # a later local write of the key supersedes this one
        if entry.held is None:
            entry.offset = offset
            return None
        held_offset, record = entry.held
        if held_offset < offset:  # older than this write, whose own record is still to come
            entry.offset, entry.held = offset, None
            return None
        del self._writes[key]  # its own record was read back already (and maybe a newer one)
        return record if held_offset > offset else None

    def failed(self, key: Hashable, seq: int) -> R | None:
        """Write `seq` of `key` never reached the log: forget it; returns a held record, which
        the log holds and the local value does not, to apply now."""
        entry = self._writes.get(key)
        if entry is None or entry.seq != seq:
            return None
        del self._writes[key]
        return entry.held[1] if entry.held is not None else None

    def read_back(self, key: Hashable, offset: int, record: R) -> bool:
        """A changelog record of `key` at `offset` was read: apply it (True) or not (False)."""
        entry = self._writes.get(key)
        if entry is None:
            return True
        if entry.offset is None:  # the local write is not acknowledged yet: order unknown
            if entry.held is None or offset > entry.held[0]:
                entry.held = (offset, record)
            return False
        if offset < entry.offset:
            return False  # older than the local write: stale
        del self._writes[key]
        return offset > entry.offset  # its own record: already in the store; newer: apply
