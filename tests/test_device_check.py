"""benchmarks/device_check.py runs end to end with small counts (its --quick smoke test)."""

import json
import pathlib
import subprocess
import sys

REPO = pathlib.Path(__file__).resolve().parent.parent


def test_device_check_quick_writes_its_table(tmp_path):
    out = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "device_check.py"), "--quick",
         "--out-dir", str(tmp_path), "--eval-episodes", "2",
         "--test-args", "tests/test_readme.py -k set_up"],
        capture_output=True, text=True, timeout=900, check=False, cwd=tmp_path,
    )
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    backend = json.loads(next(tmp_path.glob("device-check-*.json")).read_text())
    rows = {row["check"]: row for row in backend["rows"]}
    assert backend["quick"] and backend["hardware"]["backend"]
    for label in ("cold", "warm"):
        main = rows[f"main command, cache {label}"]
        assert main["returncode"] == 0 and main["warnings"] == [], main
        assert main["eval_return"] > 0 and main["saved_programs"] == 1
    parts = [row for row in backend["rows"] if "part" in row]
    assert [row["part"] for row in parts] == ["ppo1", "seeds", "wide", "sac"]
    for row in parts:
        assert "error" not in row["acjax"], row["acjax"]
        assert row["acjax"]["env_steps"] > 0
    tests = rows["test suite"]
    assert tests["passed"] >= 1 and tests["failed"] == tests["errors"] == 0, tests
    table = next(tmp_path.glob("device-check-*.md")).read_text()
    assert "| check | acjax | rejax | acjax / rejax |" in table and "test suite" in table
