"""Packs the shipped model bundle (models/default) into the wheel as `facetell/_bundle`, so a
non-editable install (`pip install .`, a built wheel) has its default model too; an editable
install reads models/default where it is. Everything else is in pyproject.toml."""

from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

BUNDLE = Path(__file__).resolve().parent / "models" / "default"


class BuildWithBundle(build_py):
    def run(self) -> None:
        super().run()
        target = Path(self.build_lib) / "facetell" / "_bundle"
        self.mkpath(str(target))
        for file in sorted(BUNDLE.iterdir()):
            if file.is_file():
                self.copy_file(str(file), str(target / file.name))


setup(cmdclass={"build_py": BuildWithBundle})
