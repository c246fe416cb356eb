"""Programs some tests need beyond the Python packages: Debian's `chromium` with `chromium-driver`, and a CJK font.

`scripts/system_packages.sh` installs them (`make fonts`, `.ci/run`). Where it succeeded, `.ci/run` names them in
BBUVL_REQUIRE, and a test that would skip for want of one fails instead: the setup says it is there, so the skip
would hide a broken test or a broken lookup, not a bare machine.
"""

from __future__ import annotations

import os
import shutil

import pytest

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
CHROMEDRIVER = shutil.which("chromedriver")
REQUIRE_VARIABLE = "BBUVL_REQUIRE"


def need(what: str, present: bool, why: str) -> None:
    """Skip the calling test because `what` is absent (`why` says how to get it), or fail it if BBUVL_REQUIRE
    names `what`."""
    if present:
        return
    if what in os.environ.get(REQUIRE_VARIABLE, "").split():
        pytest.fail(f"{why}; but {REQUIRE_VARIABLE} says the setup installed {what} (scripts/system_packages.sh)",
                    pytrace=False)
    pytest.skip(why)
