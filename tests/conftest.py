"""Settings for every test: property tests draw the same examples on every run (a CI run must not fail on an
example no one has seen before); HYPOTHESIS_PROFILE=explore draws new ones, to look for bugs."""

from __future__ import annotations

import os

from hypothesis import settings

settings.register_profile("ci", derandomize=True, print_blob=True)
settings.register_profile("explore", derandomize=False)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
