""".gitignore and the Makefile's lock handling, each in a scratch copy (never this checkout's own
state: a Snakemake may be running here)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest

needs_git = pytest.mark.skipif(shutil.which("git") is None, reason="needs git")
needs_make = pytest.mark.skipif(shutil.which("make") is None or shutil.which("pgrep") is None or not Path("/proc/self/cwd").exists(), reason="needs make, pgrep and /proc")


# ---------------------------------------------------------------- .gitignore


@needs_git
@pytest.mark.parametrize("name", ["resources", "results"])
def test_gitignore_covers_a_symlinked_data_directory(project_root, tmp_path, name):
    """Git sees a symlink as a file, which a directory-only pattern (`/resources/`) does not match."""
    repo = tmp_path / "repo"
    repo.mkdir()
    subprocess.run(["git", "init", "-q"], cwd=repo, check=True)
    shutil.copy(project_root / ".gitignore", repo / ".gitignore")
    (tmp_path / "elsewhere").mkdir()
    (repo / name).symlink_to(tmp_path / "elsewhere")
    assert subprocess.run(["git", "check-ignore", "-q", name], cwd=repo, check=False).returncode == 0
    (repo / name).unlink()
    (repo / name / "sub").mkdir(parents=True)  # and still the real directory, with what is inside
    (repo / name / "sub" / "config.json").write_text("{}")
    assert subprocess.run(["git", "check-ignore", "-q", f"{name}/sub/config.json"], cwd=repo, check=False).returncode == 0
    status = subprocess.run(["git", "status", "--porcelain", "--untracked-files=all"], cwd=repo, capture_output=True, text=True, check=True)
    assert status.stdout.split() == ["??", ".gitignore"]


# ---------------------------------------------------------------- a lock left by a killed Snakemake


@pytest.fixture
def scratch(project_root, tmp_path) -> Path:
    """A copy of the Makefile with a lock in .snakemake/locks and a stand-in `snakemake` on PATH
    that records its arguments and removes the locks, as `snakemake --unlock` does."""
    shutil.copy(project_root / "Makefile", tmp_path / "Makefile")
    (tmp_path / ".snakemake" / "locks").mkdir(parents=True)
    (tmp_path / ".snakemake" / "locks" / "0.output.lock").write_text("results/x\n")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "snakemake"
    fake.write_text('#!/bin/sh\necho "$@" >> called.txt\nrm -f .snakemake/locks/*.lock\n')
    fake.chmod(0o755)
    return tmp_path


def make_stale_lock(directory: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PATH": f"{directory / 'bin'}:{os.environ['PATH']}"}
    return subprocess.run(["make", "-s", "stale-lock"], cwd=directory, env=env, capture_output=True, text=True, timeout=60, check=False)


@needs_make
def test_demo_removes_a_lock_when_nothing_runs_here(scratch):
    result = make_stale_lock(scratch)
    assert result.returncode == 0, result.stderr
    assert (scratch / "called.txt").read_text() == "--unlock --configfile config/demo.yaml\n"
    assert "Removing the lock a killed Snakemake left in .snakemake/locks" in result.stderr
    assert make_stale_lock(scratch).returncode == 0  # no lock left: nothing to do
    assert (scratch / "called.txt").read_text().count("--unlock") == 1


@needs_make
def test_demo_leaves_the_lock_of_a_running_snakemake_alone(scratch):
    # a process whose command line is "snakemake 60" (comm: sleep), working in the scratch directory
    running = subprocess.Popen(["bash", "-c", "exec -a snakemake sleep 60"], cwd=scratch)
    try:
        deadline = time.monotonic() + 10
        while b"snakemake" not in Path(f"/proc/{running.pid}/cmdline").read_bytes() and time.monotonic() < deadline:
            time.sleep(0.05)
        result = make_stale_lock(scratch)
    finally:
        running.kill()
        running.wait()
    assert result.returncode == 0, result.stderr
    assert not (scratch / "called.txt").exists()
    assert (scratch / ".snakemake" / "locks" / "0.output.lock").exists()
    assert f"Snakemake runs in this directory (pid {running.pid})" in result.stderr


def test_demo_checks_the_lock_before_it_runs(project_root):
    makefile = (project_root / "Makefile").read_text()
    assert re.search(r"^demo: setup stale-lock$", makefile, re.MULTILINE)
    assert re.search(r"^unlock:\n\tsnakemake --unlock --configfile config/demo.yaml$", makefile, re.MULTILINE)
