"""Binary min cut on a 4-connected pixel grid with SciPy's max-flow (BSD), the graph built once per image.

The energy is ``sum_p U_p(L_p) + sum_{p~q} w_pq [L_p != L_q]`` with ``L = 1`` foreground. SciPy's
``maximum_flow`` needs integer capacities, so costs are scaled by ``resolution`` and rounded.
"""
from __future__ import annotations

import numpy as np
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import breadth_first_order, maximum_flow

INF_COST = 1e6  # a hard constraint, in cost units


class GridCut:
    """Min-cut solver for one image grid; the CSR structure is built in ``__init__`` and reused per call.

    Args:
        wx: float HxW cost of cutting the edge between (y, x) and (y, x + 1) (last column unused).
        wy: float HxW cost of cutting the edge between (y, x) and (y + 1, x) (last row unused).
        resolution: cost units per integer capacity unit.
    """

    def __init__(self, wx: np.ndarray, wy: np.ndarray, resolution: float = 100.0):
        h, w = wx.shape
        n = h * w
        self.shape, self.n, self.resolution = (h, w), n, resolution
        idx = np.arange(n).reshape(h, w)
        a = np.concatenate([idx[:, :-1].ravel(), idx[:-1].ravel()])
        b = np.concatenate([idx[:, 1:].ravel(), idx[1:].ravel()])
        pair = np.round(np.concatenate([wx[:, :-1].ravel(), wy[:-1].ravel()]) * resolution).astype(np.int32)
        src, sink = n, n + 1
        rows = np.concatenate([a, b, np.full(n, src), np.arange(n)])
        cols = np.concatenate([b, a, np.arange(n), np.full(n, sink)])
        order = np.lexsort((cols, rows))
        self._order = order
        self._pair = np.concatenate([pair, pair])
        self._npair = 2 * len(a)
        counts = np.bincount(rows, minlength=n + 2)
        self._indptr = np.concatenate([[0], np.cumsum(counts)]).astype(np.int32)
        self._indices = cols[order].astype(np.int32)

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
