"""The run directory's faults end in one line naming the path and the fix, not a traceback: a symlink loop or a
dangling symlink as the run directory or as a stage folder, a read-only folder, a full disk (`files.path_fault`).
As root a chmod-ed folder stays writable, so the read-only and full-disk cases inject the operating system's error."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from lima_repro import cli, files
from lima_repro.config import Config
from lima_repro.files import PathFaultError, write_json
from lima_repro.runs import new_run_dir
from lima_repro.stage import Stage


def loop(path: Path) -> Path:
    path.symlink_to(path.name)  # points at itself
    return path


def dangling(path: Path) -> Path:
    path.symlink_to(path.parent / "gone")
    return path


@pytest.mark.parametrize("make, what", [(loop, "loops back on itself"), (dangling, "points to .*gone, which is gone")])
def test_a_broken_symlink_as_the_run_directory_or_a_stage_folder_is_one_line(make, what, tmp_path):
    run = make(tmp_path / "run")
    with pytest.raises(PathFaultError, match=f"^{run}: this symlink {what}; remove it or point it at a folder") as e:
        Stage(Config(run_dir=str(run)), "curate")
    assert "\n" not in str(e.value)
    real = tmp_path / "real"
    real.mkdir()
    folder = make(real / "train")
    with pytest.raises(PathFaultError, match=f"^{folder}: this symlink {what}"):
        Stage(Config(run_dir=str(real)), "train")
    with pytest.raises(PathFaultError, match=f"^{folder}: this symlink {what}"):
        write_json(folder / "x.json", {})


@pytest.mark.parametrize("make", [loop, dangling])
def test_new_run_dir_under_a_broken_output_root_is_one_line(make, tmp_path):
    root = make(tmp_path / "runs")
    with pytest.raises(PathFaultError, match=f"^{root}: this symlink"):
        new_run_dir(Config(output_root=str(root)))


def _os_error(code: int):
    def fail(self, *args, **kwargs):
        raise OSError(code, os.strerror(code), str(self))

    return fail


@pytest.mark.parametrize("code", [errno.EACCES, errno.EROFS])
def test_a_read_only_run_directory_is_one_line(code, tmp_path, monkeypatch):
    monkeypatch.setattr(Path, "mkdir", _os_error(code))
    with pytest.raises(PathFaultError, match=f"^{tmp_path / 'run' / 'curate'}: not writable .*give a writable run"):
        Stage(Config(run_dir=str(tmp_path / "run")), "curate")


def test_a_really_read_only_run_directory_is_one_line(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    run.chmod(0o555)
    try:
        if os.access(run, os.W_OK):
            pytest.skip("this user writes into read-only folders (root): the injected test covers it")
        with pytest.raises(PathFaultError, match="not writable"):
            Stage(Config(run_dir=str(run)), "curate")
    finally:
        run.chmod(0o755)


def test_a_full_disk_while_writing_is_one_line_and_leaves_no_temporary_file(tmp_path, monkeypatch):
    monkeypatch.setattr(Path, "write_text", _os_error(errno.ENOSPC))
    with pytest.raises(PathFaultError, match="no space left on the device .*free space or give a run directory"):
        write_json(tmp_path / "a.json", {"x": 1})
    assert list(tmp_path.iterdir()) == []


def test_a_fault_that_is_not_the_file_system_s_stays_a_bug():
    assert files.path_fault(OSError(errno.EBADF, "Bad file descriptor", "/x")) is None
    assert files.path_fault(OSError("no file name")) is None


@pytest.mark.parametrize("make", [loop, dangling])
def test_the_cli_prints_one_line_for_a_broken_run_directory(make, tmp_path, capsys):
    run = make(tmp_path / "run")
    assert cli.main(["judge", "--run-dir", str(run)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"error: {run}: this symlink") and "Traceback" not in err
