"""docs/method.md's "A saved prompt with plain transformers": its code block, run as written on every tiny model
family, gives `xlspt predict`'s probabilities."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from xlspt.cli import main

SNIPPET = re.search(r"<!-- plain-transformers -->\n```python\n(.*?)```\n<!-- /plain-transformers -->",
                    (Path(__file__).resolve().parents[1] / "docs" / "method.md").read_text(encoding="utf-8"), re.S)
TEXTS = ("the team won the match in the last minute", "parliament voted on the new health law " * 12)  # one truncated


@pytest.mark.parametrize("family", ["gemma3", "xglm", "bloom", "llama"])
def test_the_documented_snippet_gives_predicts_probabilities(family, tiny_model_dirs, sib200_dir, tmp_path, capsys):
    assert SNIPPET, "docs/method.md lost its plain-transformers block"
    folder = tmp_path / "prompt"
    assert main(["train", "--preset", "study", "--model", str(tiny_model_dirs[family]), "--data", str(sib200_dir),
                 "--dtype", "float32", "--shots", "2", "--epochs", "1", "--prompt-length", "3", "--max-length", "24",
                 "--out", str(folder), "--quiet"]) == 0
    capsys.readouterr()
    assert main(["predict", "--prompt", str(folder), "--format", "json", "--top-k", "7", *TEXTS]) == 0
    predicted = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    for text, expected in zip(TEXTS, predicted):
        printed = {}
        exec(SNIPPET.group(1), {"folder": str(folder), "model_dir": str(tiny_model_dirs[family]), "text": text,
                                "print": printed.update})
        top = {entry["label"]: entry["probability"] for entry in expected["top_k"]}
        assert set(printed) == set(top)
        assert all(abs(printed[label] - top[label]) < 1e-5 for label in top), (printed, top)
