"""tools/images without Docker: content tags, the generated tag file, recipes vs README and charts."""

from __future__ import annotations

import re
import shutil
import tomllib
from pathlib import Path

import pytest
import yaml

from infra.config import ImageTags
from infra.image_tags import IMAGE_TAGS
from tools.images import tagfile
from tools.images.bases import TRIM_SCRIPT
from tools.images.builder import plan
from tools.images.recipes import (
    IMAGES_DIR,
    Flavour,
    RecipeError,
    load_flavours,
    load_pins,
    load_recipes,
    parse_recipe,
)
from tools.images.tags import base_tag, folder_digest, image_tag
from tools.paths import REPO_ROOT

pytestmark = pytest.mark.unit

README = (IMAGES_DIR / "README.md").read_text(encoding="utf-8")


def _copy(name: str, tmp_path: Path) -> Path:
    """A copy of images/<name>/ (same folder name, so the tag is comparable)."""
    target = tmp_path / name
    shutil.copytree(IMAGES_DIR / name, target)
    return target


def _tag_of(folder: Path) -> str:
    flavours, pins = load_flavours(), load_pins()
    recipe = parse_recipe(folder, flavours, pins)
    bases = {n: base_tag(f, pins, TRIM_SCRIPT) for n, f in flavours.items()}
    return image_tag(recipe, pins, bases)


def test_same_inputs_give_the_same_tag_wherever_the_recipe_lives(tmp_path: Path) -> None:
    original = _tag_of(IMAGES_DIR / "kafka")
    assert re.fullmatch(r"[0-9a-f]{12}", original)
    assert _tag_of(IMAGES_DIR / "kafka") == original
    assert _tag_of(_copy("kafka", tmp_path)) == original


def test_an_edited_added_or_renamed_file_gives_a_new_tag(tmp_path: Path) -> None:
    folder = _copy("kafka", tmp_path)
    before = _tag_of(folder)
    dockerfile = folder / "Dockerfile"
    dockerfile.write_text(dockerfile.read_text() + "# a comment is a change too\n")
    edited = _tag_of(folder)
    (folder / "bin" / "extra.sh").write_text("#!/bin/sh\n")
    added = _tag_of(folder)
    (folder / "bin" / "extra.sh").rename(folder / "bin" / "other.sh")
    renamed = _tag_of(folder)
    assert len({before, edited, added, renamed}) == 4


def test_caches_in_a_recipe_do_not_change_its_tag(tmp_path: Path) -> None:
    folder = _copy("tools", tmp_path)
    before = folder_digest(folder)
    (folder / "__pycache__").mkdir()
    (folder / "__pycache__" / "x.cpython-311.pyc").write_bytes(b"\0")
    assert folder_digest(folder) == before


def test_a_pinned_version_or_a_base_package_change_gives_a_new_tag() -> None:
    flavours, pins = load_flavours(), load_pins()
    recipe = parse_recipe(IMAGES_DIR / "minio", flavours, pins)
    bases = {n: base_tag(f, pins, TRIM_SCRIPT) for n, f in flavours.items()}
    tag = image_tag(recipe, pins, bases)
    assert image_tag(recipe, {**pins, "MINIO_VERSION": "v0.0.0-other"}, bases) != tag
    minbase = flavours["minbase"]
    changed = Flavour(name="minbase", packages=(*minbase.packages, "curl"))
    assert base_tag(changed, pins, TRIM_SCRIPT) != bases["minbase"]
    assert image_tag(recipe, pins, {**bases, "minbase": base_tag(changed, pins, TRIM_SCRIPT)}) != tag
    assert base_tag(minbase, {**pins, "DEBOOTSTRAP_VERSION": "9.9"}, TRIM_SCRIPT) != bases["minbase"]


def test_infra_image_tags_is_current() -> None:
    current = {name: ref.rsplit(":", 1)[1] for name, ref in plan(None).refs.items()}
    assert tagfile.is_current(current), "stale: run python -m tools.images tags --write and commit infra/image_tags.py"
    assert current == IMAGE_TAGS


def test_stack_config_image_defaults_are_the_built_tags() -> None:
    defaults = ImageTags()
    for name in ImageTags.model_fields:
        # Field names are identifiers; image names use hyphens (dask_operator -> images/dask-operator).
        assert getattr(defaults, name) == IMAGE_TAGS[name.replace("_", "-")], name


def test_every_image_and_flavour_is_documented_in_the_readme() -> None:
    table = dict(re.findall(r"^\| (\S+) \| (\d+) \|", README, re.M))
    for name, recipe in load_recipes().items():
        if name in {"pause", "coredns", "minio", "postgres", "kafka", "tools"}:
            assert table.get(name) == str(recipe.uid), f"images/README.md table row for {name} (UID {recipe.uid})"
    for flavour in load_flavours():
        assert f"`{flavour}`" in README, f"flavour {flavour} is not described in images/README.md"


def _chart_uid(chart: str) -> int:
    values = yaml.safe_load((REPO_ROOT / "charts" / chart / "values.yaml").read_text())
    return int(values["podSecurityContext"]["runAsUser"])


def test_service_images_run_as_their_charts_uid() -> None:
    recipes = load_recipes()
    for chart in ("minio", "postgres", "kafka"):
        assert recipes[chart].uid == _chart_uid(chart), chart
    # The minio and kafka init Jobs run the tools image with their chart's pod security context.
    assert recipes["tools"].uid == _chart_uid("minio") == _chart_uid("kafka")


def _final_user(dockerfile: Path) -> str:
    final_stage = re.split(r"^FROM\s", dockerfile.read_text(), flags=re.M)[-1]
    users = re.findall(r"^USER\s+(\S+)", final_stage, re.M)
    assert users, f"{dockerfile}: the final stage sets no USER"
    return str(users[-1])


def test_every_dockerfile_ends_as_the_recipes_numeric_uid() -> None:
    for name, recipe in load_recipes().items():
        user = _final_user(recipe.folder / "Dockerfile")
        assert user in {f"{recipe.uid}:{recipe.uid}", str(recipe.uid)}, (
            f"{name}: USER {user}, image.toml uid {recipe.uid}"
        )


def test_no_dockerfile_reaches_for_the_network() -> None:
    for dockerfile in IMAGES_DIR.glob("*/Dockerfile"):
        text = dockerfile.read_text()
        for banned in ("apt-get", "curl ", "wget ", "pip download", "git clone"):
            assert banned not in text, f"{dockerfile}: {banned!r} (no network during a build)"
        for line in re.findall(r"pip install.*(?:\\\n.*)*", text):
            assert "--no-index" in line, f"{dockerfile}: pip install without --no-index"


def _locked_versions(lines: str) -> dict[str, str]:
    return {m[0].lower(): m[1] for m in re.findall(r"^([A-Za-z0-9_.-]+)==([^\s\\;]+)", lines, re.M)}


def test_image_requirements_agree_with_the_root_lock() -> None:
    lock = tomllib.loads((REPO_ROOT / "uv.lock").read_text())
    root = {p["name"].lower(): p["version"] for p in lock["package"] if "version" in p}
    for requirements in IMAGES_DIR.glob("*/requirements.txt"):
        text = requirements.read_text()
        assert "--hash=sha256:" in text, f"{requirements} is not hashed"
        for name, version in _locked_versions(text).items():
            if name in root:
                assert version == root[name], f"{requirements}: {name}=={version} but uv.lock has {root[name]}"


def _write_recipe(folder: Path, toml: str) -> Path:
    folder.mkdir()
    (folder / "Dockerfile").write_text("FROM scratch\nUSER 1000:1000\n")
    (folder / "image.toml").write_text(toml)
    return folder


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        ('title="x"\ndescription="x"\nuid=0\nprobe="true"\n', "non-root"),
        ('title="x"\ndescription="x"\nuid=1000\nprobe="true"\nbases=["nope"]\n', "not a flavour"),
        ('title="x"\ndescription="x"\nuid=1000\nprobe="true"\nversions=["NOPE_VERSION"]\n', "pinned nowhere"),
        ('title="x"\ndescription="x"\nuid=1000\nprobe="true"\ncolour="red"\n', "unknown keys"),
        ('title="x"\ndescription="x"\nuid=1000\n', "`probe`"),
        ('title="x"\ndescription="x"\nuid=1000\nprobe="t"\n[inputs]\n"a"="http://x"\n', "[inputs]"),
    ],
)
def test_a_bad_recipe_is_refused_with_the_fix(tmp_path: Path, toml: str, message: str) -> None:
    folder = _write_recipe(tmp_path / "bad", toml)
    with pytest.raises(RecipeError) as caught:
        parse_recipe(folder, load_flavours(), load_pins())
    assert message in str(caught.value)
    assert "fix:" in str(caught.value)


def test_an_unknown_image_name_is_refused_with_the_list() -> None:
    with pytest.raises(RecipeError, match="unknown image"):
        plan(["no-such-image"])


def test_a_pin_defined_twice_differently_is_refused(tmp_path: Path) -> None:
    shared, own = tmp_path / "shared.env", tmp_path / "own.env"
    shared.write_text("KAFKA_VERSION=4.1.1\n")
    own.write_text("KAFKA_VERSION=4.0.0\n")
    with pytest.raises(RecipeError, match="disagrees"):
        load_pins(shared, own)
