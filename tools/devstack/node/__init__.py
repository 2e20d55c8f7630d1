"""The real local node: containerd, a control plane, kubelet and kube-proxy as host processes.

Submodules are small: ``layout`` (where everything lives), ``configs`` (pure config builders),
``pki`` (certificates), ``journal`` (recorded host changes and their undo), ``hostnet``,
``supervisor`` (daemons), ``addons`` (in-cluster objects), ``node`` (up/down in order).
"""
