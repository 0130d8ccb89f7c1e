"""Renderings of a dependency graph: Mermaid and DOT text for tools, and a self-contained SVG for the admin
(no JavaScript, no CDN). Layout: longest-path layers from dependencies to dependents, left to right."""

from __future__ import annotations

from html import escape
from typing import Any

from apps.tasks.selectors import Graph, GraphNode

STATE_COLOURS = {
    "ready": "#c8f7c5",
    "blocked": "#f7c5c5",
    "in_progress": "#c5daf7",
    "done": "#e0e0e0",
    "cancelled": "#f0f0f0",
    "deferred": "#f7ecc5",
}


def graph_json(graph: Graph) -> dict[str, Any]:
    return {
        "nodes": [
            {
                "id": n.id,
                "title": n.title,
                "status": n.status,
                "state": n.state,
                "priority": n.priority,
                "assignee": n.assignee,
                "parent": n.parent,
                "blocked_by": n.blocked_by,
                "why": n.why,
                **({"external": True} if n.external else {}),
            }
            for n in graph.nodes
        ],
        "edges": [{"task": task, "depends_on": dep} for task, dep in graph.edges],
    }


def _label(node: GraphNode, limit: int = 40) -> str:
    title = node.title if len(node.title) <= limit else node.title[: limit - 1] + "…"
    return f"#{node.id} {title}"


def mermaid(graph: Graph) -> str:
    lines = ["flowchart LR"]
    for node in graph.nodes:
        text = _label(node).replace('"', "#quot;")
        lines.append(f'  t{node.id}["{text} ({node.state})"]:::{node.state}')
    lines.extend(f"  t{dep} --> t{task}" for task, dep in graph.edges)
    lines.extend(f"  classDef {state} fill:{colour}" for state, colour in STATE_COLOURS.items())
    return "\n".join(lines)


def dot(graph: Graph) -> str:
    lines = ["digraph tasks {", "  rankdir=LR;", '  node [shape=box, style="rounded,filled"];']
    for node in graph.nodes:
        text = _label(node).replace("\\", "\\\\").replace('"', '\\"')
        colour = STATE_COLOURS.get(node.state, "#ffffff")
        lines.append(f'  t{node.id} [label="{text}\\n{node.state}", fillcolor="{colour}"];')
    lines.extend(f"  t{dep} -> t{task};" for task, dep in graph.edges)
    lines.append("}")
    return "\n".join(lines)


def _layers(graph: Graph) -> dict[int, int]:
    ids = {n.id for n in graph.nodes}
    deps: dict[int, list[int]] = {i: [] for i in ids}
    for task, dep in graph.edges:
        if task in ids and dep in ids:
            deps[task].append(dep)
    layer: dict[int, int] = {}

    def depth(node: int) -> int:  # iterative longest path; the graph is acyclic by construction
        stack = [node]
        while stack:
            current = stack[-1]
            pending = [d for d in deps[current] if d not in layer]
            if pending:
                stack.extend(pending)
                continue
            stack.pop()
            layer[current] = 1 + max((layer[d] for d in deps[current]), default=-1)
        return layer[node]

    for node_id in sorted(ids):
        if node_id not in layer:
            depth(node_id)
    return layer


def svg(graph: Graph, *, highlight: int | None = None, width: int = 180, height: int = 44) -> str:
    """A standalone <svg> element; every label is escaped."""
    if not graph.nodes:
        return '<p class="help">No tasks to draw.</p>'
    layer = _layers(graph)
    columns: dict[int, list[GraphNode]] = {}
    for node in sorted(graph.nodes, key=lambda n: n.id):
        columns.setdefault(layer[node.id], []).append(node)
    gap_x, gap_y = 60, 16
    where: dict[int, tuple[int, int]] = {}
    for column, nodes in columns.items():
        for row, node in enumerate(nodes):
            where[node.id] = (10 + column * (width + gap_x), 10 + row * (height + gap_y))
    total_w = 20 + (max(columns) + 1) * (width + gap_x) - gap_x
    total_h = 20 + max(len(c) for c in columns.values()) * (height + gap_y) - gap_y
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="task-graph" width="{total_w}" height="{total_h}" '
        f'viewBox="0 0 {total_w} {total_h}" role="img" aria-label="dependency graph">',
        '<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="8" markerHeight="8" '
        'orient="auto-start-reverse"><path d="M 0 0 L 10 5 L 0 10 z" fill="#555"/></marker></defs>',
    ]
    for task, dep in graph.edges:
        if task in where and dep in where:
            x1, y1 = where[dep]
            x2, y2 = where[task]
            parts.append(
                f'<line class="edge" data-task="{task}" data-depends-on="{dep}" x1="{x1 + width}" '
                f'y1="{y1 + height // 2}" x2="{x2}" y2="{y2 + height // 2}" stroke="#555" marker-end="url(#arrow)"/>'
            )
    for node in graph.nodes:
        x, y = where[node.id]
        colour = STATE_COLOURS.get(node.state, "#ffffff")
        stroke = ' stroke-width="3"' if node.id == highlight else ""
        parts.append(
            f'<g class="node" data-task="{node.id}" data-state="{escape(node.state)}">'
            f"<title>{escape(node.why or node.state)}</title>"
            f'<a href="../../{node.id}/change/"><rect x="{x}" y="{y}" width="{width}" height="{height}" rx="6" '
            f'fill="{colour}" stroke="#333"{stroke}/>'
            f'<text x="{x + 8}" y="{y + 18}" font-size="12">{escape(_label(node, 24))}</text>'
            f'<text x="{x + 8}" y="{y + 35}" font-size="11" fill="#444">{escape(node.state)}</text></a></g>'
        )
    parts.append("</svg>")
    return "".join(parts)


def neighbourhood(graph: Graph, task_id: int, *, limit: int = 60) -> Graph:
    """The part of a project graph around one task: what it waits on, what waits on it, and its subtasks."""
    upstream: dict[int, list[int]] = {}
    downstream: dict[int, list[int]] = {}
    for task, dep in graph.edges:
        upstream.setdefault(task, []).append(dep)
        downstream.setdefault(dep, []).append(task)
    children: dict[int, list[int]] = {}
    for node in graph.nodes:
        if node.parent is not None:
            children.setdefault(node.parent, []).append(node.id)
    keep = {task_id}
    for direction in (upstream, downstream, children):
        frontier = [task_id]
        while frontier and len(keep) < limit:
            following = []
            for current in frontier:
                for other in direction.get(current, ()):
                    if other not in keep and len(keep) < limit:
                        keep.add(other)
                        following.append(other)
            frontier = following
    return Graph(
        nodes=[n for n in graph.nodes if n.id in keep],
        edges=[(a, b) for a, b in graph.edges if a in keep and b in keep],
    )
