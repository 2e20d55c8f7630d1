"""What `make plan` prints: every resource a stack would register, as a tree, and its outputs.

It renders an offline program run (``infra.offline``: Pulumi mocks, no cluster, no Pulumi CLI), so
"is my stack file right and what will it create?" is answered in seconds on any machine.
"""

from __future__ import annotations

from pprint import pformat

from rich.markup import escape
from rich.tree import Tree

from infra.offline import ProgramRun, Registered


def resource_tree(run: ProgramRun) -> Tree:
    """Resources nested under their parent component, with protect/retain flags shown.

    Siblings are sorted by type and name: registration order depends on when outputs resolve, and
    two plans of the same stack should print the same tree.
    """
    tree = Tree(f"[bold]stack {run.stack}[/] ({len(run.resources)} resources)")
    children: dict[str, list[Registered]] = {}
    urns = {resource.urn for resource in run.resources}
    for resource in run.resources:
        parent = resource.parent if resource.parent in urns else ""
        children.setdefault(parent, []).append(resource)

    def add(node: Tree, parent: str) -> None:
        for resource in sorted(children.get(parent, []), key=lambda r: (r.type, r.name)):
            label = f"{resource.name} [dim]{resource.type}[/]"
            flags = [flag for flag, on in (("protect", resource.protect), ("retain", resource.retain_on_delete)) if on]
            if flags:
                label += f" [yellow]({', '.join(flags)})[/]"
            add(node.add(label), resource.urn)

    add(tree, "")
    return tree


def output_lines(run: ProgramRun) -> list[str]:
    """One rich-markup line per stack output, sorted by key; secret outputs are never shown."""
    lines = []
    for key in sorted(run.outputs):
        # pformat sorts map keys, which resolve in no fixed order; the width keeps one line per output.
        value = "[secret]" if key in run.secret_outputs else pformat(run.outputs[key], width=10_000)
        # Escaped: rich would otherwise take "[secret]" (or a value that looks like a tag) for markup and drop it.
        lines.append(f"  output [bold]{key}[/] = {escape(value)}")
    return lines
