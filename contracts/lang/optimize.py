"""Stage 4: a peephole optimizer over the lowered code, run until nothing changes.

Rewrites, each one gas-neutral or better and each keeping the stack and every failure
the same (operand types are known from the checker, so ``push 0; eq`` meets an int):

* dead code after a jump, return, halt, revert or retsub, up to the next label;
* a jump to the very next instruction; jumps to a jump go straight to its target, and a
  jump to ``halt``, ``return`` or ``retsub`` becomes that instruction;
* a condition's ``not``, ``!= 0``, ``> 0``, ``>= 1`` and ``== 0`` folded into the branch,
  a comparison's ``not`` into the opposite comparison, a constant condition into a jump
  or nothing;
* a value pushed and popped, two swaps, two constant byte strings joined at run time;
* labels nothing jumps to (entries of methods stay).

Must never: change what a program does, the order of its failures, or remove an entry.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Final

from contracts.lang.ir import JUMPS, TERMINAL, Directive, Ins, Item, Label
from contracts.limits import MAX_BYTES_LENGTH

_NEGATED: Final = {"lt": "ge", "ge": "lt", "gt": "le", "le": "gt", "eq": "ne", "ne": "eq"}
_FLIPPED: Final = {"jz": "jnz", "jnz": "jz"}
#: Pushes with no other effect: dropping one with the pop after it changes nothing.
_PURE_PUSHES: Final = frozenset({"push", "dup", "load", "arg"})
_SINGLE_EXITS: Final = frozenset({"halt", "return", "retsub"})
_MAX_ROUNDS: Final = 64


def optimize(code: list[Item]) -> list[Item]:
    """``code`` rewritten by every pass until none changes anything."""
    pinned = {
        item.name
        for before, item in itertools.pairwise(code)
        if isinstance(before, Directive) and isinstance(item, Label)
    }
    passes: list[Callable[[list[Item]], list[Item] | None]] = [
        _dead_code,
        _jump_to_next,
        _thread_jumps,
        _patterns,
        lambda items: _unused_labels(items, pinned),
    ]
    for _ in range(_MAX_ROUNDS):
        changed = False
        for run in passes:
            result = run(code)
            if result is not None:
                code = result
                changed = True
        if not changed:
            break
    return code


def _dead_code(code: list[Item]) -> list[Item] | None:
    out: list[Item] = []
    live = True
    for item in code:
        if not isinstance(item, Ins):
            live = True
            out.append(item)
        elif live:
            out.append(item)
            live = item.op not in TERMINAL
    return out if len(out) != len(code) else None


def _next_labels(code: list[Item], index: int) -> set[str]:
    """Labels that mark the instruction after position ``index``."""
    names = set()
    for item in code[index + 1 :]:
        if not isinstance(item, Label):
            break
        names.add(item.name)
    return names


def _jump_to_next(code: list[Item]) -> list[Item] | None:
    out: list[Item] = []
    changed = False
    for index, item in enumerate(code):
        jumps = isinstance(item, Ins) and item.op in ("jump", "jz", "jnz")
        if jumps and isinstance(item, Ins) and item.arg in _next_labels(code, index):
            changed = True
            if item.op != "jump":  # the condition is still consumed
                out.append(Ins("pop", None, item.line))
            continue
        out.append(item)
    return out if changed else None


def _first_instruction(code: list[Item]) -> dict[str, Ins]:
    """Label -> the instruction it marks."""
    found: dict[str, Ins] = {}
    waiting: list[str] = []
    for item in code:
        if isinstance(item, Label):
            waiting.append(item.name)
        elif isinstance(item, Ins):
            for name in waiting:
                found[name] = item
            waiting = []
        else:
            waiting = []
    return found


def _thread_jumps(code: list[Item]) -> list[Item] | None:
    marks = _first_instruction(code)
    changed = False
    out: list[Item] = []
    for item in code:
        if isinstance(item, Ins) and item.op in ("jump", "jz", "jnz"):
            target = item.arg
            seen = set()
            while isinstance(target, str) and target not in seen:
                seen.add(target)
                mark = marks.get(target)
                if mark is None or mark.op != "jump":
                    break
                target = mark.arg
            mark = marks.get(target) if isinstance(target, str) else None
            if item.op == "jump" and mark is not None and mark.op in _SINGLE_EXITS:
                out.append(Ins(mark.op, None, item.line))
                changed = True
                continue
            if target != item.arg:
                out.append(Ins(item.op, target, item.line))
                changed = True
                continue
        out.append(item)
    return out if changed else None


def _patterns(code: list[Item]) -> list[Item] | None:
    out: list[Item] = []
    changed = False
    index = 0
    while index < len(code):
        replacement, used = _rewrite(code, index)
        if used:
            out.extend(replacement)
            index += used
            changed = True
        else:
            out.append(code[index])
            index += 1
    return out if changed else None


def _rewrite(code: list[Item], index: int) -> tuple[list[Item], int]:
    """A shorter equivalent of the instructions at ``index``, and how many it replaces."""
    window = []
    for item in code[index : index + 3]:
        if not isinstance(item, Ins):
            break
        window.append(item)
    if len(window) < 2:
        return [], 0
    first, second = window[0], window[1]
    line = first.line
    if first.op == "not" and second.op in _FLIPPED:
        return [Ins(_FLIPPED[second.op], second.arg, line)], 2
    if first.op in _NEGATED and second.op == "not":
        return [Ins(_NEGATED[first.op], None, line)], 2
    if first.op in _PURE_PUSHES and second.op == "pop":
        return [], 2
    if first.op == second.op == "swap" and first.arg == second.arg == 1:
        return [], 2
    if first.op == "push" and isinstance(first.arg, int) and second.op in _FLIPPED:
        taken = (first.arg == 0) is (second.op == "jz")
        return ([Ins("jump", second.arg, line)] if taken else []), 2
    if len(window) < 3:
        return [], 0
    third = window[2]
    if (
        first.op == second.op == "push"
        and isinstance(first.arg, bytes)
        and isinstance(second.arg, bytes)
        and third.op == "concat"
        and len(first.arg) + len(second.arg) <= MAX_BYTES_LENGTH
    ):
        return [Ins("push", first.arg + second.arg, line)], 3
    if first.op == "push" and first.arg == 0 and not isinstance(first.arg, bytes):
        if second.op in ("ne", "gt") and third.op in _FLIPPED:  # x != 0, x > 0: branch on x
            return [Ins(third.op, third.arg, line)], 3
        if second.op == "eq" and third.op in _FLIPPED:  # x == 0: branch the other way
            return [Ins(_FLIPPED[third.op], third.arg, line)], 3
    at_least_one = first.op == "push" and first.arg == 1 and second.op == "ge"
    if at_least_one and third.op in _FLIPPED:  # x >= 1 is x != 0: branch on x
        return [Ins(third.op, third.arg, line)], 3
    return [], 0


def _unused_labels(code: list[Item], pinned: set[str]) -> list[Item] | None:
    used = {item.arg for item in code if isinstance(item, Ins) and item.op in JUMPS}
    out = [
        item
        for item in code
        if not isinstance(item, Label) or item.name in used or item.name in pinned
    ]
    return out if len(out) != len(code) else None
