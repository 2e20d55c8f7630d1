"""Developer tooling beside the Pulumi program: pinned versions, the dev stack commands, local services."""
