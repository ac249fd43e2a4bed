"""A progress line for the terminal: bytes, rate, ETA. Pure formatting plus one writer."""
from __future__ import annotations

import sys
import time


def human(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


def duration(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}" if seconds >= 3600 else \
        f"{seconds // 60}:{seconds % 60:02d}"


def bar_line(done: int, total: int, elapsed: float, width: int = 30) -> str:
    fraction = min(1.0, done / total) if total else 0.0
    filled = int(fraction * width)
    rate = done / elapsed if elapsed > 0 else 0.0
    eta = (total - done) / rate if rate > 0 else None
    return (f"[{'#' * filled}{'.' * (width - filled)}] {fraction * 100:5.1f}%  {human(done)}/{human(total)}  "
            f"{human(rate)}/s  ETA {duration(eta) if eta is not None else '--:--'}")


class ProgressBar:
    def __init__(self, stream=sys.stderr) -> None:
        self._stream = stream
        self._start = time.monotonic()
        self._tty = stream.isatty()

    def update(self, done: int, total: int) -> None:
        line = bar_line(done, total, time.monotonic() - self._start)
        self._stream.write(("\r" + line) if self._tty else line + "\n")
        self._stream.flush()

    def message(self, text: str) -> None:
        self._stream.write(("\r\033[K" if self._tty else "") + text + "\n")
        self._stream.flush()
