"""The chaos package lives at the repository's top level (`python -m chaos`, like
`bench/`), which is not on pytest's pythonpath: put it there for these tests."""

from __future__ import annotations

import sys
from pathlib import Path

REPO = str(Path(__file__).resolve().parents[2])
if REPO not in sys.path:
    sys.path.insert(0, REPO)
