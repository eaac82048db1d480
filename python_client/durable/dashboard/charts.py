"""Inline SVG charts: completed and failed tasks per minute as stacked bars."""

from __future__ import annotations

from dataclasses import dataclass

WIDTH = 300
HEIGHT = 60


@dataclass(frozen=True, slots=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    kind: str  # completed or failed
    title: str


def per_minute_bars(completed: list[int], failed: list[int]) -> list[Bar]:
    """The bars of one queue's chart, oldest minute on the left, failed stacked on completed."""
    minutes = max(len(completed), 1)
    peak = max([c + f for c, f in zip(completed, failed, strict=False)] + [1])
    step = WIDTH / minutes
    bars: list[Bar] = []
    for i, (done, bad) in enumerate(zip(completed, failed, strict=False)):
        ago = minutes - 1 - i
        when = f"{ago} min ago" if ago else "this minute"
        label = f"{when}: {done} completed, {bad} failed"
        done_h = HEIGHT * done / peak
        bad_h = HEIGHT * bad / peak
        x = i * step + 1
        if done:
            bars.append(Bar(x, HEIGHT - done_h, step - 2, done_h, "completed", label))
        if bad:
            bars.append(Bar(x, HEIGHT - done_h - bad_h, step - 2, bad_h, "failed", label))
    return bars
