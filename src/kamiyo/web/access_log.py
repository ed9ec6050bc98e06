"""What a log line shows of a request's target: its path, never its query string, and with the
path parameters that carry someone's business hidden.

uvicorn's access log writes the full target (``GET /api/v1/exploits?address=0x… HTTP/1.1``),
and logs are read by more people than the caller: query strings carry the addresses a caller
screens and the words it searches, and some paths carry them too (``/api/v1/wallets/0x…``) or a
one-time link token (``/keys/reveal/…``). ``AccessLogView`` is the one place that decides what
of a target is shown; ``install`` puts it on uvicorn's access log, and ``logged_path`` gives the
same view to our own log lines that name a path.
"""

import logging
import re
from collections.abc import Iterable
from typing import Final

from starlette.routing import BaseRoute, Route

# Path parameters shown only by name: the address a caller screens, a one-time link's token.
HIDDEN_PARAMETERS: Final = {"wallet_address": "[address]", "token": "[token]"}
ACCESS_LOGGER: Final = "uvicorn.access"


class AccessLogView(logging.Filter):
    """Rewrites the target in uvicorn's access-log records (its third argument) to what may be
    shown: the path, with the hidden parameters of the route it matches replaced."""

    def __init__(self, routes: Iterable[BaseRoute]) -> None:
        self._private: list[tuple[re.Pattern[str], list[str]]] = []
        for route in routes:
            if isinstance(route, Route):
                hidden = [name for name in route.param_convertors if name in HIDDEN_PARAMETERS]
                if hidden:
                    self._private.append((route.path_regex, hidden))

    def path(self, target: str) -> str:
        """The part of a request target a log line shows."""
        path = target.partition("?")[0]
        for regex, hidden in self._private:
            match = regex.match(path)
            if match is not None:
                return _replace(path, match, hidden)
        return path

    def filter(self, record: logging.LogRecord) -> bool:
        # uvicorn logs '%s - "%s %s HTTP/%s" %d' % (client, method, target, version, status).
        args = record.args
        if isinstance(args, tuple) and len(args) == 5 and isinstance(args[2], str):
            record.args = (args[0], args[1], self.path(args[2]), args[3], args[4])
        return True


def _replace(path: str, match: re.Match[str], hidden: list[str]) -> str:
    shown, end = [], 0
    for start, stop, name in sorted((*match.span(name), name) for name in hidden):
        shown += [path[end:start], HIDDEN_PARAMETERS[name]]
        end = stop
    return "".join([*shown, path[end:]])


_installed = AccessLogView(())


def install(routes: Iterable[BaseRoute]) -> AccessLogView:
    """Puts the view of these routes on uvicorn's access log, in place of any earlier one."""
    global _installed
    logger = logging.getLogger(ACCESS_LOGGER)
    for earlier in [f for f in logger.filters if isinstance(f, AccessLogView)]:
        logger.removeFilter(earlier)
    _installed = AccessLogView(routes)
    logger.addFilter(_installed)
    return _installed


def logged_path(target: str) -> str:
    """A request target as our log lines show it: as the access log does."""
    return _installed.path(target)
