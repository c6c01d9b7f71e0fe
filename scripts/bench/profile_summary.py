"""Where the time goes, from py-spy's raw (collapsed) stacks.

    python profile_summary.py profile.txt [--top 25] [--focus FUNCTION]

Prints the share of samples under each function (inclusive), the leaf functions (self),
and a split by package (the innermost frame outside the standard library that names one).
``--focus`` restricts everything to the stacks through one function (e.g. ``run_stage``).
"""

from __future__ import annotations

import argparse
import re
from collections import Counter
from pathlib import Path

_FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^()]*)\)$")

PACKAGES = (
    "sqlalchemy",
    "psycopg2",
    "celery",
    "kombu",
    "billiard",
    "redis",
    "pydantic",
    "fastapi",
    "starlette",
    "uvicorn",
    "anyio",
    "app",
    "pipelines",
    "json",
    "logging",
)


def parse(path: Path) -> Counter[tuple[str, ...]]:
    stacks: Counter[tuple[str, ...]] = Counter()
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if stack and count.isdigit():
            stacks[tuple(stack.split(";"))] += int(count)
    return stacks


def package_of(frame: str) -> str | None:
    match = _FRAME.match(frame)
    file = match["file"] if match else frame
    for package in PACKAGES:
        if file.startswith((package + "/", package + ".")) or f"/{package}/" in file:
            return package
    return None


def summarise(stacks: Counter[tuple[str, ...]], top: int, focus: str | None) -> str:
    if focus:
        stacks = Counter({s: c for s, c in stacks.items() if any(focus in f for f in s)})
    total = sum(stacks.values())
    if not total:
        return "no samples"
    inclusive: Counter[str] = Counter()
    leaf: Counter[str] = Counter()
    packages: Counter[str] = Counter()
    for stack, count in stacks.items():
        for frame in set(stack):
            inclusive[frame] += count
        leaf[stack[-1]] += count
        owner = next((p for f in reversed(stack) if (p := package_of(f))), "other")
        packages[owner] += count
    lines = [f"{total} samples" + (f" through {focus!r}" if focus else "")]
    lines.append("\nby package (innermost frame of a known package):")
    lines += [f"  {c / total:6.1%}  {p}" for p, c in packages.most_common()]
    lines.append(f"\ninclusive, top {top}:")
    lines += [f"  {c / total:6.1%}  {f}" for f, c in inclusive.most_common(top)]
    lines.append(f"\nself (leaf), top {top}:")
    lines += [f"  {c / total:6.1%}  {f}" for f, c in leaf.most_common(top)]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("profile", type=Path, nargs="+")
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--focus")
    args = parser.parse_args()
    stacks: Counter[tuple[str, ...]] = Counter()
    for path in args.profile:
        stacks += parse(path)
    print(summarise(stacks, args.top, args.focus))


if __name__ == "__main__":
    main()
