"""Sphinx configuration: the pages are Markdown (MyST-Parser); the API reference comes from
the numpydoc docstrings (autodoc + napoleon). Build with warnings as errors:

    sphinx-build -W --keep-going -b html docs docs/_build/html
"""

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # document this checkout's mpigd, installed or not

from mpigd import __version__  # noqa: E402

project = "mpigd"
author = "the mpigd developers"
copyright = "the mpigd developers"
version = release = __version__

extensions = ["myst_parser", "sphinx.ext.autodoc", "sphinx.ext.napoleon"]
source_suffix = {".md": "markdown"}
exclude_patterns = ["_build"]

# Markdown: "#section" links as GitHub renders them, on every page (headings to level 3).
myst_heading_anchors = 3
myst_enable_extensions = ["colon_fence"]

# The docstrings are numpydoc.
napoleon_google_docstring = False
napoleon_numpy_docstring = True
napoleon_use_rtype = False
autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_default_options: dict = {}

html_theme = "alabaster"
html_title = f"mpigd {release}"
html_theme_options = {"description": "Linear models trained over MPI", "fixed_sidebar": True}
