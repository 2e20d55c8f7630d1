"""Developer tooling that lives beside the Pulumi program (local cluster, `make up`)."""
