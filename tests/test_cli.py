import re
import subprocess
import sys

from ganforge import cli, native


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
