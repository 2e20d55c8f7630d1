"""The ``qframe-ops`` command line (typer + rich).

Every command takes ``--namespace``, ``--context`` and ``--output table|json``. Anything the
operator has to fix (cluster unreachable, release missing, RBAC, a bad flag) is one line on stderr
and exit code 2; exit 1 means the command worked and found something wrong (unhealthy service,
drift, failed lint or check).
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import Annotated, Any, TypeVar

import typer
import yaml
from rich.console import Console

from infra.ops import diff as diffs
from infra.ops.errors import EXIT_ERROR, EXIT_UNHEALTHY, OpsError
from infra.ops.output import Output, emit

DEFAULT_NAMESPACE = "qframe"

app = typer.Typer(
    name="qframe-ops",
    help="Day-2 operations on a deployed QFrame platform: charts, releases, status, logs, doctor, scale.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
charts_app = typer.Typer(help="The repository's charts through pyhelm3, with a stack's values.", no_args_is_help=True)
app.add_typer(charts_app, name="charts")

console = Console(soft_wrap=False)
err_console = Console(stderr=True, soft_wrap=True)

Namespace = Annotated[
    str, typer.Option("--namespace", "-n", envvar="QFRAME_OPS_NAMESPACE", help="the platform's namespace")
]
Context = Annotated[
    str | None, typer.Option("--context", help="kubeconfig context (default: the kubeconfig's current context)")
]
OutputOpt = Annotated[Output, typer.Option("--output", "-o", help="table for people, json for scripts")]
Stack = Annotated[
    str, typer.Option("--stack", "-s", help="stack whose values render the charts: NAME of Pulumi.NAME.yaml, or a file")
]

F = TypeVar("F", bound=Callable[..., Any])


def handled(func: F) -> F:
    """OpsError -> one line on stderr, exit 2 (no traceback)."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except OpsError as exc:
            err_console.print(f"error: {exc}", markup=False, highlight=False)
            raise typer.Exit(EXIT_ERROR) from None

    return wrapper  # type: ignore[return-value]


# Seams for the unit tier: a fake API built from recorded responses replaces the real one here.
def make_kube_api(context: str | None) -> Any:
    from infra.ops.kube import HttpKubeApi

    return HttpKubeApi(context=context)


def make_helm(context: str | None) -> Any:
    from infra.ops.helm import Helm

    return Helm(context=context)


def cluster(namespace: str, context: str | None) -> Any:
    from infra.ops.kube import Cluster

    return Cluster(make_kube_api(context), namespace)


def _releases_of(stack: str, namespace: str | None, only: str | None) -> list[Any]:
    from dataclasses import replace

    from infra.ops.stack import stack_file, stack_releases

    specs = stack_releases(stack_file(stack))
    if only:
        picked = [s for s in specs if only in (s.release, s.chart_name)]
        if not picked:
            names = ", ".join(sorted({s.release for s in specs}))
            raise OpsError(f"stack {stack} installs no release or chart {only!r}", f"use one of: {names}")
        specs = picked
    if namespace:
        specs = [replace(s, namespace=namespace) for s in specs]
    return specs


# -- charts ----------------------------------------------------------------------------------------


@charts_app.command("list")
@handled
def charts_list(
    stack: Stack = "dev",
    namespace: Namespace = DEFAULT_NAMESPACE,
    context: Context = None,
    output: OutputOpt = Output.table,
) -> None:
    """Every chart in charts/, and which release of the stack installs it."""
    from infra.ops.stack import chart_dirs

    helm = make_helm(context)
    used: dict[str, list[str]] = {}
    for spec in _releases_of(stack, None, None):
        used.setdefault(spec.chart_name, []).append(f"{spec.release} ({spec.config_key})")
    rows = []
    for path in chart_dirs():
        info = helm.chart(path)
        rows.append(
            {
                "chart": info.name,
                "version": info.version,
                "app_version": info.app_version,
                "kube_version": info.kube_version,
                "release_in_stack": used.get(path.name, ["not deployed"]),
            }
        )
    emit(console, output, rows, list(rows[0]) if rows else ["chart"], title=f"charts (stack {stack})")


@charts_app.command("lint")
@handled
def charts_lint(
    chart: Annotated[str | None, typer.Argument(help="one chart (default: all)")] = None,
    stack: Stack = "dev",
    namespace: Namespace = DEFAULT_NAMESPACE,
    context: Context = None,
    output: OutputOpt = Output.table,
) -> None:
    """helm lint --strict of each chart, with its defaults and with the values the stack gives it."""
    from infra.ops.stack import chart_dirs

    helm = make_helm(context)
    paths = [p for p in chart_dirs() if chart in (None, p.name)]
    if not paths:
        raise OpsError(f"no chart {chart!r} in charts/", f"use one of: {', '.join(p.name for p in chart_dirs())}")
    by_chart: dict[str, list[Any]] = {}
    for spec in _releases_of(stack, None, None):
        by_chart.setdefault(spec.chart_name, []).append(spec)
    rows = []
    failed = False
    for path in paths:
        specs = by_chart.get(path.name, [])
        ok, text = helm.lint(path, [s.values for s in specs])
        failed |= not ok
        findings = [line.strip() for line in text.splitlines() if line.strip().startswith(("[ERROR]", "[WARNING]"))]
        rows.append(
            {
                "chart": path.name,
                "values": ["defaults", *[f"{stack}:{s.release}" for s in specs]],
                "result": "ok" if ok else "FAILED",
                "findings": findings or ["-"],
            }
        )
    emit(console, output, rows, ["chart", "values", "result", "findings"], title="helm lint --strict")
    if failed:
        raise typer.Exit(EXIT_UNHEALTHY)


@charts_app.command("template")
@handled
def charts_template(
    release: Annotated[str | None, typer.Argument(help="one release or chart (default: every release)")] = None,
    stack: Stack = "dev",
    namespace: Annotated[
        str | None, typer.Option("--namespace", "-n", help="render into this namespace (default: the stack's)")
    ] = None,
    context: Context = None,
    output: OutputOpt = Output.table,
) -> None:
    """Render the stack's releases exactly as its Pulumi program would install them (YAML, or JSON)."""
    helm = make_helm(context)
    objects: list[dict[str, Any]] = []
    for spec in _releases_of(stack, namespace, release):
        objects.extend(helm.template(spec))
    if output is Output.json:
        emit(console, output, objects, [])
        return
    sys.stdout.write(yaml.safe_dump_all(objects, sort_keys=False, explicit_start=True))


@charts_app.command("diff")
@handled
def charts_diff(
    release: Annotated[str | None, typer.Argument(help="one release or chart (default: every release)")] = None,
    stack: Stack = "dev",
    namespace: Annotated[
        str | None, typer.Option("--namespace", "-n", help="where the stack is deployed (default: the stack's)")
    ] = None,
    context: Context = None,
    output: OutputOpt = Output.table,
    all_objects: Annotated[bool, typer.Option("--all", help="list objects in sync too")] = False,
) -> None:
    """Compare the stack's rendered objects with the live ones; exit 1 when something drifted."""
    from infra.ops.kube import KIND_TO_RESOURCE

    specs = _releases_of(stack, namespace, release)
    helm = make_helm(context)
    live = cluster(namespace or specs[0].namespace, context)

    def fetch(kind: str, name: str) -> dict[str, Any] | None:
        found: dict[str, Any] | None = live.get(KIND_TO_RESOURCE[kind], name)
        return found

    results: list[diffs.ObjectDiff] = []
    for spec in specs:
        results.extend(diffs.diff_release(spec.release, helm.template(spec), fetch, KIND_TO_RESOURCE.__contains__))
    shown = [r for r in results if all_objects or r.state != "in sync"]
    rows = [
        {
            "release": r.release,
            "object": r.ref,
            "state": r.state,
            "changes": [f"{c.path}: {diffs.short(c.rendered)} -> live {diffs.short(c.live)}" for c in r.changes],
        }
        for r in shown
    ]
    drifted = [r for r in results if r.drifted]
    summary = {"compared": len(results), "drifted": len(drifted)}
    title = f"{len(drifted)} of {len(results)} objects differ from stack {stack}"
    emit(console, output, rows, ["release", "object", "state", "changes"], title=title, extra=summary)
    if drifted:
        raise typer.Exit(EXIT_UNHEALTHY)


# -- status ----------------------------------------------------------------------------------------


def _require_namespace(live: Any) -> None:
    if live.get("namespaces", live.namespace) is None:
        raise OpsError(
            f"namespace {live.namespace!r} does not exist in this cluster",
            "pass --namespace NAME (the stack output `namespace`), or deploy the stack (`make up`)",
        )


def take_snapshot(live: Any) -> Any:
    from infra.ops.services import Snapshot

    _require_namespace(live)
    return Snapshot(
        namespace=live.namespace,
        deployments=live.list("deployments") or [],
        statefulsets=live.list("statefulsets") or [],
        pods=live.list("pods") or [],
        services=live.list("services") or [],
        events=live.list("events", fields="type=Warning") or [],
        daskclusters=live.list("daskclusters"),
        rayclusters=live.list("rayclusters"),
    )


STATUS_COLUMNS = ["service", "state", "ready", "restarts", "last_warning", "endpoint"]


def _status_view(rows: list[Any], namespace: str) -> Any:
    from rich.console import Group
    from rich.text import Text

    from infra.ops.output import table

    unhealthy = [r for r in rows if not r.healthy]
    lines = [Text(f"UNHEALTHY {r.service}: {'; '.join(r.problems)}", style="bold red") for r in unhealthy]
    if not unhealthy:
        lines = [Text("all deployed services ready", style="green")]
    return Group(table([r.as_row() for r in rows], STATUS_COLUMNS, title=f"namespace {namespace}"), *lines)


@app.command("status")
@handled
def status(
    namespace: Namespace = DEFAULT_NAMESPACE,
    context: Context = None,
    output: OutputOpt = Output.table,
    watch: Annotated[bool, typer.Option("--watch", "-w", help="refresh in place until Ctrl-C")] = False,
    interval: Annotated[float, typer.Option("--interval", min=0.5, help="seconds between refreshes")] = 2.0,
) -> None:
    """Every platform service: desired vs ready, restarts, last warning, endpoint. Exit 1 if one is unhealthy."""
    from infra.ops.services import service_statuses

    live = cluster(namespace, context)
    rows = service_statuses(take_snapshot(live))
    if watch and output is Output.table:
        import time

        from rich.live import Live

        try:
            with Live(_status_view(rows, namespace), console=console, auto_refresh=False) as view:
                while True:
                    time.sleep(interval)
                    rows = service_statuses(take_snapshot(live))
                    view.update(_status_view(rows, namespace), refresh=True)
        except KeyboardInterrupt:
            pass
    elif output is Output.json:
        unhealthy = [r.service for r in rows if not r.healthy]
        emit(console, output, [r.as_row() for r in rows], [], extra={"namespace": namespace, "unhealthy": unhealthy})
    else:
        console.print(_status_view(rows, namespace))
    if any(not r.healthy for r in rows):
        raise typer.Exit(EXIT_UNHEALTHY)


# -- releases, history, rollback ------------------------------------------------------------------


@app.command("releases")
@handled
def releases(
    namespace: Namespace = DEFAULT_NAMESPACE,
    context: Context = None,
    output: OutputOpt = Output.table,
) -> None:
    """The helm releases in the namespace: status, revision, chart version, last update."""
    found = make_helm(context).releases(namespace)
    rows = [
        {
            "release": r.get("name"),
            "status": r.get("status"),
            "revision": int(r.get("revision", 0)),
            "chart": r.get("chart"),
            "app_version": r.get("app_version"),
            "updated": r.get("updated"),
        }
        for r in found
    ]
    emit(console, output, rows, ["release", "status", "revision", "chart", "app_version", "updated"])
    if any(r["status"] != "deployed" for r in rows):
        raise typer.Exit(EXIT_UNHEALTHY)


@app.command("history")
@handled
def history(
    release: Annotated[str, typer.Argument(help="release name (see `qframe-ops releases`)")],
    namespace: Namespace = DEFAULT_NAMESPACE,
    context: Context = None,
    output: OutputOpt = Output.table,
) -> None:
    """Every kept revision of a release."""
    found = make_helm(context).history(release, namespace)
    rows = [
        {
            "revision": int(r.get("revision", 0)),
            "status": r.get("status"),
            "chart": r.get("chart"),
            "app_version": r.get("app_version"),
            "updated": r.get("updated"),
            "description": r.get("description"),
        }
        for r in found
    ]
    emit(console, output, rows, list(rows[0]) if rows else ["revision"], title=f"history of {release}")


def pulumi_warning(release: str, spec: Any, stack: str) -> str:
    """Why a hand rollback does not last, and which stack key makes it last."""
    key = f"qframe-research:{spec.config_key}"
    return (
        f"warning: Pulumi manages release {release!r} (stack {stack}, component {spec.component}) and still holds "
        f"the stack's values for it: the next `pulumi up` that updates it (any change under `{key}`, or "
        f"`pulumi up --refresh`) installs those values again and undoes this rollback. To keep it, make "
        f"`{key}` in Pulumi.{stack}.yaml say what the rolled-back revision runs."
    )


@app.command("rollback")
@handled
def rollback(
    release: Annotated[str, typer.Argument(help="release name (see `qframe-ops releases`)")],
    revision: Annotated[int | None, typer.Argument(help="revision to go back to (default: the previous one)")] = None,
    stack: Stack = "dev",
    namespace: Namespace = DEFAULT_NAMESPACE,
    context: Context = None,
    output: OutputOpt = Output.table,
) -> None:
    """helm rollback through pyhelm3 (waits for the objects), then says which stack key would undo it."""
    from infra.ops.stack import stack_file, stack_releases

    if revision is not None and revision < 1:
        raise OpsError(f"revision {revision} does not exist", f"pick one from `qframe-ops history {release}`")
    specs = {s.release: s for s in stack_releases(stack_file(stack))}
    result = make_helm(context).rollback(release, namespace, revision)
    warning = pulumi_warning(release, specs[release], stack) if release in specs else ""
    result["pulumi"] = warning or f"release {release!r} is not part of stack {stack}"
    emit(console, output, [result], ["release", "namespace", "revision", "status", "description"])
    if warning and output is Output.table:
        err_console.print(warning, markup=False, highlight=False)


# -- logs ------------------------------------------------------------------------------------------


def service_pods(live: Any, service: str) -> list[dict[str, Any]]:
    """The pods of a catalogue service (or of a release/instance name); 'not deployed' when none."""
    from infra.ops.services import CATALOGUE, DASK_CLUSTER, INSTANCE, NAME, RAY_CLUSTER

    _require_namespace(live)
    spec = next((s for s in CATALOGUE if s.name == service), None)
    if spec is not None and spec.custom_resource:
        label = DASK_CLUSTER if spec.custom_resource == "daskclusters" else RAY_CLUSTER
        pods = live.list("pods", selector=label) or []
    else:
        releases = spec.releases if spec is not None else (service,)
        key = NAME if spec is not None and spec.operator else INSTANCE
        pods = live.list("pods", selector=f"{key} in ({','.join(releases)})") or []
    if not pods:
        known = ", ".join(s.name for s in CATALOGUE)
        raise OpsError(
            f"{service}: not deployed (no pods in namespace {live.namespace})",
            f"services: {known}; `qframe-ops status` shows what runs",
        )
    # Running pods first: their logs are the ones an operator is after.
    found: list[dict[str, Any]] = sorted(
        pods, key=lambda p: ((p.get("status") or {}).get("phase") != "Running", p["metadata"]["name"])
    )
    return found


@app.command("logs")
@handled
def logs(
    service: Annotated[str, typer.Argument(help="service (object-store, postgres, kafka, mlflow, ...) or release")],
    follow: Annotated[bool, typer.Option("--follow", "-f", help="stream new lines (first pod)")] = False,
    container: Annotated[str | None, typer.Option("--container", "-c", help="container (default: first)")] = None,
    tail: Annotated[int, typer.Option("--tail", min=1, help="lines per container")] = 100,
    namespace: Namespace = DEFAULT_NAMESPACE,
    context: Context = None,
    output: OutputOpt = Output.table,
) -> None:
    """Recent log lines of every pod of a service (or follow the first one)."""
    live = cluster(namespace, context)
    pods = service_pods(live, service)
    if follow:
        pods = pods[:1]
    records = []
    for pod in pods:
        names = [c["name"] for c in pod["spec"]["containers"]]
        if container is not None and container not in names:
            raise OpsError(
                f"pod {pod['metadata']['name']} has no container {container!r}", f"use one of: {', '.join(names)}"
            )
        chosen = container or names[0]
        if output is Output.json:
            text = "".join(live.logs(pod["metadata"]["name"], container=chosen, tail=tail, follow=False))
            records.append({"pod": pod["metadata"]["name"], "container": chosen, "lines": text.splitlines()})
            continue
        err_console.print(f"==> {pod['metadata']['name']}/{chosen}", markup=False, highlight=False)
        try:
            for chunk in live.logs(pod["metadata"]["name"], container=chosen, tail=tail, follow=follow):
                sys.stdout.write(chunk)
                sys.stdout.flush()
        except KeyboardInterrupt:
            return
    if output is Output.json:
        emit(console, output, records, [])


# -- doctor ----------------------------------------------------------------------------------------


def _tool_version(binary: str, *args: str) -> str:
    import subprocess

    try:
        proc = subprocess.run([binary, *args], capture_output=True, text=True, timeout=20, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return str(exc)
    return proc.stdout + proc.stderr


def tool_checks() -> list[Any]:
    import shutil

    from infra.ops.doctor import tool_check
    from infra.ops.helm import PINNED_HELM
    from tools.versions import pinned_versions

    pinned = pinned_versions()
    tools_bin = str(PINNED_HELM.parent)
    path = f"{tools_bin}:{__import__('os').environ.get('PATH', '')}"
    hint = "run tools/install (links the pinned tools into .tools/bin), then put .tools/bin first on PATH"
    checks = []
    for name, args, version in (
        ("helm", ("version", "--template", "{{ .Version }}"), pinned["HELM_VERSION"]),
        ("kubectl", ("version", "--client"), pinned["KUBE_VERSION"]),
        ("pulumi", ("version",), pinned["PULUMI_VERSION"]),
    ):
        found = shutil.which(name, path=path)
        reported = _tool_version(found, *args) if found else ""
        checks.append(tool_check(name, found, reported, version, hint))
    return checks


def cluster_checks(live: Any, helm_factory: Callable[[], Any]) -> tuple[list[Any], bool]:
    """The checks that need the API; the bool says whether the cluster answered at all."""
    from infra.ops import doctor
    from infra.ops.services import service_statuses

    try:
        version = live.version()
    except OpsError as exc:
        return [doctor.api_check(live.api.where, None, exc.message)], False
    checks = [doctor.api_check(live.api.where, version, "")]
    ns = live.get("namespaces", live.namespace)
    checks.append(doctor.namespace_check(live.namespace, ns))
    if ns is None:
        return checks, True
    checks.append(doctor.pod_security_check(live.namespace, ns))
    checks.append(doctor.default_deny_check(live.namespace, live.list("networkpolicies") or []))
    statuses = service_statuses(take_snapshot(live))
    checks.extend(doctor.operator_checks(live.list("customresourcedefinitions", namespaced=False), statuses))
    checks.append(doctor.services_check(statuses))
    checks.append(doctor.releases_check(helm_factory().releases(live.namespace)))
    return checks, True


@app.command("doctor")
@handled
def doctor_command(
    namespace: Namespace = DEFAULT_NAMESPACE,
    context: Context = None,
    output: OutputOpt = Output.table,
) -> None:
    """Tools and versions, cluster and context, namespace, Pod Security, default-deny, operators, services."""
    live = cluster(namespace, context)
    checks = tool_checks()
    more, reachable = cluster_checks(live, lambda: make_helm(context))
    checks += more
    rows = [c.as_row() for c in checks]
    failed = [c for c in checks if c.ok is False]
    columns = ["check", "result", "detail", "fix"] if failed else ["check", "result", "detail"]
    emit(console, output, rows, columns, extra={"failed": [c.name for c in failed]})
    if output is Output.table:
        for check in failed:
            err_console.print(f"fix {check.name}: {check.fix}", markup=False, highlight=False)
    if not reachable:
        raise typer.Exit(EXIT_ERROR)
    if failed:
        raise typer.Exit(EXIT_UNHEALTHY)


# -- scale -----------------------------------------------------------------------------------------


@app.command("scale")
@handled
def scale(
    target: Annotated[str, typer.Argument(help="dask or ray")],
    minimum: Annotated[int | None, typer.Option("--min", help="autoscaler floor (workers)")] = None,
    maximum: Annotated[int | None, typer.Option("--max", help="autoscaler ceiling (workers)")] = None,
    group: Annotated[str | None, typer.Option("--group", help="ray: one worker group (default: every group)")] = None,
    namespace: Namespace = DEFAULT_NAMESPACE,
    context: Context = None,
    output: OutputOpt = Output.table,
) -> None:
    """Patch the autoscaler bounds on the live custom resources; print the `pulumi config set` lines."""
    from infra.ops import scale as scaling

    if target not in ("dask", "ray"):
        raise OpsError(f"cannot scale {target!r}", "use `qframe-ops scale dask ...` or `qframe-ops scale ray ...`")
    if group is not None and target != "ray":
        raise OpsError("--group applies to ray only", "drop --group for dask")
    scaling.check_bounds(minimum, maximum)
    live = cluster(namespace, context)
    _require_namespace(live)
    resource = "daskautoscalers" if target == "dask" else "rayclusters"
    found = live.list(resource)
    if not found:
        raise OpsError(
            f"{target}: not deployed (no {resource} in namespace {namespace})",
            f"deploy it with the stack's `{target}` section (`pulumi up`), then scale",
        )
    plans = (
        scaling.plan_dask(found, minimum, maximum)
        if target == "dask"
        else scaling.plan_ray(found, minimum, maximum, group)
    )
    rows = []
    for plan in plans:
        live.patch(plan.resource, plan.name, plan.patch, plan.content_type)
        rows.append({"resource": f"{plan.resource}/{plan.name}", "before": plan.before, "after": plan.after})
    lines = sorted({line for plan in plans for line in plan.config_lines})
    emit(console, output, rows, ["resource", "before", "after"], extra={"pulumi_config": lines})
    if output is Output.table:
        err_console.print("to make it stick (the next `pulumi up` resets the live CRs otherwise):", markup=False)
        for line in lines:
            console.print(f"  {line}", markup=False, highlight=False)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
