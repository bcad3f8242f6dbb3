"""The README's newcomer path (one inference message, from the topic to a drift event) names
files and functions that exist, and its count of files and hops is the count of what it names."""

from __future__ import annotations

import functools
import importlib
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
START, END = "One inference message, from the topic to a drift event.", "Two detours:"


def path_section() -> str:
    readme = (ROOT / "README.md").read_text()
    return readme[readme.index(START):readme.index(END)]


def listed(section: str) -> str:
    """The numbered list: its items and their continuation lines."""
    return "\n".join(line for line in section.splitlines() if re.match(r"(\d+\.\s|\s{3,}\S)", line))


def names(text: str) -> list[tuple[str, bool]]:
    """The backticked names in order, each with whether it is a hop (outside parentheses)."""
    out, depth = [], 0
    for part in re.split(r"(`[^`]+`|[()])", text):
        if part == "(":
            depth += 1
        elif part == ")":
            depth -= 1
        elif part.startswith("`"):
            out.append((part.strip("`"), depth == 0))
    return out


def module_of(file: str) -> str:
    return "model_monitoring." + file.removesuffix(".py").replace("/", ".")


def test_every_name_on_the_path_exists_in_the_file_named_before_it() -> None:
    found = names(listed(path_section()))
    assert len(found) > 20, found
    module = None
    for name, _ in found:
        if name.endswith(".py"):
            assert (ROOT / name).is_file(), name
            module = module_of(name)
        elif not (ROOT / "schemas" / f"{name}.json").is_file():  # a topic is where the path ends
            assert module is not None, name
            # an AttributeError names what the README names and the code lacks
            functools.reduce(getattr, name.split("."), importlib.import_module(module))


def test_the_counts_the_readme_gives_are_the_counts_of_its_list() -> None:
    section = path_section()
    found = names(listed(section))
    hops = [n for n, hop in found if hop and not n.endswith(".py")]
    # a file counts when a hop's code is in it: the last file named before the hop
    files, current = set(), None
    for name, hop in found:
        if name.endswith(".py"):
            current = name
        elif hop and not (ROOT / "schemas" / f"{name}.json").is_file():
            files.add(current)
    said = re.search(r"That is (\d+) files and (\d+) hops", section)
    assert said, "the README states its counts"
    assert (int(said[1]), int(said[2])) == (len(files), len(hops) - 1), (sorted(files), hops)
