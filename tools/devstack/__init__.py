"""`make up` / `make down` / `make preview`: the dev stack on a local or given Kubernetes cluster."""
