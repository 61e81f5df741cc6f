"""Compact deltas between two snapshot documents, for recordings (:mod:`.record_format`).

A recording keeps a full snapshot only every few seconds (a keyframe) and, between keyframes,
what changed since the previous snapshot. Two snapshots a quarter of a second apart differ in
a few leaves per peer (age, bytes, counters), so a delta is a small fraction of a document,
and a seek applies at most a keyframe's worth of them.

A patch is plain JSON (it is written with orjson), one of three shapes:

``["=", value]``
    replace with ``value`` (anything JSON);
``["{", {key: patch, ...}, [removed keys]]``
    a dict: these keys patched or added, those removed, the rest unchanged;
``["[", length, [[index, patch], ...]]``
    a list cut or grown to ``length``, these indexes patched; an index beyond the old list is
    always a ``"="`` patch.

:func:`diff` returns ``None`` when the two documents are equal. :func:`apply` never changes
its inputs: it copies the dicts and lists along the patched paths and shares the rest with
the base, so every decoded snapshot of a recording is its own document while costing only
what changed.
"""

from __future__ import annotations

from typing import Any

__all__ = ["PatchError", "apply", "diff"]

Patch = list[Any]


class PatchError(ValueError):
    """A patch that does not fit its base (a corrupt recording)."""


def diff(old: Any, new: Any) -> Patch | None:
    """The patch that turns ``old`` into ``new``, or ``None`` when they are equal."""
    if old == new and type(old) is type(new):
        return None
    if isinstance(old, dict) and isinstance(new, dict):
        changed: dict[str, Patch] = {}
        for key, value in new.items():
            if key in old:
                sub = diff(old[key], value)
                if sub is not None:
                    changed[key] = sub
            else:
                changed[key] = ["=", value]
        removed = [key for key in old if key not in new]
        return ["{", changed, removed]
    if isinstance(old, list) and isinstance(new, list):
        items: list[list[Any]] = []
        for i, value in enumerate(new):
            if i < len(old):
                sub = diff(old[i], value)
                if sub is not None:
                    items.append([i, sub])
            else:
                items.append([i, ["=", value]])
        return ["[", len(new), items]
    return ["=", new]


def apply(base: Any, patch: Patch | None) -> Any:
    """``base`` with ``patch`` applied (a new document sharing unpatched parts with ``base``).

    Raises:
        PatchError: The patch is malformed or does not fit ``base``.
    """
    if patch is None:
        return base
    try:
        op = patch[0]
        if op == "=":
            return patch[1]
        if op == "{":
            if not isinstance(base, dict):
                raise PatchError(f"a dict patch on a {type(base).__name__}")
            out = dict(base)
            for key in patch[2]:
                out.pop(key, None)
            for key, sub in patch[1].items():
                out[key] = apply(out[key], sub) if key in out else _value(sub)
            return out
        if op == "[":
            if not isinstance(base, list):
                raise PatchError(f"a list patch on a {type(base).__name__}")
            length = int(patch[1])
            items = list(base[:length])
            for index, sub in patch[2]:
                if index < len(items):
                    items[index] = apply(items[index], sub)
                elif index == len(items):
                    items.append(_value(sub))
                else:
                    raise PatchError(f"list index {index} beyond {len(items)}")
            if len(items) != length:
                raise PatchError(f"list of {len(items)} where the patch says {length}")
            return items
    except (IndexError, KeyError, TypeError, ValueError) as exc:
        if isinstance(exc, PatchError):
            raise
        raise PatchError(f"malformed patch: {exc}") from None
    raise PatchError(f"unknown patch operation {op!r}")


def _value(sub: Patch) -> Any:
    """A new key or list item: only a replacement makes sense."""
    if not isinstance(sub, list) or not sub or sub[0] != "=":
        raise PatchError("a new key or item needs an '=' patch")
    return sub[1]
