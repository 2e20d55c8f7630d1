"""Keeps the shared parts of the project's Helm charts in one place.

charts/_shared/ holds the named templates (`_common.tpl`) and the values-schema fragments
(`schema/<name>.json`) every chart follows (charts/README.md, "the contract every chart follows").
`python -m tools.chartkit` copies them into each chart and regenerates each chart's README.md
values table; `python -m tools.chartkit --check` only reports what is out of date.
"""
