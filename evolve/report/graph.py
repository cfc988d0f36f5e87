"""The lineage graph of a run: every measured commit as a node, edges to its parents, and a layered
layout (generation depth left to right, the tree of first parents top to bottom).
"""
from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass

from ..records import KEEP
from .data import RunData

# The lineage plot keeps every commit up to this many; past it, only kept commits and their ancestors.
MAX_TREE_NODES = 250


@dataclass
class Node:
    commit: str
    island: int | None         # None: the commit every island starts from (or one outside the journal)
    seq: int
    operator: str
    status: str
    val_bpb: float
    parents: tuple[str, ...]
    depth: int = 0


def lineage(run: RunData) -> tuple[dict[str, Node], list[tuple[str, str, bool]], bool]:
    """Commits as nodes (first measurement of each), parent edges (parent, child, crosses islands),
    and whether the graph was pruned to kept commits and their ancestors."""
    nodes: dict[str, Node] = {}
    for row in run.experiments.itertuples(index=False):
        if row.commit in nodes:
            continue
        for p in row.parents:
            if p not in nodes:  # a parent the journal never measured (e.g. an older commit of a user repo)
                nodes[p] = Node(p, None, -1, "outside", KEEP, math.nan, ())
        island = None if row.operator == "baseline" else int(row.island)
        depth = 1 + max((nodes[p].depth for p in row.parents), default=-1)
        nodes[row.commit] = Node(row.commit, island, int(row.seq), row.operator, row.status, row.val_bpb,
                                 tuple(row.parents), depth)
    pruned = len(nodes) > MAX_TREE_NODES
    if pruned:
        wanted = {c for c, n in nodes.items() if n.status == KEEP}
        stack = list(wanted)
        while stack:
            for p in nodes[stack.pop()].parents:
                if p not in wanted:
                    wanted.add(p)
                    stack.append(p)
        nodes = {c: n for c, n in nodes.items() if c in wanted}
    edges = []
    for n in nodes.values():
        for p in n.parents:
            if p in nodes:
                pi = nodes[p].island
                edges.append((p, n.commit, pi is not None and pi != n.island))
    return nodes, edges, pruned


def layered_layout(nodes: dict[str, Node]) -> dict[str, tuple[float, float]]:
    """x = generation depth; y from the tree of first parents, drawn the classic way: leaves on
    consecutive rows in depth-first order (siblings grouped by island), each inner node centred on its
    children. Second parents (crossover) only add edges."""
    children: dict[str | None, list[Node]] = defaultdict(list)
    for n in nodes.values():
        first = n.parents[0] if n.parents and n.parents[0] in nodes else None
        children[first].append(n)
    for kids in children.values():
        kids.sort(key=lambda n: (-1 if n.island is None else n.island, n.seq))
    pos: dict[str, tuple[float, float]] = {}
    ys: dict[str, float] = {}
    row = 0
    # Post-order walk with an explicit stack: a long ratchet lineage is a very deep tree.
    stack = [(root, False) for root in reversed(children[None])]
    while stack:
        n, expanded = stack.pop()
        kids = children.get(n.commit, [])
        if kids and not expanded:
            stack.append((n, True))
            stack.extend((kid, False) for kid in reversed(kids))
            continue
        if kids:
            y = (ys[kids[0].commit] + ys[kids[-1].commit]) / 2
        else:
            y, row = float(row), row + 1
        ys[n.commit] = y
        pos[n.commit] = (float(n.depth), -y)  # first rows at the top
    return pos

