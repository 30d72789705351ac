"""Completion-index interval strings (`1,3-5,7`) as Kubernetes writes, reads and validates them for Indexed Jobs."""

from __future__ import annotations

from typing import Any


def format_indexes(indexes: set[int]) -> str:
    """Ascending; three or more consecutive indexes as `first-last`, two as `a,b` (e.g. `1,3-5,7,8`)."""
    out: list[str] = []
    ordered = sorted(indexes)
    i = 0
    while i < len(ordered):
        j = i
        while j + 1 < len(ordered) and ordered[j + 1] == ordered[j] + 1:
            j += 1
        if i == j:
            out.append(str(ordered[i]))
        elif j == i + 1:
            out.append(f"{ordered[i]},{ordered[j]}")
        else:
            out.append(f"{ordered[i]}-{ordered[j]}")
        i = j + 1
    return ",".join(out)


def parse_indexes(text: Any, completions: int) -> set[int]:
    """The indexes below `completions` an interval string lists; malformed parts are left out (as the job
    controller reads status it did not write). Bounded by `completions`, whatever the string says."""
    out: set[int] = set()
    for part in str(text or "").split(","):
        first, _, last = part.partition("-")
        if not _digits(first) or (last and not _digits(last)):
            continue
        low = int(first)
        if low >= completions:
            break
        high = min(int(last or first), completions - 1)
        out.update(range(low, high + 1))
    return out


def _digits(text: str) -> bool:
    return text.isascii() and text.isdigit() and len(text) <= 19


def _interval(part: str, completions: int) -> tuple[int, int] | str:
    limits = part.split("-")
    if len(limits) > 2:
        return f"the fragment \"{part}\" violates the requirement that an index interval can have at most two " \
               "parts separated by '-'"
    bounds: list[int] = []
    for text in limits:
        if not _go_atoi(text):
            return f"cannot convert string to integer for index: \"{text}\""
        value = int(text)
        if value >= completions:
            return f"too large index: \"{text}\""
        bounds.append(value)
    if len(bounds) == 2 and bounds[0] >= bounds[1]:
        return f"non-increasing order, previous: {bounds[0]}, current: {bounds[1]}"
    return bounds[0], bounds[-1]


def _go_atoi(text: str) -> bool:
    """strconv.Atoi accepts an optional sign and decimal digits."""
    return _digits(text[1:] if text[:1] in ("+", "-") else text)


def index_format_error(text: str, completions: int) -> tuple[int, str | None]:
    """validateIndexesFormat: how many indexes a well-formed string lists, or why it is not well formed."""
    if not text:
        return 0, None
    total, last = 0, None
    for part in text.split(","):
        parsed = _interval(part, completions)
        if isinstance(parsed, str):
            return 0, parsed
        first, end = parsed
        if last is not None and last >= first:
            return 0, f"non-increasing order, previous: {last}, current: {first}"
        total += end - first + 1
        last = end
    return total, None


def overlap_error(completed: str, failed: str, completions: int) -> str | None:
    """failedIndexes and completedIndexes must not share an index (the lowest shared one is named)."""
    if not completed or not failed:
        return None
    done = parse_indexes(completed, completions)
    shared = [i for i in parse_indexes(failed, completions) if i in done]
    return f"failedIndexes and completedIndexes overlap at index: {min(shared)}" if shared else None
