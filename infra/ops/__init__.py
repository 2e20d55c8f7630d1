"""``qframe-ops``: day-2 operations on a deployed platform.

Helm releases and our charts go through pyhelm3 (which drives the pinned ``helm``); cluster state
comes from the Kubernetes API through the official client. The modules that decide something
(status rows, diffs, doctor checks, scale patches) are pure functions over the API's JSON, so the
unit tier runs them against responses recorded from a real cluster.
"""
