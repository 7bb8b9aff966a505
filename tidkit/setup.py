"""The compiled part of tidkit (tidkit._hamming, the index's inner loops); everything else is
declared in pyproject.toml. In the source tree: ``python setup.py build_ext --inplace``
(``make tidkit-extension``)."""

import os

from setuptools import Extension, setup
from setuptools.command.build_py import build_py


class BuildPy(build_py):
    """This folder is the package (pyproject.toml), so this script would be one of its modules."""

    def find_package_modules(self, package, package_dir):
        found = super().find_package_modules(package, package_dir)
        return [(pkg, module, path) for pkg, module, path in found if module != "setup"]


setup(
    cmdclass={"build_py": BuildPy},
    ext_modules=[
        Extension(
            "tidkit._hamming",
            sources=["_hamming.c"],
            extra_compile_args=[] if os.name == "nt" else ["-O3"],
        )
    ],
)
