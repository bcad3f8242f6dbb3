"""The design card's folders install under one import package, `model_monitoring`: nothing
generic (`tables` is PyTables' name, `agents` and `schemas` other PyPI packages) at the top of
site-packages, and no bare import of those names anywhere in the project."""

import re
from pathlib import Path

import model_monitoring.agents
import model_monitoring.commands
import model_monitoring.schemas
import model_monitoring.streams
import model_monitoring.tables

ROOT = Path(__file__).resolve().parents[2]
FOLDERS = ("agents", "commands", "schemas", "streams", "tables")
BARE = re.compile(r"^\s*(?:from|import)\s+(?:{})\b".format("|".join(FOLDERS)), re.M)


def test_the_namespaced_packages_are_this_repos_folders() -> None:
    for pkg in (model_monitoring.agents, model_monitoring.commands, model_monitoring.schemas,
                model_monitoring.streams, model_monitoring.tables):
        folder = Path(pkg.__file__).resolve().parent
        assert folder.parent == ROOT and folder.name == pkg.__name__.rsplit(".", 1)[1], pkg.__file__


def test_no_bare_import_of_a_folder_name() -> None:
    offenders = []
    for path in sorted(ROOT.glob("**/*.py")):
        if any(part in (".venv", "build", ".git") for part in path.relative_to(ROOT).parts):
            continue
        for match in BARE.finditer(path.read_text()):
            offenders.append(f"{path.relative_to(ROOT)}: {match.group(0).strip()}")
    assert not offenders, offenders
