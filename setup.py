"""The one thing pyproject.toml cannot say yet without an experimental table:
the compiled fast path of tree decoding (src/keep/protocol/_nodes.c).

It is optional: without a C compiler or Python's headers keep installs and
decodes trees in Python alone, with the same results (the tests hold the two
to the same answers); scripts/system-packages.sh installs the headers the
tests need, and CI fails if the extension is missing.
"""

from setuptools import Extension, setup

setup(ext_modules=[Extension("keep.protocol._nodes", ["src/keep/protocol/_nodes.c"], optional=True)])
