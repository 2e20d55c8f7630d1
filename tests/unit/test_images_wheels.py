"""tools/images/wheels without the network: hashed-file parsing, declared sdists, the wheelhouse key."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tools.images import wheels
from tools.images.recipes import IMAGES_DIR, RecipeError, load_flavours, load_pins, load_recipes, parse_recipe

pytestmark = pytest.mark.unit


def test_hashed_requirements_round_trip() -> None:
    text = (IMAGES_DIR / "hub" / "requirements.txt").read_text()
    pins = wheels.parse_hashed(text)
    assert len(pins) == text.count("==")
    assert all(pin.hashes and all(h.startswith("sha256:") for h in pin.hashes) for pin in pins)
    assert wheels.parse_hashed(wheels._render_hashed(pins)) == pins


def test_every_declared_sdist_is_locked_with_its_source_hash_and_a_build_backend() -> None:
    declaring = [r for r in load_recipes().values() if r.sdists]
    assert declaring, "the hub image declares onetimepass (nativeauthenticator's dependency without a wheel)"
    for recipe in declaring:
        assert recipe.requirements is not None
        pins = {p.name: p for p in wheels.parse_hashed(recipe.requirements.read_text())}
        for name in recipe.sdists:
            assert name in pins, f"images/{recipe.name}: sdist {name} is not in requirements.txt"
            # Only the sdist's hash is locked: the wheel the house builds is hashed when built.
            assert len(pins[name].hashes) == 1
        build = wheels.parse_hashed((recipe.folder / wheels.BUILD_REQUIREMENTS).read_text())
        assert "setuptools" in {p.name for p in build}
    no_sdists = [r for r in load_recipes().values() if not r.sdists]
    assert not any((r.folder / wheels.BUILD_REQUIREMENTS).exists() for r in no_sdists)


def test_the_wheelhouse_key_follows_the_build_backend_and_the_declared_sdists(tmp_path: Path) -> None:
    folder = tmp_path / "hub"
    shutil.copytree(IMAGES_DIR / "hub", folder, ignore=shutil.ignore_patterns("node_modules"))
    requirements = folder / "requirements.txt"
    before = wheels.house_key(requirements)
    assert before == wheels.house_key(IMAGES_DIR / "hub" / "requirements.txt")
    build = folder / wheels.BUILD_REQUIREMENTS
    build.write_text(build.read_text() + "\n")
    after_build = wheels.house_key(requirements)
    assert after_build != before
    toml = folder / "image.toml"
    toml.write_text(toml.read_text().replace('sdists = ["onetimepass"]', "sdists = []"))
    assert wheels.house_key(requirements) != after_build


def test_an_sdist_allowance_needs_python_requirements(tmp_path: Path) -> None:
    folder = tmp_path / "bad"
    folder.mkdir()
    (folder / "Dockerfile").write_text("FROM scratch\nUSER 1000:1000\n")
    (folder / "image.toml").write_text('title="x"\ndescription="x"\nuid=1000\nprobe="true"\nsdists=["onetimepass"]\n')
    with pytest.raises(RecipeError, match="sdists") as caught:
        parse_recipe(folder, load_flavours(), load_pins())
    assert "fix:" in str(caught.value)


def test_an_unpinned_line_is_refused_with_the_fix() -> None:
    with pytest.raises(wheels.WheelError, match="relock"):
        wheels.parse_hashed("jupyterhub>=5 \\\n    --hash=sha256:00\n")
