"""Pure parts of the real node: config files, certificates, the host-change journal, the
provisioner's decisions, the endpoint table, the one-node-per-machine rule."""

from __future__ import annotations

import ipaddress
import json
import tomllib
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from tests.harness.k8s_schema import schema_errors
from tools.devstack.cli import cluster_kind
from tools.devstack.node import addons, configs, dnsprobe, endpoints, journal, pki, provisioner, snapshot
from tools.devstack.node.layout import NetworkPlan, NodeLayout
from tools.devstack.node.node import NodeError, find_system_tools, owner_problem
from tools.versions import pinned_versions

pytestmark = pytest.mark.unit

NET = NetworkPlan()
LAYOUT = NodeLayout.under(Path("/tmp/qframe-test-state"))


# -- configs ------------------------------------------------------------------------------------


def test_containerd_config_round_trips_through_toml_with_the_facts_of_this_machine() -> None:
    text = configs.to_toml(configs.containerd_config(LAYOUT, sandbox_image="qframe/pause:abc"))
    parsed = tomllib.loads(text)
    cri = parsed["plugins"]["io.containerd.grpc.v1.cri"]
    assert parsed["version"] == 2
    assert cri["sandbox_image"] == "qframe/pause:abc"
    assert cri["restrict_oom_score_adj"] is True
    assert cri["tolerate_missing_hugetlb_controller"] is True
    assert cri["containerd"]["runtimes"]["runc"]["options"]["SystemdCgroup"] is False
    assert cri["cni"]["conf_dir"] == str(LAYOUT.cni_conf_dir)
    assert parsed["grpc"]["address"] == str(LAYOUT.containerd_socket)
    # The node's runtime never shares a socket or root with a system containerd or Docker's.
    assert not parsed["grpc"]["address"].startswith("/run/containerd/")
    assert parsed == configs.containerd_config(LAYOUT, sandbox_image="qframe/pause:abc")


def test_toml_writer_refuses_what_it_cannot_write() -> None:
    with pytest.raises(TypeError, match="float"):
        configs.to_toml({"a": 1.5})


def test_cni_chain_is_bridge_with_host_local_ipam_and_portmap_on_the_node_pod_cidr() -> None:
    conf = configs.cni_conflist(LAYOUT, NET)
    assert [p["type"] for p in conf["plugins"]] == ["bridge", "portmap"]
    bridge = conf["plugins"][0]
    assert bridge["bridge"] == NET.pod_bridge
    assert bridge["ipam"]["type"] == "host-local"
    assert bridge["ipam"]["ranges"] == [[{"subnet": "10.244.0.0/24"}]]
    assert bridge["ipam"]["dataDir"].startswith(str(LAYOUT.lib))


def test_kubelet_config_has_the_settings_this_host_needs() -> None:
    cfg = configs.kubelet_config(LAYOUT, NET)
    assert cfg["cgroupDriver"] == "cgroupfs"
    assert cfg["failCgroupV1"] is False
    assert cfg["failSwapOn"] is False
    assert cfg["clusterDNS"] == ["10.96.0.10"]
    assert cfg["clusterDomain"] == "cluster.local"
    assert cfg["readOnlyPort"] == 0
    assert cfg["authentication"]["anonymous"]["enabled"] is False
    assert cfg["authentication"]["webhook"]["enabled"] is True
    assert cfg["authentication"]["x509"]["clientCAFile"].endswith("ca.crt")
    assert cfg["authorization"]["mode"] == "Webhook"
    assert cfg["imageGCHighThresholdPercent"] == 100  # images cannot be pulled back
    assert set(cfg["evictionHard"]) == {
        "memory.available",
        "nodefs.available",
        "imagefs.available",
        "nodefs.inodesFree",
        "imagefs.inodesFree",
    }
    assert cfg["containerRuntimeEndpoint"] == f"unix://{LAYOUT.containerd_socket}"


def test_kube_proxy_uses_iptables_and_touches_no_conntrack_or_localnet_sysctl() -> None:
    cfg = configs.kube_proxy_config(LAYOUT, NET)
    assert cfg["mode"] == "iptables"
    assert cfg["clusterCIDR"] == NET.pod_cidr
    assert cfg["conntrack"] == {"maxPerCore": 0, "min": 0}
    assert cfg["iptables"]["localhostNodePorts"] is False
    assert cfg["nodePortAddresses"] == ["10.250.0.1/32"]


def _tools() -> dict[str, Path]:
    names = ["etcd", "kube-apiserver", "kube-controller-manager"]
    names += ["kube-scheduler", "containerd", "kubelet", "kube-proxy", "kube-router"]
    return {n: Path("/bin") / n for n in names}


def _flags(spec: configs.DaemonSpec) -> dict[str, str]:
    return dict(a.removeprefix("--").split("=", 1) for a in spec.argv[1:] if a.startswith("--") and "=" in a)


def test_daemons_start_in_dependency_order_and_listen_where_they_should() -> None:
    specs = {s.name: s for s in configs.daemon_specs(LAYOUT, NET, _tools())}
    assert list(specs) == [
        "etcd",
        "kube-apiserver",
        "kube-controller-manager",
        "kube-scheduler",
        "containerd",
        "kubelet",
        "kube-proxy",
        "kube-router",
    ]
    assert _flags(specs["etcd"])["listen-client-urls"].startswith("http://127.0.0.1:")
    api = _flags(specs["kube-apiserver"])
    assert api["bind-address"] == NET.node_ip
    assert api["service-cluster-ip-range"] == "10.96.0.0/16"
    assert api["authorization-mode"] == "Node,RBAC"
    router = _flags(specs["kube-router"])
    assert (router["run-firewall"], router["run-router"], router["run-service-proxy"]) == ("true", "false", "false")
    cm = _flags(specs["kube-controller-manager"])
    assert (cm["cluster-cidr"], cm["bind-address"]) == ("10.244.0.0/16", "127.0.0.1")


# -- certificates -------------------------------------------------------------------------------


def test_apiserver_cert_names_every_way_a_client_reaches_it(tmp_path: Path) -> None:
    pki.ensure_pki(tmp_path, NET)
    cert = x509.load_pem_x509_certificate((tmp_path / "apiserver.crt").read_bytes())
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert set(sans.get_values_for_type(x509.DNSName)) >= {
        "kubernetes",
        "kubernetes.default",
        "kubernetes.default.svc",
        "kubernetes.default.svc.cluster.local",
    }
    assert set(sans.get_values_for_type(x509.IPAddress)) == {
        ipaddress.ip_address(ip) for ip in ("10.250.0.1", "10.96.0.1", "127.0.0.1")
    }
    usage = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert ExtendedKeyUsageOID.SERVER_AUTH in usage


def test_client_certs_carry_the_identities_rbac_expects_and_chain_to_the_ca(tmp_path: Path) -> None:
    pki.ensure_pki(tmp_path, NET)
    ca = x509.load_pem_x509_certificate((tmp_path / "ca.crt").read_bytes())
    expected = {
        "admin": ("qframe-admin", "system:masters"),
        "kubelet-client": ("system:node:qframe-node", "system:nodes"),
        "kube-proxy": ("system:kube-proxy", None),
        "controller-manager": ("system:kube-controller-manager", None),
        "scheduler": ("system:kube-scheduler", None),
    }
    for name, (cn, org) in expected.items():
        cert = x509.load_pem_x509_certificate((tmp_path / f"{name}.crt").read_bytes())
        assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == cn
        orgs = [a.value for a in cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)]
        assert orgs == ([org] if org else [])
        cert.verify_directly_issued_by(ca)
        assert ExtendedKeyUsageOID.CLIENT_AUTH in cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert (tmp_path / "sa.key").stat().st_mode & 0o077 == 0


def test_pki_keeps_the_ca_and_existing_certs_on_a_second_run(tmp_path: Path) -> None:
    pki.ensure_pki(tmp_path, NET)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    (tmp_path / "admin.crt").unlink()
    pki.ensure_pki(tmp_path, NET)
    after = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    assert after["ca.crt"] == before["ca.crt"]
    assert after["apiserver.crt"] == before["apiserver.crt"]
    assert after["admin.crt"] != before["admin.crt"]


def test_kubeconfig_references_files_and_has_one_context(tmp_path: Path) -> None:
    cfg = pki.kubeconfig(
        server="https://10.250.0.1:6443",
        ca_file=tmp_path / "ca.crt",
        cert_file=tmp_path / "a.crt",
        key_file=tmp_path / "a.key",
        user="admin",
    )
    assert cfg["current-context"] == "qframe-node"
    assert cfg["clusters"][0]["cluster"]["server"] == "https://10.250.0.1:6443"
    assert cfg["users"][0]["user"]["client-key"] == str(tmp_path / "a.key")


# -- journal ------------------------------------------------------------------------------------


def test_journal_keeps_the_first_old_value_and_survives_a_reload(tmp_path: Path) -> None:
    j = journal.Journal.load(tmp_path / "j.json")
    assert j.record({"kind": "sysctl", "key": "kernel.panic", "old": "1"})
    assert not j.record({"kind": "sysctl", "key": "kernel.panic", "old": "10"})  # a second up
    again = journal.Journal.load(tmp_path / "j.json")
    assert again.entries == [{"kind": "sysctl", "key": "kernel.panic", "old": "1"}]


def test_journal_rejects_unknown_or_incomplete_entries(tmp_path: Path) -> None:
    j = journal.Journal.load(tmp_path / "j.json")
    with pytest.raises(journal.JournalError, match="unknown kind 'route'"):
        j.record({"kind": "route", "to": "x"})
    with pytest.raises(journal.JournalError, match="lacks old"):
        j.record({"kind": "sysctl", "key": "kernel.panic"})
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(journal.JournalError, match="not valid JSON"):
        journal.Journal.load(tmp_path / "bad.json")


def test_undo_runs_in_reverse_with_ipsets_after_every_iptables_entry() -> None:
    entries: list[dict[str, Any]] = [
        {"kind": "sysctl", "key": "a", "old": "0"},
        {"kind": "iptables", "family": "ipv4", "save": ""},
        {"kind": "ipsets", "names": []},
        {"kind": "iptables", "family": "ipv6", "save": ""},
        {"kind": "link", "name": "qfnode0"},
        {"kind": "sysctl", "key": "b", "old": "0"},
    ]
    order = [e.get("key") or e.get("family") or e.get("name") or e["kind"] for e in journal.undo_order(entries)]
    assert order == ["b", "qfnode0", "ipv6", "ipv4", "ipsets", "a"]


BEFORE = """*filter
:INPUT ACCEPT [0:0]
:FORWARD ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:MINE - [0:0]
-A INPUT -j MINE
COMMIT
*nat
:PREROUTING ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
COMMIT
"""
AFTER = """*filter
:INPUT ACCEPT [0:0]
:FORWARD ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:MINE - [0:0]
:KUBE-FORWARD - [0:0]
-A INPUT -j MINE
-A FORWARD -m comment --comment "kubernetes forwarding rules" -j KUBE-FORWARD
-A KUBE-FORWARD -m conntrack --ctstate INVALID -j DROP
COMMIT
*nat
:PREROUTING ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
:KUBE-SERVICES - [0:0]
-A PREROUTING -j KUBE-SERVICES
COMMIT
*mangle
:KUBE-IPTABLES-HINT - [0:0]
COMMIT
"""


def test_iptables_undo_deletes_added_rules_then_flushes_and_removes_added_chains_only() -> None:
    commands = journal.iptables_undo_commands(BEFORE, AFTER)
    assert commands == [
        [
            "-t",
            "filter",
            "-D",
            "FORWARD",
            "-m",
            "comment",
            "--comment",
            "kubernetes forwarding rules",
            "-j",
            "KUBE-FORWARD",
        ],
        ["-t", "nat", "-D", "PREROUTING", "-j", "KUBE-SERVICES"],
        ["-t", "filter", "-F", "KUBE-FORWARD"],
        ["-t", "nat", "-F", "KUBE-SERVICES"],
        ["-t", "mangle", "-F", "KUBE-IPTABLES-HINT"],
        ["-t", "filter", "-X", "KUBE-FORWARD"],
        ["-t", "nat", "-X", "KUBE-SERVICES"],
        ["-t", "mangle", "-X", "KUBE-IPTABLES-HINT"],
    ]
    assert journal.iptables_undo_commands(BEFORE, BEFORE) == []


def test_mounts_under_a_root_come_deepest_first_and_never_outside_it() -> None:
    lines = [
        "46 27 254:0 /x /var/lib/qframe-node/kubelet rw - ext4 /dev/vda rw",
        "48 46 0:41 / /var/lib/qframe-node/kubelet/pods/u/volumes/v rw - tmpfs tmpfs rw",
        "49 27 0:42 / /var/lib/qframe-node/kubelet-other rw - tmpfs tmpfs rw",
        "50 27 0:4 / /run/netns/cni-1 rw - nsfs nsfs rw",
    ]
    assert journal.mounts_under(lines, Path("/var/lib/qframe-node/kubelet")) == [
        "/var/lib/qframe-node/kubelet/pods/u/volumes/v",
        "/var/lib/qframe-node/kubelet",
    ]


def test_snapshot_differences_name_what_changed() -> None:
    before = snapshot.HostSnapshot(
        frozenset({"lo"}), frozenset({"filter:INPUT"}), frozenset(), (("kernel.panic", "1"),), frozenset({"/"})
    )
    after = snapshot.HostSnapshot(
        frozenset({"lo", "qfnode0"}),
        frozenset({"filter:INPUT"}),
        frozenset(),
        (("kernel.panic", "10"),),
        frozenset({"/"}),
    )
    assert before.differences(before) == []
    assert before.differences(after) == ["links added: ['qfnode0']", "sysctl kernel.panic: 1 -> 10"]
    assert snapshot.link_names("7: veth1@if2: <UP>\n5: qfnode0: <UP>") == frozenset({"veth1", "qfnode0"})


def test_snapshot_counts_only_chains_someone_can_remove() -> None:
    # A fresh machine lists no iptables table until first use; the kernel's built-ins then appear
    # and cannot be deleted, so `make down` cannot (and need not) take them back.
    fresh = """*mangle\n:PREROUTING ACCEPT [0:0]\n:KUBE-IPTABLES-HINT - [0:0]\nCOMMIT\n
*filter\n:INPUT ACCEPT [0:0]\n:FORWARD DROP [0:0]\n:QFNODE-FWD - [0:0]\nCOMMIT\n"""
    names = journal.chain_names(fresh)
    assert "filter:INPUT" in names
    assert snapshot.removable_chains(names) == frozenset({"mangle:KUBE-IPTABLES-HINT", "filter:QFNODE-FWD"})


# -- addons, provisioner, endpoints -------------------------------------------------------------


def test_addons_are_valid_kubernetes_objects() -> None:
    kube = pinned_versions()["KUBE_VERSION"]
    objects = addons.all_addons(NET, "qframe/coredns:abc")
    assert [e for o in objects for e in schema_errors(o, kube)] == []
    service = next(o for o in objects if o["kind"] == "Service")
    assert service["spec"]["clusterIP"] == "10.96.0.10"
    deployment = next(o for o in objects if o["kind"] == "Deployment")
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == "qframe/coredns:abc"
    assert container["imagePullPolicy"] == "Never"
    assert addons.corefile(NET).startswith(".:53 {")
    # NetworkPolicies see the pod port after DNAT; the charts allow DNS egress to 53.
    assert {p["targetPort"] for p in service["spec"]["ports"]} == {53}
    sysctls = deployment["spec"]["template"]["spec"]["securityContext"]["sysctls"]
    assert sysctls == [{"name": "net.ipv4.ip_unprivileged_port_start", "value": "53"}]
    assert "forward" not in addons.corefile(NET)  # nothing upstream is reachable


def _claim(name: str, uid: str, cls: str | None = "standard", **extra: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {"resources": {"requests": {"storage": "1Gi"}}, "accessModes": ["ReadWriteOnce"]}
    if cls:
        spec["storageClassName"] = cls
    spec.update(extra)
    return {"metadata": {"name": name, "namespace": "qframe", "uid": uid}, "spec": spec, "status": {"phase": "Pending"}}


def test_provisioner_serves_pending_claims_of_its_class_once(tmp_path: Path) -> None:
    claims = [_claim("a", "1"), _claim("b", "2", cls="other"), _claim("c", "3", volumeName="pv-x"), _claim("d", "4")]
    existing = [{"metadata": {"name": "pvc-4"}, "spec": {"claimRef": {"uid": "4"}}}]
    todo = provisioner.claims_to_provision(claims, existing)
    assert [c["metadata"]["name"] for c in todo] == ["a"]
    pv = provisioner.volume_for_claim(todo[0], tmp_path)
    assert pv["spec"]["claimRef"]["uid"] == "1"
    assert pv["spec"]["hostPath"]["path"] == str(tmp_path / "pvc-1")
    assert pv["spec"]["persistentVolumeReclaimPolicy"] == "Delete"
    assert schema_errors(pv, pinned_versions()["KUBE_VERSION"]) == []


def test_provisioner_deletes_only_its_own_released_volumes(tmp_path: Path) -> None:
    ours = {provisioner.PROVISIONED_BY: addons.PROVISIONER}

    def pv(name: str, phase: str, annotations: dict[str, str]) -> dict[str, Any]:
        return {
            "metadata": {"name": name, "annotations": annotations},
            "spec": {"persistentVolumeReclaimPolicy": "Delete"},
            "status": {"phase": phase},
        }

    volumes = [pv("a", "Released", ours), pv("b", "Bound", ours), pv("c", "Released", {})]
    assert [v["metadata"]["name"] for v in provisioner.volumes_to_delete(volumes)] == ["a"]
    provisioner.make_volume_dir(tmp_path / "v")
    assert (tmp_path / "v").stat().st_mode & 0o777 == 0o777


def test_endpoints_show_nodeports_on_the_node_ip_and_port_forwards_otherwise() -> None:
    services = [
        {
            "metadata": {"name": "minio", "namespace": "qframe"},
            "spec": {"type": "ClusterIP", "clusterIP": "10.96.1.1", "ports": [{"port": 9000, "name": "api"}]},
        },
        {
            "metadata": {"name": "hub", "namespace": "qframe"},
            "spec": {"type": "NodePort", "clusterIP": "10.96.1.2", "ports": [{"port": 80, "nodePort": 30080}]},
        },
        {
            "metadata": {"name": "kafka-headless", "namespace": "qframe"},
            "spec": {"clusterIP": "None", "ports": [{"port": 9092}]},
        },
    ]
    lines = endpoints.endpoint_lines(services, "10.250.0.1", Path("/s/kubeconfig"))
    assert lines == [
        ("hub:80", "10.250.0.1:30080"),
        ("minio:9000 (api)", "KUBECONFIG=/s/kubeconfig kubectl -n qframe port-forward svc/minio 9000:9000"),
    ]


# -- DNS probe, machine lock, cluster choice ----------------------------------------------------


def test_dns_probe_builds_a_query_and_reads_a_records() -> None:
    query = dnsprobe.query_packet("kubernetes.default.svc.cluster.local")
    assert b"\x0akubernetes\x07default\x03svc\x07cluster\x05local\x00" in query
    answer = (
        query[:2]
        + b"\x81\x80\x00\x01\x00\x01\x00\x00\x00\x00"
        + query[12:]
        + b"\xc0\x0c\x00\x01\x00\x01\x00\x00\x00\x1e\x00\x04\x0a\x60\x00\x01"
    )
    assert dnsprobe.parse_a_records(answer) == ["10.96.0.1"]
    nxdomain = query[:2] + b"\x81\x83" + query[4:]
    assert dnsprobe.parse_a_records(nxdomain) == []
    with pytest.raises(ValueError, match="does not match"):
        dnsprobe.parse_a_records(b"\x00\x01" + answer[2:])


def test_one_node_per_machine(tmp_path: Path) -> None:
    ours, other = tmp_path / "a" / ".state", tmp_path / "b" / ".state"
    assert owner_problem(None, ours) is None
    assert owner_problem(f"{ours}\n", ours) is None
    assert owner_problem(f"{other}\n", ours) is None  # stale: that clone's node left no journal
    (other / "node").mkdir(parents=True)
    (other / "node" / "journal.json").write_text(json.dumps([]))
    problem = owner_problem(f"{other}\n", ours)
    assert problem is not None
    assert str(other) in problem
    assert "make down" in problem


@pytest.mark.parametrize(
    ("environ", "kind"),
    [
        ({}, "node"),
        ({"QFRAME_CLUSTER": "kwok"}, "kwok"),
        ({"KUBECONFIG": "/k"}, "external"),
        ({"KUBECONFIG": "/k", "QFRAME_CLUSTER": "node"}, "node"),
        ({"KUBECONFIG": "/k", "QFRAME_CLUSTER": "kwok"}, "kwok"),
    ],
)
def test_cluster_choice(environ: dict[str, str], kind: str) -> None:
    assert cluster_kind(environ) == kind


def test_unknown_cluster_choice_names_the_allowed_values() -> None:
    with pytest.raises(ValueError, match="node \\(default\\), kwok"):
        cluster_kind({"QFRAME_CLUSTER": "kind"})


def test_missing_host_programs_name_the_install_step() -> None:
    with pytest.raises(NodeError, match="tools/install node-packages"):
        find_system_tools(lambda name: None if name in ("ipset", "conntrack") else f"/usr/bin/{name}")
