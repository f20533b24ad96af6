"""`glode <stage>`: a failing stage puts its error in its --log file and on stderr, exit 1."""

from __future__ import annotations

import logging

import pytest

from glode import cli
from test_prepare import make_root


@pytest.fixture(autouse=True)
def fresh_logging():
    """Each case starts without handlers (stages replace them; pytest's capture must not see stale ones)."""
    root = logging.getLogger()
    saved = root.handlers[:]
    yield
    for handler in root.handlers:
        if handler not in saved:
            handler.close()
    root.handlers[:] = saved


def prepare_argv(root, out, log):
    return ["prepare", "--data-root", str(root), "--dataset", "conll", "--lang", "xx", "--split", "dev", "--role", "source",
            "--entity-types", "PER", "LOC", "ORG", "MISC", "--out", str(out), "--log", str(log)]


def test_bad_input_error_reaches_the_log_file_without_traceback(tmp_path, capsys):
    root = make_root(tmp_path, "EU NNP B-ORG\nrejects VBZ\n")  # line 2: too few columns
    out, log = tmp_path / "out/dev.parquet", tmp_path / "logs/prepare.log"
    assert cli.main(prepare_argv(root, out, log)) == 1
    text = log.read_text()
    assert "sha256 ok" in text  # what the stage logged before it failed is kept
    assert f"ERROR glode: {root / 'conll/xx/dev.txt'}:2: " in text
    assert "Traceback" not in text and "--verbose" in text
    assert f"{root / 'conll/xx/dev.txt'}:2: " in capsys.readouterr().err
    assert not out.exists()


def test_verbose_adds_the_traceback(tmp_path):
    root = make_root(tmp_path, "EU NNP B-ORG\nrejects VBZ\n")
    log = tmp_path / "prepare.log"
    assert cli.main([*prepare_argv(root, tmp_path / "dev.parquet", log), "--verbose"]) == 1
    assert "Traceback (most recent call last)" in log.read_text() and "GlodeInputError" in log.read_text()


def test_unexpected_error_gets_its_traceback_even_before_logging_was_set_up(tmp_path, capsys):
    def broken_stage(argv):
        raise KeyError("surprise")  # a bug, raised before the stage set up its logging

    log = tmp_path / "nested/stage.log"
    assert cli.run_stage(broken_stage, ["--log", str(log)]) == 1
    text = log.read_text()
    assert "ERROR glode: unexpected error: KeyError: 'surprise'" in text
    assert "Traceback (most recent call last)" in text and "broken_stage" in text
    assert "unexpected error: KeyError" in capsys.readouterr().err


def test_a_library_value_error_gets_its_traceback_a_glode_one_does_not(tmp_path):
    """A ValueError is a clear message only where glode raised it; numpy's is a bug to show."""
    import numpy as np

    from glode.io import GlodeInputError

    def library_error(argv):
        np.ones(3).reshape(2, 2)  # ValueError from inside numpy

    def glode_error(argv):
        from glode.options import check_ranges
        from glode.train_target import TargetTrainingOptions

        check_ranges(TargetTrainingOptions(lr=-1.0))  # ValueError raised by glode itself

    def missing_file(argv):
        open(tmp_path / "nowhere.txt")  # a path error names its path wherever it comes from

    for stage, expected in ((library_error, False), (glode_error, True), (missing_file, True)):
        log = tmp_path / f"{stage.__name__}.log"
        assert cli.run_stage(stage, ["--log", str(log)]) == 1
        text = log.read_text()
        assert ("Traceback (most recent call last)" in text) is not expected, stage.__name__
        assert ("unexpected error" in text) is not expected, stage.__name__
    assert issubclass(GlodeInputError, ValueError)


def test_success_returns_the_stage_code_and_strips_verbose():
    seen = []
    assert cli.run_stage(lambda argv: seen.append(argv), ["--x", "1", "--verbose"]) == 0
    assert seen == [["--x", "1"]]
