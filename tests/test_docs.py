"""The documentation site builds with warnings as errors, its API pages list the public API and
the commands, and docs/ holds prose and pictures only (evidence lives in results/)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_the_site_builds_strictly_with_the_api_reference(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    library = (tmp_path / "site" / "api" / "library" / "index.html").read_text()
    for name in (
        "AWRLoss",
        "AWRTrainer",
        "TrajectoryStore",
        "ShuffledPassSampler",
        "make_awr_actor",
        "make_awr_critic",
    ):
        assert f'id="torchrl_awr.{name}"' in library, name
    commands = (tmp_path / "site" / "api" / "commands" / "index.html").read_text()
    for command in ("train", "evaluate", "export", "dataset", "plot", "report"):
        assert f"torchrl-awr {command}" in commands, command


def test_docs_hold_prose_and_pictures_only():
    kinds = {path.suffix for path in (ROOT / "docs").rglob("*") if path.is_file()}
    assert kinds <= {".md", ".png"}, kinds
