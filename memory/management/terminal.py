"""What the commands print: stored or user-given text, shown literally by any terminal.

A product id, a title, a file name or an error message is data. Printed raw, a
``\\x1b[2J`` in it would clear the screen, an OSC sequence (``\\x1b]0;…\\x07``,
``\\x1b]8;;url\\x1b\\\\``) would retitle the window or plant a link, and rich would
read ``API[/]`` as markup and fail. So every command passes such text through
:func:`plain` before a plain write, hands it to rich tables as :func:`literal`,
and prints JSON with :func:`dumps`. The data itself (an export to stdout) is
written as it is: it is a file, not a message. Numbers read in pt-BR through
``memory.infra.formatting``; :func:`memory_log_level` decides which of the memory's
log lines a command shows besides its own messages.
"""
from __future__ import annotations

import json
import logging
from contextlib import contextmanager

from rich.text import Text

# C0 (tab and newline included: a value is shown on one line), DEL, C1 (0x9b is CSI and 0x9d
# OSC on terminals that read 8-bit controls), and the bidirectional formatting characters,
# which reorder on screen the text that follows them.
# A command's exit status when some products got no content (a generation failed, or the
# provider took no more calls): running it again reuses what was saved and finishes the rest.
EXIT_INCOMPLETE = 3

_CONTROLS = (
    *range(0x00, 0x20), 0x7F, *range(0x80, 0xA0),
    0x061C, 0x200E, 0x200F, *range(0x202A, 0x202F), *range(0x2066, 0x206A),
)
# Each one as Python writes it in a repr: "\x1b", "\n", "\u202e".
_VISIBLE = {code: repr(chr(code))[1:-1] for code in _CONTROLS}
# json.dumps escapes C0 itself; inside a JSON string any character may be a \uXXXX escape.
_JSON_ESCAPES = {code: f"\\u{code:04x}" for code in _CONTROLS if code >= 0x7F}


def plain(value) -> str:
    """``str(value)`` with every control character written as its escape (``\\x1b``): a terminal
    prints it and obeys none of it."""
    return str(value).translate(_VISIBLE)


def literal(value, style: str = "") -> Text:
    """:func:`plain` as a rich ``Text``, which rich never reads as markup: ``API[/]`` prints as is."""
    return Text(plain(value), style=style)


def dumps(data, **kwargs) -> str:
    """``json.dumps(data, ensure_ascii=False, **kwargs)``, the same JSON with DEL, C1 and the
    bidirectional characters also written as ``\\uXXXX`` escapes."""
    return json.dumps(data, ensure_ascii=False, **kwargs).translate(_JSON_ESCAPES)


# The memory's log lines a command shows, by its -v: its own messages say what a person needs
# (a summary, the refusals), so by default only warnings join them; -v 2 adds the INFO lines,
# one per product of a catalog run; -v 3 everything.
_LOG_LEVELS = {0: logging.ERROR, 1: logging.WARNING, 2: logging.INFO}


@contextmanager
def memory_log_level(verbosity: int):
    """For the block, the ``memory`` loggers at the level of the command's ``-v`` (warnings at
    the default 1, INFO from 2, DEBUG from 3), whatever ``MEMORY_LOG_LEVEL`` sets for servers."""
    logger = logging.getLogger("memory")
    saved = logger.level
    logger.setLevel(_LOG_LEVELS.get(verbosity, logging.DEBUG))
    try:
        yield
    finally:
        logger.setLevel(saved)
