"""bench/decode_memory.py: reading a wide or transparent photo costs no more, against an 8-bit photo's, than the
server charges it against the pixel limit (data/read_cost.py)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image
import pytest

from bbuvl.data.read_cost import read_cost

BENCH = Path(__file__).resolve().parents[1] / "bench" / "decode_memory.py"
MODES = {"RGBA": Image.fromarray(np.zeros((2, 2, 4), np.uint8)), "16-bit grey": Image.fromarray(np.zeros((2, 2), np.uint16)),
         "32-bit grey": Image.fromarray(np.zeros((2, 2), np.int32), "I"), "float grey": Image.fromarray(np.zeros((2, 2), np.float32), "F")}


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_each_kind_peaks_within_what_the_server_charges_it(tmp_path):
    out = tmp_path / "peaks.json"
    # Its own interpreter: each kind is decoded in a fresh process, whose peak the bench reads.
    run = subprocess.run([sys.executable, str(BENCH), "--side", "2000", "--json", str(out)], capture_output=True,
                         text=True, timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr
    peaks = json.loads(out.read_text(encoding="utf-8"))
    assert set(peaks) == {"8-bit RGB", *MODES} and all(v > 0 for v in peaks.values())
    for kind, image in MODES.items():
        cost = read_cost(image).per_pixel
        assert peaks[kind] <= cost * peaks["8-bit RGB"], (kind, peaks)
    assert "bytes a pixel" in run.stdout
