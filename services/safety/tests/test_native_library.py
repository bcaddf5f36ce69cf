"""Loading the optional C helpers: a missing or stale build is skipped with a warning, never used."""

from __future__ import annotations

import logging
import shutil
import subprocess
from pathlib import Path

import pytest

from aigc_safety.native_library import load_native


def _compile(tmp_path: Path, source: str) -> Path:
    compiler = shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        pytest.skip("no C compiler here")
    (tmp_path / "lib.c").write_text(source)
    library = tmp_path / "libtest.so"
    subprocess.run([compiler, "-shared", "-fPIC", "-o", str(library), str(tmp_path / "lib.c")], check=True)
    return library


SOURCE = (
    "#include <stdint.h>\nint64_t test_abi(void) { return 7; }\nint64_t twice(int64_t x) { return 2 * x; }\n"
)


def test_a_current_build_gives_its_functions(tmp_path: Path) -> None:
    functions = load_native(_compile(tmp_path, SOURCE), "test_abi", 7, ["twice"], "test helper", "in Python")
    assert functions is not None and functions[0](21) == 42


def test_a_stale_build_is_refused_with_a_warning(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    library = _compile(tmp_path, SOURCE)
    with caplog.at_level(logging.WARNING):
        assert load_native(library, "test_abi", 8, ["twice"], "test helper", "in Python") is None
    assert "has interface 7, this code needs 8" in caplog.text and "in Python" in caplog.text


def test_a_build_without_a_function_is_refused(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    library = _compile(tmp_path, SOURCE)
    with caplog.at_level(logging.WARNING):
        assert load_native(library, "test_abi", 7, ["twice", "thrice"], "test helper", "in Python") is None
    assert "unusable" in caplog.text


def test_no_build_means_no_library_and_no_noise(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        assert load_native(tmp_path / "absent.so", "test_abi", 7, ["twice"], "test helper", "x") is None
    assert caplog.text == ""
