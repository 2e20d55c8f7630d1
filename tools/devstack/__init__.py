"""`make up` / `make down` / `make preview` / `make plan`: the dev stack on a local or given cluster, and offline."""
