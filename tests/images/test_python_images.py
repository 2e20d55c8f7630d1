"""The Python service and operator images (issues 12/13): built, run without a network, non-root,
and each service answers its probe from inside its container.

The `images` tests build through the tier's `image_of` (tests/images/conftest.py; cached: seconds
when nothing changed) and run every container with `--network none`, a read-only root filesystem
where the chart will run it that way, and only tmpfs for the paths the program writes. UID,
compilers, labels and HOME of every image are checked by test_images.py; this file proves each
service works. The `unit` tests check the pinned
inputs (hashed requirements against the root uv.lock and platform/pyproject.toml, the proxy's
npm lock) without Docker.
"""

from __future__ import annotations

import importlib.metadata
import json
import re
import secrets
import subprocess
import time
import tomllib
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tools.images import BuiltImage
from tools.images.daemon import Engine
from tools.images.recipes import IMAGES_DIR, load_recipes
from tools.paths import REPO_ROOT

# The images this file owns; each has a test below that proves its service, not only its import.
PYTHON_IMAGES = ("mlflow", "hub", "notebook", "worker", "dask-operator", "kuberay-operator")
PIP_IMAGES = ("mlflow", "hub", "notebook", "worker", "dask-operator")  # the ones with requirements.txt
# Images whose requirements must carry qframe-research's own dependencies (the wheel goes in --no-deps).
PLATFORM_IMAGES = ("notebook", "worker")
# Every `docker run` here says --pull never: a missing image must fail, never reach for a registry.
HTTP_GET = "import sys, urllib.request as u; sys.stdout.write(u.urlopen(sys.argv[1], timeout=5).read().decode())"
# Prints the HTTP status of a GET (error statuses too), with basic auth when a user and password follow.
HTTP_STATUS = (
    "import base64, sys, urllib.request as u, urllib.error as e\n"
    "req = u.Request(sys.argv[1])\n"
    "if len(sys.argv) > 2:\n"
    " req.add_header('Authorization', 'Basic ' + base64.b64encode(':'.join(sys.argv[2:4]).encode()).decode())\n"
    "try:\n print(u.urlopen(req, timeout=5).status)\n"
    "except e.HTTPError as err:\n print(err.code)"
)


# ----------------------------------------------------------------------------- pinned inputs (unit)


def _pins(requirements: Path) -> dict[str, str]:
    """{canonical name: version} of a `uv pip compile` output."""
    pins: dict[str, str] = {}
    for line in requirements.read_text(encoding="utf-8").splitlines():
        match = re.match(r"^([A-Za-z0-9_.\-]+)(?:\[[^\]]*\])?==([^ ;\\]+)", line)
        if match:
            pins[canonicalize_name(match[1])] = match[2]
    return pins


def _uv_lock_versions() -> dict[str, str]:
    lock = tomllib.loads((REPO_ROOT / "uv.lock").read_text(encoding="utf-8"))
    return {canonicalize_name(p["name"]): p["version"] for p in lock["package"] if "version" in p}


def _platform_requirements() -> list[Requirement]:
    """qframe-research's dependencies including every extra that [all] pulls in."""
    project = tomllib.loads((REPO_ROOT / "platform" / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    reqs = [Requirement(r) for r in project["dependencies"]]
    for extra, items in project["optional-dependencies"].items():
        if extra != "all":
            reqs += [Requirement(r) for r in items]
    return reqs


@pytest.mark.unit
@pytest.mark.parametrize("name", PIP_IMAGES)
def test_requirements_keep_the_root_lock_versions(name: str) -> None:
    locked = _uv_lock_versions()
    pinned = _pins(IMAGES_DIR / name / "requirements.txt")
    assert pinned, f"images/{name}/requirements.txt pins nothing"
    drift = {pkg: (ver, locked[pkg]) for pkg, ver in pinned.items() if pkg in locked and locked[pkg] != ver}
    assert not drift, (
        f"images/{name}/requirements.txt differs from uv.lock (image, lock): {drift}\n"
        f"  fix: python -m tools.images lock {name}"
    )


def _extra_requirements(package: str, extra: str) -> list[str]:
    """The distributions ``package[extra]`` adds, read from the package's own metadata (the venv
    holds the locked version of every qframe-research dependency)."""
    names = []
    for line in importlib.metadata.requires(package) or []:
        requirement = Requirement(line)
        marker = requirement.marker
        if marker is not None and marker.evaluate({"extra": extra}) and not marker.evaluate({"extra": ""}):
            names.append(requirement.name)
    assert names, f"{package}[{extra}] adds nothing according to its metadata; is the extra misspelled?"
    return names


@pytest.mark.unit
@pytest.mark.parametrize("name", PLATFORM_IMAGES)
def test_requirements_cover_every_qframe_research_dependency(name: str) -> None:
    pinned = _pins(IMAGES_DIR / name / "requirements.txt")
    missing = []
    for req in _platform_requirements():
        version = pinned.get(canonicalize_name(req.name))
        if version is None or not req.specifier.contains(version, prereleases=True):
            missing.append(f"{req} (pinned: {version})")
        for extra in req.extras:  # psycopg[binary] -> psycopg-binary, ray[default] -> aiohttp, py-spy, ...
            for companion in _extra_requirements(req.name, extra):
                if canonicalize_name(companion) not in pinned:
                    missing.append(f"{req.name}[{extra}] ({companion} not pinned)")
    assert not missing, (
        f"images/{name}: qframe-research is installed --no-deps, but requirements.txt lacks {missing}\n"
        f"  fix: add them to images/{name}/requirements.in, then python -m tools.images lock {name}"
    )


@pytest.mark.unit
def test_python_images_use_documented_uids() -> None:
    # JupyterHub's convention (1000) for the notebook; the platform's service UID for the rest.
    expected = {
        **{"mlflow": 10001, "worker": 10001, "dask-operator": 10001, "kuberay-operator": 10001},
        **{"hub": 1000, "notebook": 1000},
    }
    recipes = load_recipes()
    assert {name: recipes[name].uid for name in PYTHON_IMAGES} == expected
    for name in PYTHON_IMAGES:
        dockerfile = (IMAGES_DIR / name / "Dockerfile").read_text(encoding="utf-8")
        final_user = re.findall(r"^USER\s+(\S+)", dockerfile, flags=re.MULTILINE)[-1]
        assert final_user == f"{expected[name]}:{expected[name]}", f"images/{name}/Dockerfile ends as USER {final_user}"


@pytest.mark.unit
def test_hub_proxy_lock_pins_configurable_http_proxy_with_integrity_hashes() -> None:
    proxy = IMAGES_DIR / "hub" / "proxy"
    wanted = json.loads((proxy / "package.json").read_text(encoding="utf-8"))["dependencies"]
    lock = json.loads((proxy / "package-lock.json").read_text(encoding="utf-8"))
    packages = lock["packages"]
    assert packages[""]["dependencies"] == wanted, "package-lock.json is stale\n  fix: npm install --package-lock-only"
    version = wanted["configurable-http-proxy"]
    assert re.fullmatch(r"\d+\.\d+\.\d+", version), "pin configurable-http-proxy to an exact version"
    assert packages["node_modules/configurable-http-proxy"]["version"] == version
    unhashed = [name for name, meta in packages.items() if name and not meta.get("integrity", "").startswith("sha512-")]
    assert not unhashed, f"packages without a sha512 integrity hash: {unhashed}"
    # Debian bookworm's nodejs is 18.x: every package must accept it.
    too_new = {
        name: meta["engines"]["node"]
        for name, meta in packages.items()
        if re.search(r">=?\s*(19|[2-9]\d)", str(meta.get("engines", {}).get("node", "")))
    }
    assert not too_new, f"packages that refuse Node 18: {too_new}"


# ----------------------------------------------------------------------------- real containers (images)


ImageOf = Callable[[str], BuiltImage]


@pytest.fixture(scope="module")
def images(image_of: ImageOf) -> dict[str, BuiltImage]:
    """This file's images, built or found cached through the tier's `image_of` (sizes in the summary)."""
    return {name: image_of(name) for name in PYTHON_IMAGES}


class Container:
    """One detached container; `exec` runs a command inside it as the image's user."""

    def __init__(self, engine: Engine, cid: str) -> None:
        self.engine, self.cid = engine, cid

    def exec(self, *command: str, check: bool = True, timeout: float = 120) -> str:
        return self.engine.run("exec", self.cid, *command, check=check, timeout=timeout)

    def logs(self) -> str:
        done = self.engine.run("logs", "--tail", "60", self.cid, check=False)
        return done or "(no output on stdout; stderr is merged by docker logs only with a tty)"


@pytest.fixture
def run_detached(engine: Engine) -> Iterator[Callable[..., Container]]:
    started: list[str] = []

    def start(image: BuiltImage, *args: str, options: tuple[str, ...] = ()) -> Container:
        name = f"qframe-test-{image.name}-{uuid.uuid4().hex[:8]}"
        # No network, unless the test joins another container's namespace (still no network).
        network = () if "--network" in options else ("--network", "none")
        cid = engine.run("run", "--detach", "--pull", "never", *network, "--name", name, *options, image.ref, *args)
        started.append(cid)
        return Container(engine, cid)

    yield start
    for cid in reversed(started):  # joiners before the container whose namespace they share
        engine.run("rm", "--force", cid, check=False)


def _run(engine: Engine, image: BuiltImage, *command: str, options: tuple[str, ...] = ()) -> str:
    return engine.run("run", "--rm", "--pull", "never", "--network", "none", *options, image.ref, *command, timeout=300)


def _wait_for(container: Container, url: str, expect: str, timeout: float = 120, *, status: bool = False) -> str:
    """Polls url from inside the container until its body (or, with status=True, its HTTP status) is expect."""
    script = HTTP_STATUS if status else HTTP_GET
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        last = container.exec("python3", "-c", script, url, check=False, timeout=30)
        if last == expect:
            return last
        time.sleep(1)
    raise AssertionError(f"{url} never answered {expect!r} within {timeout:.0f}s; last: {last!r}\n{container.logs()}")


@pytest.mark.images
def test_mlflow_server_answers_health_and_api_on_a_read_only_root(
    images: dict[str, BuiltImage], run_detached: Callable[..., Container]
) -> None:
    server = run_detached(images["mlflow"], options=("--read-only", "--tmpfs", "/tmp:uid=10001,gid=10001"))
    assert _wait_for(server, "http://127.0.0.1:5000/health", "OK", timeout=180) == "OK"
    experiments = json.loads(
        server.exec(
            "python3",
            "-c",
            HTTP_GET,
            "http://127.0.0.1:5000/api/2.0/mlflow/experiments/get-by-name?experiment_name=Default",
        )
    )
    assert experiments["experiment"]["name"] == "Default"


@pytest.mark.images
def test_mlflow_basic_auth_app_refuses_anonymous_and_admits_the_admin(
    images: dict[str, BuiltImage], run_detached: Callable[..., Container]
) -> None:
    # The chart runs the server with MLflow's basic-auth app. It refuses to start without a CSRF
    # secret and an admin password, both from the environment (Secrets in the chart); users live in
    # their own database (sqlite under the working directory here, Postgres in the chart).
    admin_password = secrets.token_hex(16)
    server = run_detached(
        images["mlflow"],
        *("mlflow", "server", "--app-name", "basic-auth", "--host", "127.0.0.1", "--port", "5000"),
        *("--backend-store-uri", "sqlite:////tmp/mlflow.db", "--workers", "1"),
        options=(
            *("--env", f"MLFLOW_FLASK_SERVER_SECRET_KEY={secrets.token_hex(16)}"),
            *("--env", f"MLFLOW_AUTH_ADMIN_PASSWORD={admin_password}"),
            *("--read-only", "--tmpfs", "/tmp:uid=10001,gid=10001"),
        ),
    )
    assert _wait_for(server, "http://127.0.0.1:5000/health", "OK", timeout=180) == "OK"
    search = "http://127.0.0.1:5000/api/2.0/mlflow/experiments/search?max_results=1"
    assert server.exec("python3", "-c", HTTP_STATUS, search) == "401"
    assert server.exec("python3", "-c", HTTP_STATUS, search, "admin", admin_password) == "200"
    assert server.exec("python3", "-c", HTTP_STATUS, search, "admin", "not-the-password") == "401"


@pytest.mark.images
def test_notebook_has_lab_singleuser_and_the_research_stack(engine: Engine, images: dict[str, BuiltImage]) -> None:
    image = images["notebook"]
    assert re.fullmatch(r"\d+\.\d+\.\d+", _run(engine, image, "jupyter", "lab", "--version"))
    assert re.fullmatch(r"\d+\.\d+\.\d+", _run(engine, image, "jupyterhub-singleuser", "--version"))
    script = (
        "import qframe.research, dask, distributed, ray, mlflow, dask_kubernetes.operator, s3fs; "
        "from qframe.research.backtesting import DistributedBacktestEngine; "
        "print(dask.__version__, ray.__version__, mlflow.__version__)"
    )
    versions = _run(engine, image, "python3", "-c", script).split()
    locked = _uv_lock_versions()
    assert versions == [locked["dask"], locked["ray"], locked["mlflow"]]
    assert _run(engine, image, "sh", "-c", "echo $HOME; pwd") == "/home/jovyan\n/home/jovyan"


# Runs code in a fresh IPython kernel (what a notebook cell does) and prints its stdout.
RUN_IN_KERNEL = """
import sys
from jupyter_client.manager import start_new_kernel
km, kc = start_new_kernel(kernel_name="python3", startup_timeout=120)
out = []
def keep(msg):
    if msg["msg_type"] == "stream":
        out.append(msg["content"]["text"])
try:
    reply = kc.execute_interactive(sys.argv[1], output_hook=keep, timeout=180)
    assert reply["content"]["status"] == "ok", reply["content"]
finally:
    kc.stop_channels()
    km.shutdown_kernel(now=True)
print("".join(out).strip())
"""
KERNELSPECS = (
    "import json, sys, urllib.request as u; "
    "req = u.Request(sys.argv[1], headers={'Authorization': 'token ' + sys.argv[2]}); "
    "print(sorted(json.load(u.urlopen(req, timeout=10))['kernelspecs']))"
)


@pytest.mark.images
def test_notebook_serves_jupyterlab_and_runs_research_code_in_a_kernel(
    images: dict[str, BuiltImage], run_detached: Callable[..., Container]
) -> None:
    token = secrets.token_hex(16)
    lab = run_detached(
        images["notebook"],
        *("jupyter", "lab", "--ip", "127.0.0.1", "--port", "8888", "--no-browser"),
        options=("--env", f"JUPYTER_TOKEN={token}"),
    )
    # The server is up and refuses requests without the token.
    assert _wait_for(lab, "http://127.0.0.1:8888/api/status", "403", status=True) == "403"
    assert lab.exec("python3", "-c", KERNELSPECS, "http://127.0.0.1:8888/api/kernelspecs", token) == "['python3']"
    cell = (
        "import dask, qframe.research\n"
        "from qframe.research.backtesting import DistributedBacktestEngine\n"
        "print(dask.compute(dask.delayed(sum)([20, 22]))[0])"
    )
    assert lab.exec("python3", "-c", RUN_IN_KERNEL, cell, timeout=300) == "42"


@pytest.mark.images
def test_dask_operator_default_command_gets_as_far_as_the_cluster_login(
    engine: Engine, images: dict[str, BuiltImage]
) -> None:
    # Without a cluster the operator must fail exactly at login: the controller module loaded,
    # kopf resolved its identity (it needs a passwd entry for the UID) and asked for credentials.
    done = subprocess.run(
        [engine.docker, "run", "--rm", "--pull", "never", "--network", "none", images["dask-operator"].ref],
        env=engine.env, capture_output=True, text=True, timeout=180, check=False,
    )  # fmt: skip
    output = done.stdout + done.stderr
    assert done.returncode != 0
    assert "LoginError: Ran out of valid credentials" in output, output[-3000:]
    assert "getpwuid" not in output


@pytest.mark.images
def test_worker_runs_a_dask_scheduler_and_worker(
    images: dict[str, BuiltImage], run_detached: Callable[..., Container]
) -> None:
    pod = run_detached(images["worker"], options=("--read-only", "--tmpfs", "/tmp:uid=10001,gid=10001"))
    assert _wait_for(pod, "http://127.0.0.1:8787/health", "ok") == "ok"
    pod.engine.run("exec", "--detach", pod.cid, "dask", "worker", "tcp://127.0.0.1:8786", "--nthreads", "1")
    result = pod.exec(
        "python3",
        "-c",
        "import qframe.research; from distributed import Client; c = Client('tcp://127.0.0.1:8786', timeout=60); "
        "c.wait_for_workers(1, timeout=60); print(c.submit(sum, [20, 22]).result())",
    )
    assert result == "42"


@pytest.mark.images
def test_worker_runs_a_ray_head_and_a_ray_worker(
    images: dict[str, BuiltImage], run_detached: Callable[..., Container]
) -> None:
    # Ray keeps its object store in /dev/shm; Docker's default 64 MB is below Ray's minimum.
    head = run_detached(images["worker"], "sleep", "infinity", options=("--shm-size", "512m", "--memory", "3g"))
    # --node-ip-address: without a network Ray would first probe for its outward address.
    head.exec(
        *("ray", "start", "--head", "--num-cpus", "1", "--node-ip-address", "127.0.0.1"),
        *("--dashboard-host", "127.0.0.1", "--disable-usage-stats"),
        timeout=240,
    )
    # A second container in the head's network namespace (still no network) joins as a worker node;
    # its dashboard agent needs its own port there.
    worker = run_detached(
        images["worker"], "sleep", "infinity",
        options=("--network", f"container:{head.cid}", "--shm-size", "512m", "--memory", "2g"),
    )  # fmt: skip
    worker.exec(
        *("ray", "start", "--address", "127.0.0.1:6379", "--num-cpus", "1", "--node-ip-address", "127.0.0.1"),
        *("--dashboard-agent-listen-port", "52366", "--disable-usage-stats"),
        timeout=240,
    )
    status, deadline = "", time.monotonic() + 120
    while "2.0 CPU" not in status and time.monotonic() < deadline:  # the autoscaler reports after a few s
        time.sleep(2)
        status = head.exec("ray", "status", check=False, timeout=60)
    assert "2.0 CPU" in status, status
    # Two one-CPU tasks at once must run on both nodes, through the driver API a notebook uses.
    tasks = (
        "import time, ray; ray.init()\n"
        "@ray.remote(num_cpus=1)\n"
        "def where():\n    time.sleep(2)\n    return ray.get_runtime_context().get_node_id()\n"
        "print(len(set(ray.get([where.remote() for _ in range(2)]))))"
    )
    assert head.exec("python3", "-c", tasks, timeout=180) == "2"


HUB_CONFIG = """
import sys

c.JupyterHub.ip = "127.0.0.1"
c.JupyterHub.port = 8000
c.JupyterHub.hub_ip = "127.0.0.1"
c.JupyterHub.db_url = "sqlite:////tmp/jupyterhub.sqlite"
c.JupyterHub.cookie_secret_file = "/tmp/jupyterhub_cookie_secret"
c.ConfigurableHTTPProxy.pid_file = "/tmp/jupyterhub-proxy.pid"
c.JupyterHub.authenticator_class = "dummy"
c.DummyAuthenticator.password = "{password}"
c.JupyterHub.spawner_class = "simple"
c.JupyterHub.services = [
    {{"name": "idle-culler", "command": [sys.executable, "-m", "jupyterhub_idle_culler", "--timeout=3600"]}}
]
c.JupyterHub.load_roles = [
    {{"name": "idle-culler", "services": ["idle-culler"],
      "scopes": ["list:users", "read:users:activity", "read:servers", "delete:servers"]}}
]
"""
# Command lines of the container's processes (no ps in the image).
PROCESSES = (
    "import pathlib; print('\\n'.join(p.read_bytes().replace(b'\\0', b' ').decode() "
    "for p in pathlib.Path('/proc').glob('[0-9]*/cmdline') if p.exists()))"
)


@pytest.mark.images
def test_hub_starts_its_proxy_and_culler_and_answers_health_on_a_read_only_root(
    images: dict[str, BuiltImage], run_detached: Callable[..., Container], tmp_path: Path
) -> None:
    (tmp_path / "jupyterhub_config.py").write_text(HUB_CONFIG.format(password=secrets.token_hex(8)))
    tmp_path.chmod(0o755)
    (tmp_path / "jupyterhub_config.py").chmod(0o644)
    hub = run_detached(
        images["hub"],
        "jupyterhub", "--config", "/etc/jupyterhub/jupyterhub_config.py",
        options=(
            *("--volume", f"{tmp_path}:/etc/jupyterhub:ro", "--read-only"),
            *("--tmpfs", "/tmp:uid=1000,gid=1000", "--tmpfs", "/srv/jupyterhub:uid=1000,gid=1000"),
        ),
    )  # fmt: skip
    # Through configurable-http-proxy (which the hub started from this image) to the hub.
    _wait_for(hub, "http://127.0.0.1:8000/hub/health", "200", timeout=120, status=True)
    api = json.loads(hub.exec("python3", "-c", HTTP_GET, "http://127.0.0.1:8000/hub/api/"))
    assert api["version"] == hub.exec("jupyterhub", "--version")
    assert hub.exec("python3", "-c", HTTP_STATUS, "http://127.0.0.1:8000/_chp_healthz") == "200"
    processes = hub.exec("python3", "-c", PROCESSES)
    assert "configurable-http-proxy" in processes, processes
    assert "jupyterhub_idle_culler" in processes, processes


@pytest.mark.images
def test_hub_image_runs_the_proxy_alone(images: dict[str, BuiltImage], run_detached: Callable[..., Container]) -> None:
    # The proxy Deployment runs the same image with configurable-http-proxy as its command.
    proxy = run_detached(
        images["hub"],
        *("configurable-http-proxy", "--ip", "127.0.0.1", "--port", "8000", "--api-ip", "127.0.0.1"),
        *("--api-port", "8001", "--default-target", "http://127.0.0.1:8081"),
        options=("--read-only", "--env", f"CONFIGPROXY_AUTH_TOKEN={secrets.token_hex(16)}"),
    )
    _wait_for(proxy, "http://127.0.0.1:8000/_chp_healthz", "200", timeout=60, status=True)
    assert proxy.exec("python3", "-c", HTTP_STATUS, "http://127.0.0.1:8001/api/routes") == "403"
    assert proxy.exec("node", "--version").startswith("v18.")


@pytest.mark.images
def test_kuberay_operator_is_the_pinned_static_binary(engine: Engine, images: dict[str, BuiltImage]) -> None:
    image = images["kuberay-operator"]
    usage = subprocess.run(
        [engine.docker, "run", "--rm", "--pull", "never", "--network", "none", image.ref, "--help"],
        env=engine.env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert usage.returncode == 0, usage.stderr
    # The flags the operator's Deployment sets (probe and metrics addresses, leader election).
    for flag in ("-health-probe-bind-address", "-metrics-addr", "-enable-leader-election", "-watch-namespace"):
        assert flag in usage.stderr + usage.stdout, f"kuberay-operator --help lacks {flag}"
    labels = json.loads(engine.run("image", "inspect", "--format", "{{json .Config.Labels}}", image.ref))
    assert labels["org.opencontainers.image.title"] == "kuberay-operator"
