"""Packs the shipped model bundle (models/default) into the wheel as `facetell/_bundle` and its
training recipes (configs/*.yaml) as `facetell/_recipes`, so a non-editable install (`pip
install .`, a built wheel) has its default model and `facetell train` its recipes too; an
editable install reads them where they are. Everything else is in pyproject.toml."""

from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent
BUNDLE = ROOT / "models" / "default"
RECIPES = ROOT / "configs"  # the shipped model's training recipes (not configs/candidates)


class BuildWithBundle(build_py):
    def run(self) -> None:
        super().run()
        target = Path(self.build_lib) / "facetell" / "_bundle"
        self.mkpath(str(target))
        for file in sorted(BUNDLE.iterdir()):
            if file.is_file():
                self.copy_file(str(file), str(target / file.name))
        recipes = Path(self.build_lib) / "facetell" / "_recipes"
        self.mkpath(str(recipes))
        for file in sorted(RECIPES.glob("*.yaml")):
            self.copy_file(str(file), str(recipes / file.name))


setup(cmdclass={"build_py": BuildWithBundle})
