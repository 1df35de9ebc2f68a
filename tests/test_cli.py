import re
import subprocess
import sys

import pytest

from ganforge import cli
from ganforge.backends.cpu import native


def test_info_reports_versions_and_kernel_choices(capsys):
    cli.main(["info"])
    out = capsys.readouterr().out
    assert "numpy" in out and "BLAS" in out
    assert ("ganforge._C loaded" in out) == native.available()[0]
    assert re.search(r"im2col +cpu +-> " + ("cpp" if native.available()[0] else "ref"), out)


def test_the_console_entry_point_runs():
    done = subprocess.run([sys.executable, "-m", "ganforge.cli", "info"], capture_output=True, text=True,
                          env={"GANFORGE_KERNELS": "ref", "PATH": ""})
    assert done.returncode == 0, done.stderr
    assert re.search(r"im2col +cpu +-> ref", done.stdout)


def test_info_says_whether_tf32_is_on():
    for value, state in (("1", "on"), ("0", "off")):
        done = subprocess.run([sys.executable, "-m", "ganforge.cli", "info"], capture_output=True, text=True,
                              env={"GANFORGE_TF32": value, "PATH": ""})
        assert done.returncode == 0, done.stderr
        assert re.search(rf"^tf32 +{state}:", done.stdout, re.MULTILINE), done.stdout


def test_errors_are_one_line_unless_debug_asks_for_the_traceback(tmp_path, capsys, monkeypatch):
    missing = ["sample", str(tmp_path / "nothing"), "--out", str(tmp_path / "x.png")]
    assert cli.main(missing) == 1
    err = capsys.readouterr().err
    assert err.startswith("ganforge: error:") and err.count("\n") == 1 and "Traceback" not in err

    def broken_kernel(args):
        raise RuntimeError("a kernel failed")
    monkeypatch.setattr(cli, "sample", broken_kernel)
    assert cli.main(missing) == 1
    assert "rerun with --debug" in capsys.readouterr().err
    with pytest.raises(RuntimeError, match="a kernel failed"):
        cli.main(["--debug"] + missing)
    monkeypatch.setenv("GANFORGE_DEBUG", "1")
    with pytest.raises(RuntimeError, match="a kernel failed"):
        cli.main(missing)
