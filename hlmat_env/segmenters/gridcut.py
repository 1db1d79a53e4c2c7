"""Binary min cut on a 4-connected pixel grid with SciPy's max-flow (BSD), the graph built once per image.

The energy is ``sum_p U_p(L_p) + sum_{p~q} w_pq [L_p != L_q]`` with ``L = 1`` foreground. SciPy's
``maximum_flow`` needs integer capacities, so costs are scaled by ``resolution`` and rounded.

Optional backend: PyMaxflow (Boykov-Kolmogorov, GPL-3, so never a required dependency), several times
faster. It returns the *same* labelling: both backends cut the same integer capacities, and both return the
minimal foreground (source) set, the one unique labelling among tied minimum cuts: SciPy's as the nodes the
source reaches in the residual graph, PyMaxflow's as the sink tree of the graph with source and sink swapped
(the grid edges are symmetric, so only the terminal capacities swap). Masks therefore do not depend on what
is installed.
"""
from __future__ import annotations

import importlib.util
from functools import lru_cache

import numpy as np
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import breadth_first_order, maximum_flow

from hlmat_env.errors import DependencyNotInstalled

INF_COST = 1e6  # a hard constraint, in cost units
BACKENDS = ("auto", "scipy", "pymaxflow")


@lru_cache(maxsize=1)
def has_pymaxflow() -> bool:
    """Whether the optional PyMaxflow package (``maxflow``) is importable (cached)."""
    return importlib.util.find_spec("maxflow") is not None


def resolve_backend(backend: str) -> str:
    """``"scipy"`` or ``"pymaxflow"`` for a :data:`BACKENDS` name (``"auto"``: PyMaxflow when installed)."""
    if backend not in BACKENDS:
        raise ValueError(f"min-cut backend must be one of {list(BACKENDS)}, got {backend!r}")
    if backend == "auto":
        return "pymaxflow" if has_pymaxflow() else "scipy"
    if backend == "pymaxflow" and not has_pymaxflow():
        raise DependencyNotInstalled("min-cut backend 'pymaxflow' needs PyMaxflow (GPL-3): pip install PyMaxflow")
    return backend


def _structure(h: int, w: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The CSR layout of an h x w grid graph with a source and a sink (it depends on the shape alone):
    the permutation of the edge list [grid edges both ways, source edges, sink edges] into CSR order, the
    row pointers and the column indices."""
    n = h * w
    idx = np.arange(n).reshape(h, w)
    a = np.concatenate([idx[:, :-1].ravel(), idx[:-1].ravel()])
    b = np.concatenate([idx[:, 1:].ravel(), idx[1:].ravel()])
    src, sink = n, n + 1
    rows = np.concatenate([a, b, np.full(n, src), np.arange(n)])
    cols = np.concatenate([b, a, np.arange(n), np.full(n, sink)])
    order = np.lexsort((cols, rows))
    counts = np.bincount(rows, minlength=n + 2)
    indptr = np.concatenate([[0], np.cumsum(counts)]).astype(np.int32)
    return order, indptr, cols[order].astype(np.int32)


class GridCut:
    """Min-cut solver for one image grid (SciPy: the CSR structure is built in ``__init__``, reused per call).

    Args:
        wx: float HxW cost of cutting the edge between (y, x) and (y, x + 1) (last column unused).
        wy: float HxW cost of cutting the edge between (y, x) and (y + 1, x) (last row unused).
        resolution: cost units per integer capacity unit.
        backend: ``"scipy"``, ``"pymaxflow"`` (``pip install PyMaxflow``, GPL-3) or ``"auto"`` (PyMaxflow
            when installed); the labelling is the same (see the module docstring).
    """

    def __init__(self, wx: np.ndarray, wy: np.ndarray, resolution: float = 100.0, backend: str = "auto"):
        self.backend = resolve_backend(backend)
        h, w = wx.shape
        n = h * w
        self.shape, self.n, self.resolution = (h, w), n, resolution
        self._wx = np.round(wx * resolution).astype(np.int64)
        self._wy = np.round(wy * resolution).astype(np.int64)
        if self.backend == "pymaxflow":
            return  # the graph is built per solve; the CSR structure below is SciPy's
        pair = np.concatenate([self._wx[:, :-1].ravel(), self._wy[:-1].ravel()]).astype(np.int32)
        self._order, self._indptr, self._indices = _structure(h, w)
        self._pair = np.concatenate([pair, pair])

    def solve(self, cost_fg: np.ndarray, cost_bg: np.ndarray) -> np.ndarray:
        """Minimum-energy labelling.

        Args:
            cost_fg: float HxW cost of labelling each pixel foreground (``INF_COST`` forbids it).
            cost_bg: float HxW cost of labelling each pixel background.

        Returns:
            bool HxW, True = foreground (the source side of the minimum cut).
        """
        # Only the difference matters: subtract the minimum so that each pixel has one terminal edge.
        lo = np.minimum(cost_fg, cost_bg)
        to_src = np.minimum(np.round((cost_bg - lo) * self.resolution), 2**30).astype(np.int64).ravel()
        to_sink = np.minimum(np.round((cost_fg - lo) * self.resolution), 2**30).astype(np.int64).ravel()
        if self.backend == "pymaxflow":
            return self._solve_bk(to_src.reshape(self.shape), to_sink.reshape(self.shape))
        data = np.concatenate([self._pair, to_src, to_sink])[self._order].astype(np.int32)
        n = self.n
        graph = csr_matrix((data, self._indices, self._indptr), shape=(n + 2, n + 2))
        flow = maximum_flow(graph, n, n + 1, method="dinic").flow
        residual = graph - flow
        residual.data = (residual.data > 0).astype(np.int8)
        residual.eliminate_zeros()
        reached = breadth_first_order(residual, n, directed=True, return_predecessors=False)
        fg = np.zeros(n + 2, bool)
        fg[reached] = True
        return fg[:n].reshape(self.shape)

    def _solve_bk(self, to_src: np.ndarray, to_sink: np.ndarray) -> np.ndarray:
        """The minimal source set with PyMaxflow: solve the swapped graph, read its sink tree."""
        import maxflow

        g = maxflow.Graph[int]()
        nodes = g.add_grid_nodes(self.shape)
        right = np.array([[0, 0, 0], [0, 0, 1], [0, 0, 0]])
        down = np.array([[0, 0, 0], [0, 0, 0], [0, 1, 0]])
        g.add_grid_edges(nodes, weights=self._wx, structure=right, symmetric=True)
        g.add_grid_edges(nodes, weights=self._wy, structure=down, symmetric=True)
        g.add_grid_tedges(nodes, to_sink, to_src)  # swapped terminals
        g.maxflow()
        return g.get_grid_segments(nodes)  # True = sink tree of the swapped graph = minimal source set
