"""booktools.tidy_notebooks: markers become tags, stored widgets (progress bars) go."""

import json

from booktools import tidy_notebooks
from booktools.tidy_notebooks import WIDGET_VIEW

BAR = {  # what tqdm's widget bar leaves in a notebook run before lmlib.runtime.progress_bar
    "output_type": "display_data",
    "metadata": {},
    "data": {WIDGET_VIEW: {"model_id": "0" * 32, "version_major": 2, "version_minor": 0},
             "text/plain": ["Loading weights:   0%|          | 0/103 [00:00<?, ?it/s]"]},
}  # fmt: skip
LINE = {"output_type": "stream", "name": "stdout", "text": ["train: 6/6 steps\n"]}


def write(tmp_path, source, outputs, widgets=True):
    cell = {"cell_type": "code", "execution_count": 1, "metadata": {}, "source": source,
            "outputs": outputs}  # fmt: skip
    meta = {"widgets": {"application/vnd.jupyter.widget-state+json": {"state": {}}}}
    nb = {"cells": [cell], "metadata": meta if widgets else {}, "nbformat": 4,
          "nbformat_minor": 5}  # fmt: skip
    path = tmp_path / "nb.ipynb"
    path.write_text(json.dumps(nb))
    return path


def test_check_names_widget_cells_and_state_and_changes_nothing(tmp_path, capsys):
    path = write(tmp_path, "x = 1", [BAR, LINE])
    before = path.read_text()
    assert tidy_notebooks.main(["--check", str(path)]) == 1
    assert "cells [0, 'metadata']" in capsys.readouterr().out
    assert path.read_text() == before


def test_tidy_drops_the_widgets_and_keeps_every_other_output(tmp_path):
    path = write(tmp_path, "# NBVAL_IGNORE_OUTPUT\nx = 1", [BAR, LINE])
    assert tidy_notebooks.main([str(path)]) == 0
    nb = json.loads(path.read_text())
    cell = nb["cells"][0]
    assert cell["outputs"] == [LINE] and "widgets" not in nb["metadata"]
    assert "".join(cell["source"]) == "x = 1" and cell["metadata"]["tags"] == [
        "nbval-ignore-output"
    ]
    assert tidy_notebooks.main(["--check", str(path)]) == 0  # tidy now


def test_a_notebook_without_widgets_is_left_alone(tmp_path):
    path = write(tmp_path, "x = 1", [LINE], widgets=False)
    before = path.read_text()
    assert tidy_notebooks.main(["--check", str(path)]) == 0
    assert tidy_notebooks.main([str(path)]) == 0 and path.read_text() == before
