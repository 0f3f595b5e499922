"""The runtime and the torch-free helpers import without torch."""

from __future__ import annotations

import subprocess
import sys


def test_runtime_imports_without_torch():
    code = (
        "import sys; sys.modules['torch'] = None\n"
        "import idm, idm.runtime, idm.classes, idm.errors, idm.audio, idm.midi, idm.peaks, idm.demo\n"
        "assert 'torch' not in [m for m in sys.modules if sys.modules[m] is not None]\n"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert res.returncode == 0, res.stderr
