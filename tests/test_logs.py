"""xlspt's lines go through module loggers: the message alone on the standard error of the moment, the same lines
from the command line and the Python API, and each piece of work silent where its caller mutes it."""

from __future__ import annotations

import logging
import threading

import pytest

import xlspt
from xlspt.cli import main
from xlspt.logs import install, muted

TINY_RUN = ["--epochs", "1", "--shots", "2", "--prompt-length", "2", "--quiet"]


def test_a_module_line_is_the_message_alone_on_the_current_stderr(capsys):
    logging.getLogger("xlspt.study.sweep").info("a line of progress")
    logging.getLogger("xlspt.serve").warning("warning: a warning")
    logging.getLogger("xlspt.study.sweep").debug("not shown")
    captured = capsys.readouterr()
    assert captured.err == "a line of progress\nwarning: a warning\n" and captured.out == ""


def test_installing_again_adds_no_second_handler(capsys):
    assert install() is install()
    logging.getLogger("xlspt.cli").info("once")
    assert capsys.readouterr().err == "once\n"


def test_muted_hides_lines_but_not_warnings_and_ends_with_its_scope(capsys):
    logger = logging.getLogger("xlspt.classifiers.training")
    with muted():
        logger.info("hidden")
        with muted(False):  # an inner scope cannot unmute an outer one
            logger.info("hidden too")
        logger.warning("warning: shown")
    with muted(False):
        logger.info("shown")
    logger.info("shown again")
    assert capsys.readouterr().err == "warning: shown\nshown\nshown again\n"


def test_muted_holds_for_its_own_thread_only(capsys):
    logger = logging.getLogger("xlspt.serve")
    with muted():
        thread = threading.Thread(target=logger.info, args=("from another thread",))
        thread.start()
        thread.join()
        logger.info("hidden")
    assert capsys.readouterr().err == "from another thread\n"


def test_the_lines_can_go_to_the_callers_handlers():
    """A program that wants xlspt's lines in its own log lets them propagate."""
    seen: list[logging.LogRecord] = []
    mine = logging.Handler()
    mine.emit = seen.append
    parent, root = logging.getLogger(), logging.getLogger("xlspt")
    parent.addHandler(mine)
    root.propagate = True
    try:
        logging.getLogger("xlspt.study.executors").info("[1/1] a run")
    finally:
        root.propagate = False
        parent.removeHandler(mine)
    assert [(r.name, r.getMessage()) for r in seen] == [("xlspt.study.executors", "[1/1] a run")]


def test_run_says_what_it_trains_and_train_does_not(tiny_model_dirs, sib200_dir, tmp_path, capsys):
    common = ["--preset", "study", "--model", str(tiny_model_dirs["gemma3"]), "--data", str(sib200_dir), *TINY_RUN]
    assert main(["run", *common, "--langs", "eng_Latn", "--out", str(tmp_path / "run")]) == 0
    said = capsys.readouterr().err
    assert "training a prompt (" in said and "scoring " in said and f"wrote {tmp_path / 'run'}" in said
    assert main(["train", *common, "--out", str(tmp_path / "trained")]) == 0
    said = capsys.readouterr().err
    assert "training a prompt (" not in said and "\nmodel " in said


@pytest.mark.parametrize("progress", [True, False])
def test_the_api_names_an_ensembles_members_only_with_progress(tiny_models, data, capsys, progress):
    xlspt.PromptClassifier.train(tiny_models["gemma3"], data, shots=2, ensemble=2, recipe=None, progress=progress,
                                 prompt=xlspt.PromptConfig(length=2), training=xlspt.TrainConfig(epochs=1))
    said = capsys.readouterr().err
    assert ("training 2 prompts together" in said) is progress
