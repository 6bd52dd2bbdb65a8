"""The one exception family of atfactory.

Every message names the file, the dotted key and the offending value, and says what would be
accepted, so a user can fix the input without reading code.  A board with several problems
raises one :class:`BoardError` that carries all of them.
"""
from __future__ import annotations

import os
from typing import Iterable, List, Optional, Sequence


class AtFactoryError(Exception):
    """Base of every error atfactory raises on bad input."""


class FormatError(AtFactoryError):
    """Bytes that do not decode as the format they claim to be, or values that cannot be encoded.

    ``offset`` is where in the input the problem was found, when there is one.
    """

    def __init__(self, message: str, offset: Optional[int] = None):
        self.offset = offset
        if offset is not None:
            message = f"at offset 0x{offset:x}: {message}"
        super().__init__(message)


MAX_SHOWN = 200   # characters of a value shown in a message
# str.translate tables.  CONTROL_ESCAPES: every control character (C0, DEL, C1) as \uXXXX, for
# what reaches a terminal; printable() spells the common ones as TOML does; values also escape
# the backslash and the quote of a TOML basic string.
CONTROL_ESCAPES = {c: f"\\u{c:04X}" for c in list(range(0x20)) + list(range(0x7F, 0xA0))}
_NAMED = {ord("\b"): "\\b", ord("\t"): "\\t", ord("\n"): "\\n", ord("\f"): "\\f", ord("\r"): "\\r"}
_PRINTABLE = {**CONTROL_ESCAPES, **_NAMED}
_VALUE = {**_PRINTABLE, ord("\\"): "\\\\", ord('"'): '\\"'}


def printable(text: str) -> str:
    """``text`` with control characters escaped: names from inputs reach terminals and logs as one line."""
    return text if text.isprintable() else text.translate(_PRINTABLE)


def format_value(value) -> str:
    """Show a value as the user wrote it in TOML (strings quoted and escaped, so a message stays
    one line and no control character reaches the terminal; numbers plain; long values cut)."""
    if isinstance(value, str):
        shown = value if len(value) <= MAX_SHOWN else value[:MAX_SHOWN]
        text = shown.translate(_VALUE)
        return '"' + text + '"' + (f"... ({len(value)} characters)" if len(value) > MAX_SHOWN else "")
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        if value.bit_length() > 3 * MAX_SHOWN:   # str() of an int of thousands of digits raises
            return f"an integer of about {int(value.bit_length() * 0.30103)} digits"
        return str(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(format_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{...}"
    return str(value)


class Problem:
    """One thing wrong with a board: where (file, key), what value, and what is accepted."""

    __slots__ = ("file", "key", "value", "message", "has_value", "written")

    NO_VALUE = object()    # "no value to show": distinct from None, which is a value
    _NO_VALUE = NO_VALUE

    def __init__(self, file, key: str, message: str, value=NO_VALUE, written: Optional[str] = None):
        """``written``: the value's text in the board file where TOML forgot it (``0x21000``)."""
        self.file = str(file) if file is not None else None
        self.key = key
        self.message = message
        self.has_value = value is not Problem.NO_VALUE
        self.value = value if self.has_value else None
        self.written = written if self.has_value else None

    def __str__(self) -> str:
        parts = []
        if self.file:
            parts.append(printable(display_path(self.file)))
        if self.key:
            key = printable(self.key)
            shown = printable(self.written) if self.written is not None else format_value(self.value)
            parts.append(f"{key} = {shown}" if self.has_value else key)
        parts.append(printable(self.message))
        return ": ".join(parts)

    def __repr__(self) -> str:
        return f"Problem({str(self)!r})"


class BoardError(AtFactoryError):
    """Everything wrong with one board, collected before anything is written."""

    def __init__(self, problems: Iterable[Problem], more: bool = False):
        """``more``: the problems were looked for until there were too many; more may follow."""
        self.problems: List[Problem] = list(problems)
        self.more = more
        super().__init__("\n".join(str(p) for p in self.problems))

    @classmethod
    def first_of(cls, problems: Sequence[Problem]) -> "BoardError":
        """The first MAX_PROBLEMS of ``problems``, found in order until there were more."""
        return cls(problems[:MAX_PROBLEMS], more=len(problems) > MAX_PROBLEMS)

    def lines(self) -> List[str]:
        """One line per problem, at most MAX_PROBLEMS and a count of the rest."""
        shown = [str(p) for p in self.problems[:MAX_PROBLEMS]]
        if len(self.problems) > MAX_PROBLEMS:
            shown.append(f"... and {len(self.problems) - MAX_PROBLEMS} more problems; fix these first")
        elif self.more:
            shown.append("... and more problems after these; fix these first")
        return shown


# A file of a million typos should not print a million lines.
MAX_PROBLEMS = 100


class ContentError(AtFactoryError):
    """An input file (certificate, key, GATT CSV, ...) whose content is not acceptable.

    ``path`` is the input file when the problem is in one; the board checker adds the board
    file and key that named it.
    """

    def __init__(self, message: str, path: Optional[str] = None, key: Optional[str] = None):
        self.message = message
        self.path = path
        self.key = key      # the board key that named the input, when not the partition's source
        super().__init__(f"{display_path(path)}: {message}" if path else message)


class InputError(ContentError):
    """An input file that cannot be read as a file: missing, a folder, a FIFO, unreadable."""

    @property
    def reading(self) -> str:
        """The reason as the end of "<file> cannot be read...": for messages that name the file first."""
        return self.message if self.message.startswith("cannot be read") else f"cannot be read: {self.message}"


class FirmwareError(AtFactoryError):
    """A release folder or factory image that cannot serve as a board's firmware."""


class MergeError(AtFactoryError):
    """The files of a factory image overlap, or do not fit the flash."""


class ReadError(AtFactoryError):
    """A path given to the read-back tools that is no AT binary atfactory knows."""


class ReleaseError(AtFactoryError):
    """A folder that cannot be read as an ESP-AT release; callers say which setting named it."""


class ExtractError(AtFactoryError):
    """An image from which no board can be written that rebuilds it."""


class SigningError(AtFactoryError):
    """A signing key, public key, manifest or signature that cannot be used."""


class PluginError(AtFactoryError):
    """A plugin failed: the message names the plugin and the hook."""


def did_you_mean(word, choices: Iterable[str]) -> str:
    """"; did you mean X?" when one of ``choices`` is close to ``word`` (a typo), compared without
    case; "" otherwise.  Appended to the one-line message that lists what is accepted."""
    if not isinstance(word, str) or not word:
        return ""
    import difflib

    by_folded = {}
    for choice in choices:
        by_folded.setdefault(choice.lower(), choice)
    close = difflib.get_close_matches(word.lower(), list(by_folded), n=1)
    if not close or by_folded[close[0]] == word:
        return ""
    return f"; did you mean {printable(by_folded[close[0]])}?"


def display_path(path, base: Optional[str] = None) -> str:
    """A path as short as it can be shown unambiguously: relative to ``base`` (default: the
    working folder) when inside it, absolute otherwise."""
    text = str(path)
    try:
        rel = os.path.relpath(text, base or os.getcwd())
    except ValueError:  # another drive on Windows
        return text
    return text if rel.startswith("..") else rel
