"""Every notebook of ``notebooks/`` runs top to bottom with a tiny budget (nbclient).

Convention for the notebooks (see the README's "Notebooks" section): the first code cell is
tagged ``parameters`` and sets ``BUDGET = "full"``, and ``OUT = "..."`` (or ``OUT_<name>``) for
every directory the notebook writes to. This runner keeps that cell and appends to it
``BUDGET = "tiny"`` and each ``OUT``/``OUT_*`` name set to a fresh directory under pytest's
``tmp_path``; the package functions the notebooks call define what ``"tiny"`` means (each
notebook under ~60 s on an idle 2-core machine). A failing cell fails the test with the cell's
source and the error it raised.

The kernel is this interpreter (a kernel spec written under ``tmp_path`` runs
``sys.executable -m ipykernel_launcher``), with the repository first on ``PYTHONPATH`` and
Jupyter's runtime and IPython's profile directories under ``tmp_path``: nothing is written to
the home directory. The notebooks are globbed, so notebooks added later are covered.
"""

from __future__ import annotations

import ast
import json
import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
KERNEL = "twin-tests-python"
TIMEOUT_S = 600  # per cell; a tiny budget takes seconds, this only stops a hung kernel


def parameters_cell(nb) -> int:
    """Index of the cell tagged ``parameters``; it must be the first code cell and set BUDGET."""
    code = [i for i, c in enumerate(nb.cells) if c.cell_type == "code"]
    tagged = [i for i in code if "parameters" in nb.cells[i].metadata.get("tags", [])]
    if not tagged or tagged[0] != code[0]:
        raise AssertionError(
            "the first code cell must be tagged 'parameters' (cell metadata tags) and set BUDGET"
        )
    return tagged[0]


def assigned_names(source: str) -> list[str]:
    """Top-level names a cell assigns."""
    names = []
    for node in ast.parse(source).body:
        targets = node.targets if isinstance(node, ast.Assign) else [getattr(node, "target", None)]
        names += [t.id for t in targets if isinstance(t, ast.Name)]
    return names


def tiny_parameters(source: str, out_root: Path) -> str:
    """The parameters cell with the test's values appended: tiny budget, outputs under
    ``out_root``."""
    names = assigned_names(source)
    if "BUDGET" not in names:
        raise AssertionError("the parameters cell must set BUDGET = 'full'")
    lines = [source, "", "# injected by tests/test_notebooks.py", 'BUDGET = "tiny"']
    for name in names:
        if name == "OUT" or name.startswith("OUT_"):
            lines.append(f"{name} = {str(out_root / name.lower())!r}")
    return "\n".join(lines)


def kernel_env(tmp_path: Path, monkeypatch) -> None:
    """A kernel spec for this interpreter under ``tmp_path``; Jupyter/IPython dirs there too."""
    spec = tmp_path / "jupyter" / "kernels" / KERNEL
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "twin tests", "language": "python",
    }))  # fmt: skip
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(tmp_path / "jupyter" / "runtime"))
    monkeypatch.setenv("JUPYTER_PLATFORM_DIRS", "1")
    monkeypatch.setenv("IPYTHONDIR", str(tmp_path / "ipython"))
    path = os.environ.get("PYTHONPATH", "")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(p for p in (str(ROOT), path) if p))


def test_there_are_notebooks():
    assert NOTEBOOKS, "notebooks/ holds no notebook"


@pytest.mark.parametrize("src", [
    'BUDGET = "full"\nOUT = "outputs/x"\nOUT_FIGS = "figs"\nSWEEP_DIR = ""',
])  # fmt: skip
def test_tiny_parameters_rewrites_budget_and_outputs(src, tmp_path):
    ns: dict = {}
    exec(tiny_parameters(src, tmp_path), ns)  # noqa: S102 - the test's own cell text
    assert ns["BUDGET"] == "tiny"
    assert ns["OUT"] == str(tmp_path / "out") and ns["OUT_FIGS"] == str(tmp_path / "out_figs")
    assert ns["SWEEP_DIR"] == ""  # other parameters keep their value
    with pytest.raises(AssertionError, match="BUDGET"):
        tiny_parameters('OUT = "x"', tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs_with_tiny_budget(path: Path, tmp_path: Path, monkeypatch):
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError

    nb = nbformat.read(path, as_version=4)
    i = parameters_cell(nb)
    nb.cells[i].source = tiny_parameters(nb.cells[i].source, tmp_path / "out")
    kernel_env(tmp_path, monkeypatch)
    work = tmp_path / "cwd"
    work.mkdir()
    client = NotebookClient(nb, timeout=TIMEOUT_S, kernel_name=KERNEL,
                            resources={"metadata": {"path": str(work)}})  # fmt: skip
    try:
        client.execute()
    except CellExecutionError as e:
        pytest.fail(f"{path.name}: a cell failed\n{e}", pytrace=False)
