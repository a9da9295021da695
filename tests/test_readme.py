"""The README's demo command works: its datakit part runs end to end (models built, recipe run, output valid)."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys

from tests.conftest import REPO


def readme_commands() -> list[str]:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    return re.findall(r"```bash\n(.*?)\n```", text, flags=re.S)


def test_readme_starts_with_the_two_commands():
    first, second = readme_commands()[:2]
    assert "datakit run pipelines/magpie.yaml" in first and "datakit validate" in first
    assert second.endswith("python -m pytest -q")
    ci = (REPO / ".ci" / "run").read_text(encoding="utf-8")
    assert second in ci


def test_demo_command_runs_end_to_end(tmp_path):
    first = readme_commands()[0]
    steps = [shlex.split(part) for part in first.split(" && ")]
    datakit_steps = [s for s in steps if s[0] == ".venv/bin/datakit"]
    assert [s[1] for s in datakit_steps] == ["tiny-model", "tiny-model", "run", "validate", "publish"]
    shutil.copytree(REPO / "pipelines", tmp_path / "pipelines")
    registry = tmp_path / "registry"  # the demo publishes to the local registry; here, a private one
    env = {**os.environ, "VLLM_ENABLE_V1_MULTIPROCESSING": "0", "DATAKIT_REGISTRY": str(registry)}
    outputs = []
    for argv in datakit_steps + datakit_steps[-1:]:  # publishing again finds the same rows and succeeds
        proc = subprocess.run([sys.executable, "-m", "datakit", *argv[1:]], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, f"{' '.join(argv)}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
        outputs.append(proc.stdout)
    assert "valid" in outputs[3]
    assert outputs[4].startswith("published demo/magpie-tiny@0.1.0") and "nothing to do" in outputs[5]
    assert list((tmp_path / "runs" / "magpie" / "output" / "save").glob("*.parquet"))
    assert (registry / "demo" / "magpie-tiny" / "v0.1.0" / "README.md").is_file()
