"""The platform's CrossGuard rules as pure functions on resource properties.

Every module holds rules of one area (S3, RDS, IAM, EKS, Kubernetes workloads, ConfigMaps); each rule
takes plain data (a resource's type, name and input properties as the Pulumi engine sees them,
camelCase) and returns one-line violation messages naming the resource and the fix. ``rules.RULES``
lists them all; ``pack`` wires them into pulumi-policy objects. Nothing here imports pulumi-policy
except ``pack``, so the rules run the same under pytest, under Pulumi mocks and inside the CLI.
"""
