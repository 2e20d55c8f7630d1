"""`make images-push` against a real registry API: go-containerregistry's in-memory registry on
127.0.0.1 (tools/install oci-registry), the same distribution API ECR serves.

What a platform engineer relies on: the verb pushes the content tags the stack deploys
(infra/image_tags.py), under the path they name, as the non-root images the images tier built, and
a second push of unchanged images succeeds (ECR repositories have immutable tags, so the stack never
re-tags; the content tag is the same). A push to a registry that is down fails with the fix.
"""

from __future__ import annotations

import json
import re
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from infra.image_tags import IMAGE_TAGS
from infra.offline import REPO_ROOT
from tests.images.test_images import ImageOf
from tools.devstack.paths import require_tools
from tools.images.daemon import Engine

pytestmark = pytest.mark.images

# The two smallest recipes: the registry keeps every blob in memory.
PUSHED = ("pause", "coredns")
MANIFEST_TYPES = ", ".join(
    [
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
        "application/vnd.docker.distribution.manifest.v2+json",
    ]
)


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """host:port of a fresh registry; it picks a free port and says which on stderr."""
    binary = require_tools("oci-registry")["oci-registry"]
    log = tmp_path_factory.mktemp("registry") / "registry.log"
    with log.open("w") as out:
        proc = subprocess.Popen([str(binary), "-port", "0"], stdout=out, stderr=subprocess.STDOUT)
    try:
        port = _wait_for_port(proc, log)
        yield f"127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def _wait_for_port(proc: subprocess.Popen[bytes], log: Path) -> int:
    for _ in range(100):
        found = re.search(r"serving on port (\d+)", log.read_text())
        if found:
            return int(found.group(1))
        if proc.poll() is not None:
            raise AssertionError(f"oci-registry exited with {proc.returncode}: {log.read_text()}")
        time.sleep(0.1)
    raise AssertionError(f"oci-registry did not say its port: {log.read_text()}")


def _get(url: str, accept: str | None = None) -> Any:
    assert url.startswith("http://127.0.0.1:"), url
    request = urllib.request.Request(url, headers={"Accept": accept} if accept else {})  # noqa: S310
    with urllib.request.urlopen(request, timeout=30) as answer:  # noqa: S310 - 127.0.0.1 only
        return json.loads(answer.read())


def _make_push(registry: str, *images: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["make", "--no-print-directory", "images-push", f"REGISTRY={registry}", f"IMAGES={' '.join(images)}"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=1800,
        check=False,
    )


def test_images_push_puts_the_deployed_tags_into_the_registry(registry: str, image_of: ImageOf, engine: Engine) -> None:
    for name in PUSHED:
        image_of(name)  # built (or cached) before the verb runs, as `make images` would have
    done = _make_push(f"{registry}/qframe", *PUSHED)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    for name in PUSHED:
        tag = IMAGE_TAGS[name]
        assert f"pushed {registry}/qframe/{name}:{tag}" in done.stdout
        assert _get(f"http://{registry}/v2/qframe/{name}/tags/list")["tags"] == [tag]
        manifest = _get(f"http://{registry}/v2/qframe/{name}/manifests/{tag}", MANIFEST_TYPES)
        if "manifests" in manifest:  # an index: follow the linux/amd64 entry
            entry = next(m for m in manifest["manifests"] if m.get("platform", {}).get("architecture") == "amd64")
            manifest = _get(f"http://{registry}/v2/qframe/{name}/manifests/{entry['digest']}", MANIFEST_TYPES)
        config = _get(f"http://{registry}/v2/qframe/{name}/blobs/{manifest['config']['digest']}")
        user = config["config"]["User"]
        assert user, f"{name} was pushed without a user (root)"
        assert user.split(":")[0] not in ("0", "root"), f"{name} was pushed as user {user!r}"
    # Unchanged images push again without error: nothing is re-tagged, so immutable tags hold.
    again = _make_push(f"{registry}/qframe", "pause")
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]


def test_images_push_to_a_registry_that_is_down_says_how_to_fix_it(image_of: ImageOf) -> None:
    image_of("pause")
    done = _make_push("127.0.0.1:9/qframe", "pause")  # port 9 (discard): nothing listens
    assert done.returncode != 0
    assert "docker push 127.0.0.1:9/qframe/pause:" in done.stderr
    assert "fix: docker login 127.0.0.1:9" in done.stderr


def test_images_push_without_registry_names_the_variable() -> None:
    done = subprocess.run(
        ["make", "--no-print-directory", "images-push"], cwd=REPO_ROOT, capture_output=True, text=True, check=False
    )
    assert done.returncode != 0
    assert "error: REGISTRY is not set" in done.stderr
    assert "fix: make images-push REGISTRY=" in done.stderr
