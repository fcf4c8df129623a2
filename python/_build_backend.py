# SPDX-License-Identifier: MIT
"""In-tree PEP 517 backend: setuptools' own, taken from the interpreter's
installation (Debian: python3-setuptools) when pip's isolated build
environment does not have it, so `pip install ./python` works without
reaching PyPI."""

import site
import sys

try:
    from setuptools import build_meta as _meta
except ImportError:
    for _d in site.getsitepackages([sys.base_prefix]):
        if _d not in sys.path:
            sys.path.append(_d)
    from setuptools import build_meta as _meta

build_wheel = _meta.build_wheel
build_sdist = _meta.build_sdist


def _missing(reqs):
    """Only what cannot be imported here (setuptools asks for `wheel`,
    which Debian ships as python3-wheel)."""
    out = []
    for r in reqs:
        name = r.split(">")[0].split("=")[0].split("<")[0].strip()
        try:
            __import__(name)
        except ImportError:
            out.append(r)
    return out


def get_requires_for_build_wheel(config_settings=None):
    return _missing(_meta.get_requires_for_build_wheel(config_settings))


def get_requires_for_build_sdist(config_settings=None):
    return _missing(_meta.get_requires_for_build_sdist(config_settings))


prepare_metadata_for_build_wheel = _meta.prepare_metadata_for_build_wheel
if hasattr(_meta, "build_editable"):
    build_editable = _meta.build_editable

    def get_requires_for_build_editable(config_settings=None):
        return _missing(_meta.get_requires_for_build_editable(config_settings))

    prepare_metadata_for_build_editable = _meta.prepare_metadata_for_build_editable
