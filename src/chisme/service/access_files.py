"""The tracker's allow/deny list files: loaded at start, re-read when one changes (size or
mtime, checked once a second by the node) and on SIGHUP, as opentracker does.

The first load fails loudly (a ConfigError: a tracker must not start open when its operator
asked for a list); later a missing or bad file is logged and counted, and the lists in force
stay. Deny wins over allow (:class:`~chisme.tracker.access.AccessList`).
"""

from __future__ import annotations

import logging
import os

from chisme.errors import ConfigError, InvalidInput
from chisme.metrics import Metrics
from chisme.tracker.access import AccessList, parse_hash_list

log = logging.getLogger("chisme.tracker")


class AccessFiles:
    """Keeps ``access`` in step with the ``allow``/``deny`` files ("" for none)."""

    def __init__(self, access: AccessList, metrics: Metrics, *, allow: str, deny: str) -> None:
        self.access = access
        self.metrics = metrics
        self.allow = allow
        self.deny = deny
        self._stamps: dict[str, tuple[int, int]] | None = None

    @property
    def configured(self) -> bool:
        return bool(self.allow or self.deny)

    def reload(self, force: bool = False) -> bool:
        """Re-read the files if one changed, or always with ``force``; True if new lists are
        in force (see the module docstring for failures)."""
        first = self._stamps is None
        try:
            stamps: dict[str, tuple[int, int]] = {}
            for path in (self.allow, self.deny):
                if path:
                    st = os.stat(path)
                    stamps[path] = (st.st_mtime_ns, st.st_size)
            if not force and stamps == self._stamps:
                return False
            self._stamps = stamps
            allow = self._read(self.allow) if self.allow else None
            deny = self._read(self.deny) if self.deny else frozenset()
        except (OSError, InvalidInput) as e:
            self.metrics.access_reloads.labels("failed").inc()
            reason = e.reason if isinstance(e, InvalidInput) else f"{e.filename}: {e.strerror}"
            if first:
                raise ConfigError(f"tracker access list: {reason}") from None
            log.warning("tracker access lists not reloaded (the old ones stay): %s", reason)
            return False
        self.access.replace(allow, deny)
        self.metrics.access_reloads.labels("ok").inc()
        log.info(
            "tracker access lists loaded: %s allowed, %d denied",
            "all" if allow is None else len(allow),
            len(deny),
        )
        return True

    @staticmethod
    def _read(path: str) -> frozenset[bytes]:
        with open(path, "rb") as f:
            return parse_hash_list(f.read(), path)
