"""Packaging hook (everything else is in pyproject.toml): a wheel carries the
board's sources and boards.yaml as package data of mpseal_tools, so an
installed `mpseal` can build, flash and provision without a checkout.
In a checkout (editable install) nothing is copied: mpseal_tools.paths finds
the repository's own folders."""
import os
import shutil

from setuptools import setup
from setuptools.command.build_py import build_py

HERE = os.path.dirname(os.path.abspath(__file__))
# repository path -> path under mpseal_tools/_data/ (see mpseal_tools/paths.py)
PACKAGE_DATA = (
    ("firmware", "firmware"),
    ("shared/mpseal", "shared/mpseal"),
    ("tools/mp", "mp"),
    ("boards.yaml", "boards.yaml"),
)


class build_py_with_board_data(build_py):
    def run(self):
        super().run()
        if getattr(self, "editable_mode", False):
            return
        data = os.path.join(self.build_lib, "mpseal_tools", "_data")
        for source, target in PACKAGE_DATA:
            src, dst = os.path.join(HERE, source), os.path.join(data, target)
            if os.path.isdir(src):
                shutil.copytree(src, dst, dirs_exist_ok=True, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
            else:
                os.makedirs(os.path.dirname(dst), exist_ok=True)
                shutil.copyfile(src, dst)


setup(cmdclass={"build_py": build_py_with_board_data})
