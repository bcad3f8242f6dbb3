"""The top-level package names (fixed by the design card) clash with PyPI packages (`tables` is
PyTables, `agents` another one): the imports must resolve to this project."""

from pathlib import Path

import agents
import schemas
import streams
import tables

ROOT = Path(__file__).resolve().parents[2]


def test_project_packages_are_the_ones_imported() -> None:
    for pkg in (agents, schemas, streams, tables):
        assert Path(pkg.__file__).resolve().parent.parent == ROOT, pkg.__file__
