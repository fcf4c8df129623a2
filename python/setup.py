# SPDX-License-Identifier: MIT
# Metadata lives in pyproject.toml; this shim lets Debian's pybuild (its
# distutils plugin) and older pips build the package too.
from setuptools import setup

setup()
