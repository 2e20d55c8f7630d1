"""`make up`, `make down`, `make preview`, `make plan`: the dev stack and what it would create.

With no KUBECONFIG a real single-node Kubernetes is started on this machine first (containerd,
control plane, kubelet, kube-proxy, CoreDNS, NetworkPolicy enforcement: tools/devstack/node);
QFRAME_CLUSTER=kwok starts the simulated kwok cluster instead (no containers run). With a
KUBECONFIG pointing at a real cluster (kind, EKS, ...) the stack is deployed there.
`plan` needs neither: it checks the stack config and lists every resource offline.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, TypeVar

import typer
from rich.console import Console
from rich.table import Table

from infra.config import StackConfigError
from infra.stack_file import read_stack_file
from tools.devstack.cluster import CONTROL_PLANE_TOOLS, ClusterError, LocalCluster
from tools.devstack.node.endpoints import endpoint_lines
from tools.devstack.node.hostnet import HostError
from tools.devstack.node.images import NODE_IMAGES, ImagesError, build_images, stack_images
from tools.devstack.node.node import NodeError, RealNode
from tools.devstack.paths import MissingToolError, StateDirs, require_tools
from tools.devstack.pulumi_cli import PULUMI_TOOLS, PulumiError, PulumiWorkspace
from tools.paths import REPO_ROOT

app = typer.Typer(add_completion=False, help=__doc__, no_args_is_help=True)
console = Console()
T = TypeVar("T")

StackOption = Annotated[str, typer.Option(help="Stack name: deploys Pulumi.<stack>.yaml")]
LOCAL_CLUSTER_NAME = "qframe"


def wants_local_cluster(environ: dict[str, str] | os._Environ[str]) -> bool:
    """Local unless a KUBECONFIG is given and QFRAME_CLUSTER is not forced to 'local'."""
    return environ.get("QFRAME_CLUSTER", "") in ("local", "node", "kwok") or not environ.get("KUBECONFIG")


def cluster_kind(environ: dict[str, str] | os._Environ[str]) -> str:
    """'node' (the real local node, the default), 'kwok' (QFRAME_CLUSTER=kwok) or 'external'
    (KUBECONFIG given). Anything else in QFRAME_CLUSTER is an error naming the allowed values."""
    chosen = environ.get("QFRAME_CLUSTER", "")
    if chosen not in ("", "local", "node", "kwok"):
        raise ValueError(f"QFRAME_CLUSTER={chosen!r} is not one of: node (default), kwok, local (= node)")
    if chosen == "kwok":
        return "kwok"
    return "node" if wants_local_cluster(environ) else "external"


STEP_ERRORS = (
    MissingToolError,
    ClusterError,
    PulumiError,
    FileNotFoundError,
    NodeError,
    ImagesError,
    HostError,
    StackConfigError,
)


def _step(number: int, total: int, title: str, action: Callable[[], T]) -> T:
    start = time.monotonic()
    with console.status(f"[bold][{number}/{total}][/] {title}"):
        try:
            result = action()
        except STEP_ERRORS as exc:
            console.print(f"[red]✗[/] [{number}/{total}] {title}")
            console.print(f"[red]error:[/] {exc}", highlight=False, soft_wrap=True)
            raise typer.Exit(1) from None
    note = f" — {result}" if isinstance(result, str) and result else ""
    console.print(f"[green]✓[/] [{number}/{total}] {title} [dim]({time.monotonic() - start:.1f}s)[/]{note}")
    return result


Cluster = LocalCluster | RealNode


def _target(state: StateDirs) -> tuple[Cluster | None, Path | None]:
    try:
        kind = cluster_kind(os.environ)
    except ValueError as exc:
        console.print(f"[red]error:[/] {exc}")
        raise typer.Exit(2) from None
    if kind == "node":
        return RealNode(state), state.kubeconfig
    if kind == "kwok":
        return LocalCluster(LOCAL_CLUSTER_NAME, state), state.kubeconfig
    return None, Path(os.environ["KUBECONFIG"])


def _print_outputs(workspace: PulumiWorkspace, kubeconfig: Path | None) -> None:
    outputs = workspace.outputs()
    table = Table(title=f"stack {workspace.stack} outputs", show_header=True)
    table.add_column("output")
    table.add_column("value")
    for key in sorted(outputs):
        table.add_row(key, str(outputs[key]))
    console.print(table)
    if kubeconfig is not None:
        console.print(f"kubectl access: [bold]export KUBECONFIG={kubeconfig}[/]")
    console.print(
        "Secrets (generated passwords, connection URIs) live only in Kubernetes Secrets of the "
        "namespace and as Pulumi secrets; `kubectl get secrets -n <namespace>` lists them."
    )


def _print_endpoints(node: RealNode, namespace: str) -> None:
    """Where each Service of the stack answers: NodePort on the node IP, else a port-forward."""
    services = json.loads(node.kubectl("get", "services", "-n", namespace, "-o", "json"))["items"]
    table = Table(title=f"services in namespace {namespace}", show_header=True)
    table.add_column("service")
    table.add_column("reach it from this machine")
    for line in endpoint_lines(services, node.net.node_ip, node.kubeconfig):
        table.add_row(*line)
    console.print(table)


def _imported(refs: list[str]) -> str:
    return f"{len(refs)} imported" if refs else "all present"


def _image_progress(name: str, status: str, seconds: float) -> None:
    if status != "cached":
        took = f" in {seconds:.0f}s" if status == "built" else " (cold builds take minutes)"
        console.print(f"    [dim]image {name}: {status}{took}[/]")


def _up_node(node: RealNode, stack: str, state: StateDirs, *, node_only: bool) -> None:
    workspace = PulumiWorkspace(state, stack)
    total = 11 if node_only else 13
    started = time.monotonic()

    def node_ready() -> str:
        node.wait_node_ready()
        return f"{time.monotonic() - started:.1f}s after `make up` started"

    def tools_present() -> None:
        if not node_only:
            require_tools(*PULUMI_TOOLS)
        node.tools()

    def addons_ready() -> str:
        node.apply_addons(images["coredns"].ref)
        return f"CoreDNS ready in {node.wait_dns():.1f}s"

    _step(1, total, "pinned tools present", tools_present)
    _step(2, total, "one node per machine (/run/qframe-node/owner)", node.claim_machine)
    _step(
        3,
        total,
        f"host network: bridge {node.net.node_bridge} {node.net.node_ip}, sysctls (journaled)",
        node.prepare_host,
    )
    images = _step(
        4,
        total,
        "images (tools.images, cached after the first build)",
        lambda: build_images(NODE_IMAGES if node_only else stack_images(), progress=_image_progress),
    )
    _step(
        5,
        total,
        "certificates, kubeconfigs, containerd/CNI/kubelet/kube-proxy configs",
        lambda: node.write_configs(images["pause"].ref),
    )
    _step(6, total, "etcd, kube-apiserver, controller-manager, scheduler, containerd", node.start_control_plane)
    node_images = {i.ref: i.archive for n, i in images.items() if n in NODE_IMAGES}
    stack_refs = {i.ref: i.archive for n, i in images.items() if n not in NODE_IMAGES}
    _step(7, total, "import pause + CoreDNS images into containerd", lambda: _imported(node.import_images(node_images)))
    _step(8, total, "kubelet, kube-proxy", node.start_node_daemons)
    _step(9, total, f"node {node.net.node_name} Ready", node_ready)
    _step(10, total, "kube-router (NetworkPolicy firewall only)", node.start_policy_controller)
    _step(
        11,
        total,
        "CoreDNS, default StorageClass + volume provisioner",
        addons_ready,
    )
    if stack_refs:
        # After the node is Ready: kubelet does not wait for the stack's (larger) images.
        _step(
            total - 1,
            total,
            "import the stack's images into containerd",
            lambda: _imported(node.import_images(stack_refs)),
        )
    if node_only:
        rss = node.rss_mib()
        console.print(
            f"node up in {time.monotonic() - started:.1f}s; daemons RSS {sum(rss.values()):.0f} MiB; "
            f"kubectl access: [bold]export KUBECONFIG={node.kubeconfig}[/]"
        )
        return
    _step(13, total, f"pulumi stack '{stack}' (file backend in {state.pulumi_backend})", workspace.prepare)
    console.print("[bold]pulumi up[/] (Pulumi's own progress follows)")
    try:
        workspace.up(node.kubeconfig, stream=True)
    except PulumiError as exc:
        console.print(
            f"[red]error:[/] {exc}\nFix the cause above and run `make up` again; it resumes where it stopped."
        )
        raise typer.Exit(1) from None
    _print_outputs(workspace, node.kubeconfig)
    namespace = str(workspace.outputs().get("namespace", "qframe"))
    _print_endpoints(node, namespace)
    rss = node.rss_mib()
    console.print(
        f"node daemons RSS: {sum(rss.values()):.0f} MiB ("
        + ", ".join(f"{k} {v:.0f}" for k, v in rss.items())
        + f"); `make up` took {time.monotonic() - started:.1f}s; logs: {node.layout.logs}"
    )


def _check_stack_file(stack: str) -> None:
    """Refuses a malformed Pulumi.<stack>.yaml before any cluster is started (no file: prepare says so)."""
    path = REPO_ROOT / f"Pulumi.{stack}.yaml"
    if not path.is_file():
        return
    try:
        read_stack_file(path, stack=stack)
    except StackConfigError as exc:
        console.print(f"[red]error:[/] {exc}", highlight=False, soft_wrap=True)
        raise typer.Exit(2) from None


@app.command()
def up(
    stack: StackOption = "dev",
    node_only: Annotated[bool, typer.Option(help="Real node only: no stack, only the node's own images")] = False,
) -> None:
    """Create (or reuse) the cluster and run `pulumi up` of the stack; print its outputs."""
    _check_stack_file(stack)
    state = StateDirs.default()
    cluster, kubeconfig = _target(state)
    if isinstance(cluster, RealNode):
        _up_node(cluster, stack, state, node_only=node_only)
        return
    workspace = PulumiWorkspace(state, stack)
    total = 4 if cluster else 3
    step = 1
    _step(
        step,
        total,
        "pinned tools present",
        lambda: require_tools(*PULUMI_TOOLS, *(CONTROL_PLANE_TOOLS if cluster else ())),
    )
    if cluster is not None:
        step += 1
        _step(
            step, total, f"local cluster '{cluster.name}' (kwok, Kubernetes control plane on 127.0.0.1)", cluster.create
        )
    step += 1
    _step(step, total, f"pulumi stack '{stack}' (file backend in {state.pulumi_backend})", workspace.prepare)
    step += 1
    console.print(f"[bold][{step}/{total}][/] pulumi up (Pulumi's own progress follows)")
    try:
        workspace.up(kubeconfig, stream=True)
    except PulumiError as exc:
        console.print(
            f"[red]error:[/] {exc}\nFix the cause above and run `make up` again; it resumes where it stopped."
        )
        raise typer.Exit(1) from None
    _print_outputs(workspace, kubeconfig)


@app.command()
def preview(stack: StackOption = "dev") -> None:
    """`pulumi preview` of the stack against the cluster (the local one must be up)."""
    state = StateDirs.default()
    cluster, kubeconfig = _target(state)
    if cluster is not None and not cluster.exists():
        console.print("[red]error:[/] the local cluster does not exist yet; run `make up` first")
        raise typer.Exit(1)
    workspace = PulumiWorkspace(state, stack)
    _step(1, 2, f"pulumi stack '{stack}'", workspace.prepare)
    console.print("[bold][2/2][/] pulumi preview")
    try:
        workspace.run(
            "preview", "--diff", "--stack", stack, *workspace.policy_args(), kubeconfig=kubeconfig, stream=True
        )
    except PulumiError:
        raise typer.Exit(1) from None


def _down_node(node: RealNode, stack: str, state: StateDirs) -> None:
    workspace = PulumiWorkspace(state, stack)
    started = time.monotonic()
    if not state.pulumi_backend.is_dir():
        console.print("[dim]no Pulumi stack was created here (node-only up): nothing to destroy[/]")
    elif node.api_ready():
        _step(1, 3, f"pulumi stack '{stack}'", workspace.prepare)
        console.print("[bold][2/3][/] pulumi destroy")
        try:
            workspace.destroy(node.kubeconfig, stream=True)
        except PulumiError:
            raise typer.Exit(1) from None
    elif state.pulumi_backend.is_dir():
        # The cluster the stack described is gone with the node's etcd: forget its resources so
        # the next `make up` creates them again instead of believing they exist.
        _step(1, 3, f"pulumi stack '{stack}' (file backend)", workspace.prepare)
        _step(2, 3, "node API not running: forget the stack's resources", workspace.forget)

    def remove() -> str:
        problems = node.down(lambda line: console.print(f"    [dim]{line}[/]", highlight=False))
        if problems:
            raise NodeError(
                "the host is not fully restored:\n  "
                + "\n  ".join(problems)
                + "\nFix the cause and run `make down` again."
            )
        return ""

    _step(3, 3, "stop the node, undo its host changes (journal), remove its files", remove)
    console.print(f"`make down` took {time.monotonic() - started:.1f}s")


@app.command()
def down(stack: StackOption = "dev") -> None:
    """`pulumi destroy` of the stack, then remove the local cluster (if one is used)."""
    state = StateDirs.default()
    cluster, kubeconfig = _target(state)
    if isinstance(cluster, RealNode):
        if not cluster.exists():
            console.print("nothing to destroy: no local node")
            return
        _down_node(cluster, stack, state)
        return
    workspace = PulumiWorkspace(state, stack)
    total = 3 if cluster else 2
    if cluster is not None and not cluster.exists():
        console.print("nothing to destroy: no local cluster")
        return
    _step(1, total, f"pulumi stack '{stack}'", workspace.prepare)
    console.print(f"[bold][2/{total}][/] pulumi destroy")
    try:
        workspace.destroy(kubeconfig, stream=True)
    except PulumiError:
        raise typer.Exit(1) from None
    if cluster is not None:
        _step(3, total, f"remove local cluster '{cluster.name}'", cluster.delete)


@app.command()
def plan(
    stack: Annotated[str, typer.Option(help="Stack name: reads Pulumi.<stack>.yaml")] = "dev",
    stack_file: Annotated[Path | None, typer.Option(help="Explicit stack file instead of --stack")] = None,
) -> None:
    """Validate the stack config and print the resource tree and stack outputs (offline, no cluster)."""
    # Importing the Pulumi program (pulumi-aws included) takes seconds; up/down/preview do not need it.
    import pulumi  # noqa: PLC0415

    from infra.offline import run_program  # noqa: PLC0415
    from tools.devstack.plan import output_lines, resource_tree  # noqa: PLC0415

    path = stack_file or REPO_ROOT / f"Pulumi.{stack}.yaml"
    if not path.is_file():
        console.print(f"[red]error:[/] no stack file {path}; create it or pass --stack-file")
        raise typer.Exit(2)
    try:
        run = run_program(path)
    except (pulumi.RunError, StackConfigError) as exc:
        # StackConfigError: the file itself (YAML, duplicate keys) is refused before the program runs.
        console.print(f"[red]error:[/] {exc}", highlight=False, soft_wrap=True)
        raise typer.Exit(1) from None
    # One line per resource, however narrow the terminal: RBAC types alone are ~60 characters, and
    # a wrapped line no longer reads (or greps) as "<name> <type>".
    Console(width=max(console.width, 240), highlight=False).print(resource_tree(run))
    for line in output_lines(run):
        console.print(line, highlight=False)
