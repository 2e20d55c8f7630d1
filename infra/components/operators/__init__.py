"""The operators the compute clusters need (issue 13): dask-kubernetes and KubeRay.

Each module builds an operator's objects with pure functions (ServiceAccount, RBAC, Deployment,
NetworkPolicy) and installs the CRDs of the pinned upstream release that tools/crds.py extracted
into ``.tools/crds/``. ``dask.installOperator`` / ``ray.installOperator`` skip all of it on a cluster
that already runs the operator.
"""
