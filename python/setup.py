"""The version comes from the library's Cargo.toml, so the package and the library agree."""

import pathlib
import re

from setuptools import setup

CARGO = pathlib.Path(__file__).resolve().parent.parent / "Cargo.toml"
VERSION = re.search(r'^version\s*=\s*"([^"]+)"', CARGO.read_text(), re.MULTILINE)
if VERSION is None:
    raise SystemExit(f"no version in {CARGO}")

setup(version=VERSION.group(1))
