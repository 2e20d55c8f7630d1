"""Every image in images/: built, run with `--network none`, not root, its service answers its probe.

Containers that need a client (minio, coredns, kafka) get one from the tools image joined to their
network namespace (`--network container:<id>`), so all traffic stays on the container's loopback.
"""

from __future__ import annotations

import io
import json
import re
import secrets
import shlex
import subprocess
import tarfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tools.images import BuiltImage
from tools.images.daemon import Engine
from tools.images.lint import dockerfiles, lint
from tools.images.recipes import Recipe, load_recipes

pytestmark = pytest.mark.images

RECIPES = load_recipes()
NAMES = sorted(RECIPES)
OCI_LABELS = ("title", "description", "version", "revision", "source")
COMPILERS = {"gcc", "cc", "c++", "g++", "clang", "tcc", "cc1", "x86_64-linux-gnu-gcc-12"}

ImageOf = Callable[[str], BuiltImage]


def _is_scratch(recipe: Recipe) -> bool:
    final_from = re.findall(r"^FROM\s+(\S+)", (recipe.folder / "Dockerfile").read_text(), re.M)[-1]
    return bool(final_from == "scratch")


class Containers:
    """Starts containers for one test and removes them afterwards (also on failure)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.ids: list[str] = []

    def start(self, *args: str) -> str:
        cid = self.engine.run("run", "--detach", *args)
        self.ids.append(cid)
        return cid

    def pid(self, cid: str) -> int:
        return int(self.engine.run("inspect", "--format", "{{.State.Pid}}", cid))

    def logs(self, cid: str) -> str:
        done = subprocess.run(
            [self.engine.docker, "logs", "--tail", "40", cid],
            env=self.engine.env,
            capture_output=True,
            text=True,
            check=False,
        )
        return done.stdout + done.stderr

    def remove_all(self) -> None:
        for cid in reversed(self.ids):
            self.engine.run("rm", "--force", cid, check=False)


@pytest.fixture
def containers(engine: Engine) -> Iterator[Containers]:
    running = Containers(engine)
    yield running
    running.remove_all()


def _user(recipe: Recipe) -> str:
    return f"{recipe.uid}:{recipe.uid}"


def _exec(engine: Engine, cid: str, *argv: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    flags = [item for k, v in (env or {}).items() for item in ("--env", f"{k}={v}")]
    return subprocess.run(
        [engine.docker, "exec", *flags, cid, *argv],
        env=engine.env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _client(engine: Engine, tools: BuiltImage, target: str, script: str, timeout: float = 180) -> str:
    """Runs a python3 script in the tools image inside the target container's network namespace."""
    done = subprocess.run(
        [engine.docker, "run", "--rm", "--network", f"container:{target}", "--user", "1000:1000",
         tools.ref, "python3", "-c", script],
        env=engine.env, capture_output=True, text=True, timeout=timeout, check=False,
    )  # fmt: skip
    assert done.returncode == 0, f"client script failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout


def _until(what: str, check: Callable[[], bool], seconds: float, why: Callable[[], str]) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(1)
    pytest.fail(f"{what} not within {seconds:.0f}s:\n{why()}")


# --- how each image is started for the uid and probe checks ------------------------------------

COREFILE = """.:1053 {
    health :8080
    ready :8181
    hosts {
        10.96.0.10 probe.qframe.test
    }
    errors
}
"""

PG_HBA = "local all all scram-sha-256\nhost all all 127.0.0.1/32 scram-sha-256\n"
# The chart's start command (charts/postgres/templates/statefulset.yaml), verbatim.
PG_START = """set -eu
if [ ! -s "$PGDATA/PG_VERSION" ]; then
  initdb --pgdata="$PGDATA" --username="$POSTGRES_USER" \\
    --pwfile=/etc/postgres/superuser/password --auth=scram-sha-256 \\
    --encoding=UTF8 --no-locale --no-instructions
fi
exec postgres -D "$PGDATA" \\
  -c listen_addresses='*' -c port=5432 \\
  -c hba_file=/etc/postgres/config/pg_hba.conf \\
  -c unix_socket_directories=/var/run/postgresql \\
  -c password_encryption=scram-sha-256
"""


def _launch(recipe: Recipe, image: BuiltImage, containers: Containers, tmp_path: Path) -> str:
    """Starts the image the way its deployment does (or idling, for images that run jobs)."""
    base = ["--network", "none", "--user", _user(recipe)]
    if recipe.name == "coredns":
        (tmp_path / "Corefile").write_text(COREFILE)
        tmp_path.chmod(0o755)
        return containers.start(*base, "--volume", f"{tmp_path}:/etc/coredns:ro", image.ref)
    if recipe.name == "minio":
        secret = secrets.token_hex(16)
        env = ["--env", "MINIO_ROOT_USER=qframe-admin", "--env", f"MINIO_ROOT_PASSWORD={secret}"]
        return containers.start(*base, *env, image.ref)
    if recipe.name == "postgres":
        (tmp_path / "superuser").mkdir()
        (tmp_path / "config").mkdir()
        (tmp_path / "superuser" / "password").write_text(secrets.token_hex(16))
        (tmp_path / "config" / "pg_hba.conf").write_text(PG_HBA)
        for path in (tmp_path, tmp_path / "superuser", tmp_path / "config"):
            path.chmod(0o755)
        mounts = ["--volume", f"{tmp_path / 'superuser'}:/etc/postgres/superuser:ro",
                  "--volume", f"{tmp_path / 'config'}:/etc/postgres/config:ro"]  # fmt: skip
        env = ["--env", "POSTGRES_USER=postgres", "--env", "PGDATA=/var/lib/postgresql/data"]
        return containers.start(*base, *mounts, *env, "--entrypoint", "sh", image.ref, "-c", PG_START)
    if recipe.name == "kafka":
        return containers.start(*base, "--env", "KAFKA_HEAP_OPTS=-Xms256m -Xmx512m", image.ref)
    if recipe.serve or _is_scratch(recipe):
        return containers.start(*base, image.ref)
    return containers.start(*base, "--entrypoint", "sh", image.ref, "-c", "sleep 600")


# Operators that exit at once when no API server answers (the KubeRay binary is alone on scratch).
EXITS_WITHOUT_A_CLUSTER = {"kuberay-operator"}


@pytest.mark.parametrize("name", NAMES)
def test_runs_as_its_fixed_non_root_uid(
    name: str, image_of: ImageOf, engine: Engine, containers: Containers, tmp_path: Path
) -> None:
    recipe = RECIPES[name]
    image = image_of(name)
    assert engine.run("image", "inspect", "--format", "{{.Config.User}}", image.ref) in {_user(recipe), str(recipe.uid)}
    assert recipe.uid != 0
    if name in EXITS_WITHOUT_A_CLUSTER:
        return  # no process lives long enough to read; the pod's UID is checked where it runs (e2e)
    # Started with the chart's UID like the pod is; the kernel's view of the process is the truth.
    cid = _launch(recipe, image, containers, tmp_path)
    status = Path(f"/proc/{containers.pid(cid)}/status").read_text()
    uids = re.search(r"^Uid:\s+(.*)$", status, re.M)
    assert uids is not None
    assert set(uids.group(1).split()) == {str(recipe.uid)}, status
    assert recipe.uid != 0


def _walk_filesystem(engine: Engine, ref: str) -> Iterator[tuple[tarfile.TarInfo, tarfile.TarFile]]:
    cid = engine.run("create", ref, "/nonexistent")
    try:
        with subprocess.Popen([engine.docker, "export", cid], env=engine.env, stdout=subprocess.PIPE) as export:
            assert export.stdout is not None
            with tarfile.open(fileobj=export.stdout, mode="r|") as tar:
                for member in tar:
                    yield member, tar
    finally:
        engine.run("rm", "--force", cid, check=False)


@pytest.mark.parametrize("name", NAMES)
def test_has_no_compiler_and_no_private_key(name: str, image_of: ImageOf, engine: Engine) -> None:
    image = image_of(name)
    compilers, keys = [], []
    for member, tar in _walk_filesystem(engine, image.ref):
        base = member.name.rsplit("/", 1)[-1]
        if base in COMPILERS and (member.isfile() or member.issym()):
            compilers.append(member.name)
        if (
            member.isfile()
            and member.size < 64 * 1024
            and (base.endswith((".key", ".pem")) or "/private/" in member.name)
        ):
            handle = tar.extractfile(member)
            if handle is not None and b"PRIVATE KEY-----" in handle.read():
                keys.append(member.name)
    assert not compilers, f"{name} ships a compiler: {compilers}"
    assert not keys, f"{name} ships private keys: {keys}"


@pytest.mark.parametrize("name", NAMES)
def test_carries_oci_labels_and_sets_home(name: str, image_of: ImageOf, engine: Engine) -> None:
    image = image_of(name)
    config = json.loads(engine.run("image", "inspect", "--format", "{{json .Config}}", image.ref))
    labels = config["Labels"] or {}
    for key in OCI_LABELS:
        assert labels.get(f"org.opencontainers.image.{key}"), f"{name}: label org.opencontainers.image.{key} missing"
    assert labels["org.opencontainers.image.version"] == image.ref.rsplit(":", 1)[1]
    assert labels["io.qframe.image.uid"] == str(RECIPES[name].uid)
    assert any(e.startswith("HOME=") for e in config["Env"] or []), f"{name}: HOME is not set"


# --- the service inside answers its probe -------------------------------------------------------


def _probe_job_image(recipe: Recipe, image: BuiltImage, engine: Engine) -> None:
    """Images that run commands (not servers): the documented probe, run as the recipe's user."""
    argv = shlex.split(recipe.probe)
    if _is_scratch(recipe):
        command = ["--entrypoint", argv[0], image.ref, *argv[1:]]
    else:
        command = ["--entrypoint", "sh", image.ref, "-c", recipe.probe]
    done = subprocess.run(
        [engine.docker, "run", "--rm", "--network", "none", "--user", _user(recipe), *command],
        env=engine.env, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert done.returncode == 0, f"{recipe.name} probe `{recipe.probe}` failed:\n{done.stdout}\n{done.stderr}"


@pytest.mark.parametrize("name", [n for n in NAMES if not RECIPES[n].serve and n not in {"pause", "coredns"}])
def test_job_image_answers_its_probe(name: str, image_of: ImageOf, engine: Engine) -> None:
    _probe_job_image(RECIPES[name], image_of(name), engine)


def test_pause_stays_up_reaps_orphans_and_stops_cleanly_on_sigterm(
    image_of: ImageOf, engine: Engine, containers: Containers, tmp_path: Path
) -> None:
    recipe, pause, tools = RECIPES["pause"], image_of("pause"), image_of("tools")
    _probe_job_image(recipe, pause, engine)
    cid = _launch(recipe, pause, containers, tmp_path)
    time.sleep(2)
    assert engine.run("inspect", "--format", "{{.State.Running}}", cid) == "true"
    # A child that exits leaves its own child to PID 1 (pause) in the shared PID namespace; once
    # that one exits, pause must reap it, or it stays a zombie.
    orphan = "sh -c 'sleep 1 &'; sleep 3; ! grep -l ') Z ' /proc/[0-9]*/stat"
    done = subprocess.run(
        [engine.docker, "run", "--rm", "--network", "none", "--pid", f"container:{cid}", "--user", "1000:1000",
         "--entrypoint", "sh", tools.ref, "-c", orphan],
        env=engine.env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, f"a zombie was left behind:\n{done.stdout}{done.stderr}"
    engine.run("kill", "--signal", "TERM", cid)
    engine.run("wait", cid, timeout=30)
    assert engine.run("inspect", "--format", "{{.State.ExitCode}}", cid) == "0"


DNS_CLIENT = """
import socket, struct, urllib.request
for url in ("http://127.0.0.1:8080/health", "http://127.0.0.1:8181/ready"):
    for attempt in range(60):
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                assert r.status == 200, (url, r.status); break
        except OSError:
            import time; time.sleep(0.5)
    else:
        raise SystemExit(f"{url} never answered")
name = b"".join(bytes([len(p)]) + p for p in b"probe.qframe.test".split(b".")) + b"\\0"
query = struct.pack(">HHHHHH", 0x5146, 0x0100, 1, 0, 0, 0) + name + struct.pack(">HH", 1, 1)
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(5)
s.sendto(query, ("127.0.0.1", 1053))
answer = s.recv(512)
ident, flags, qd, an = struct.unpack(">HHHH", answer[:8])
assert ident == 0x5146 and flags & 0xF == 0 and an == 1, (hex(flags), an)
print(socket.inet_ntoa(answer[-4:]))
"""


def test_coredns_serves_health_ready_and_answers_on_1053(
    image_of: ImageOf, engine: Engine, containers: Containers, tmp_path: Path
) -> None:
    recipe, coredns, tools = RECIPES["coredns"], image_of("coredns"), image_of("tools")
    _probe_job_image(recipe, coredns, engine)
    cid = _launch(recipe, coredns, containers, tmp_path)
    assert _client(engine, tools, cid, DNS_CLIENT).strip() == "10.96.0.10", containers.logs(cid)


MINIO_CLIENT = """
import os, time, urllib.request, boto3
for attempt in range(120):
    try:
        with urllib.request.urlopen("http://127.0.0.1:9000/minio/health/ready", timeout=2) as r:
            if r.status == 200: break
    except OSError:
        time.sleep(0.5)
else:
    raise SystemExit("minio never became ready")
s3 = boto3.client("s3", endpoint_url="http://127.0.0.1:9000", region_name="us-east-1",
                  aws_access_key_id="qframe-admin", aws_secret_access_key=os.environ["SECRET"])
s3.create_bucket(Bucket="smoke")
s3.put_object(Bucket="smoke", Key="hello.txt", Body=b"from the tools image")
print(s3.get_object(Bucket="smoke", Key="hello.txt")["Body"].read().decode())
"""


def test_minio_is_ready_and_stores_an_object(
    image_of: ImageOf, engine: Engine, containers: Containers, tmp_path: Path
) -> None:
    recipe, minio, tools = RECIPES["minio"], image_of("minio"), image_of("tools")
    cid = _launch(recipe, minio, containers, tmp_path)
    env = json.loads(engine.run("inspect", "--format", "{{json .Config.Env}}", cid))
    secret = next(e.split("=", 1)[1] for e in env if e.startswith("MINIO_ROOT_PASSWORD="))
    script = MINIO_CLIENT.replace('os.environ["SECRET"]', repr(secret))
    assert _client(engine, tools, cid, script).strip() == "from the tools image", containers.logs(cid)


def test_postgres_starts_with_the_chart_command_and_accepts_a_password_login(
    image_of: ImageOf, engine: Engine, containers: Containers, tmp_path: Path
) -> None:
    recipe, postgres = RECIPES["postgres"], image_of("postgres")
    cid = _launch(recipe, postgres, containers, tmp_path)
    probe = shlex.split(recipe.probe)
    _until("pg_isready", lambda: _exec(engine, cid, *probe).returncode == 0, 90, lambda: containers.logs(cid))
    password = (tmp_path / "superuser" / "password").read_text()
    login = (
        "import os, psycopg\n"
        "with psycopg.connect(host='127.0.0.1', user='postgres', dbname='postgres', password=os.environ['PW']) as c:\n"
        "    print(c.execute('select version()').fetchone()[0])\n"
        # The base drops the JIT libraries: a query costly enough to want JIT must still run.
        "    c.execute('set jit_above_cost = 0')\n"
        "    assert c.execute('select sum(x) from generate_series(1, 100000) x').fetchone()[0] == 5000050000\n"
    )
    done = _exec(engine, cid, "python3", "-c", login, env={"PW": password})
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("PostgreSQL 15"), done.stdout
    wrong = _exec(engine, cid, "python3", "-c", login, env={"PW": "not-the-password"})
    assert wrong.returncode != 0
    assert "password authentication failed" in wrong.stderr


KAFKA_CLIENT = """
from confluent_kafka import Consumer, Producer
p = Producer({"bootstrap.servers": "127.0.0.1:9092"})
p.produce("smoke", b"tick-1")
assert p.flush(30) == 0
c = Consumer({"bootstrap.servers": "127.0.0.1:9092", "group.id": "smoke", "auto.offset.reset": "earliest"})
c.subscribe(["smoke"])
for _ in range(60):
    m = c.poll(1.0)
    if m is not None and m.error() is None:
        print(m.value().decode()); break
else:
    raise SystemExit("nothing consumed")
c.close()
"""


def test_kafka_broker_lists_creates_topics_and_carries_messages(
    image_of: ImageOf, engine: Engine, containers: Containers, tmp_path: Path
) -> None:
    recipe, kafka, tools = RECIPES["kafka"], image_of("kafka"), image_of("tools")
    for script in ("kafka-server-start.sh", "kafka-storage.sh", "kafka-topics.sh"):
        listing = _exec_image(engine, kafka, f"test -x /opt/kafka/bin/{script} && echo ok")
        assert listing == "ok", script
    cid = _launch(recipe, kafka, containers, tmp_path)
    probe = shlex.split(recipe.probe)
    _until("kafka-topics --list", lambda: _exec(engine, cid, *probe).returncode == 0, 150, lambda: containers.logs(cid))
    topics = "/opt/kafka/bin/kafka-topics.sh --bootstrap-server 127.0.0.1:9092"
    created = _exec(engine, cid, "sh", "-c", f"{topics} --create --topic smoke --partitions 1 --replication-factor 1")
    assert created.returncode == 0, created.stderr
    assert "smoke" in _exec(engine, cid, *probe).stdout.split()
    assert _client(engine, tools, cid, KAFKA_CLIENT).strip() == "tick-1"


def _exec_image(engine: Engine, image: BuiltImage, command: str) -> str:
    return engine.run("run", "--rm", "--network", "none", "--entrypoint", "sh", image.ref, "-c", command)


def test_every_dockerfile_passes_hadolint() -> None:
    results = lint(dockerfiles())
    assert results, "no Dockerfile found"
    failed = {str(r.dockerfile): r.output for r in results if not r.ok}
    assert not failed, failed


def test_saved_archive_is_an_importable_image_tarball(image_of: ImageOf) -> None:
    image = image_of("pause")
    with tarfile.open(image.archive) as tar:
        names = tar.getnames()
        manifest = json.load(io.BytesIO(tar.extractfile("manifest.json").read()))  # type: ignore[union-attr]
    assert "manifest.json" in names
    assert manifest[0]["RepoTags"] == [image.ref]
    assert image.size_bytes > 0
