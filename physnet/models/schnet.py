"""SchNet: continuous-filter convolutional network.

Schütt, Sauceda, Kindermans, Tkatchenko & Müller, "SchNet - a deep learning
architecture for molecules and materials", J. Chem. Phys. 148, 241722 (2018).

- embedding of the species, x_i^0 (Sec. II.B);
- distances expanded in Gaussians e_k(r) = exp(-gamma (r - mu_k)^2), centres every
  0.1 Å, gamma = 10 Å^-2 (eq. 9);
- filter-generating network W(r_ij) = Dense(ssp(Dense(e(r_ij)))) multiplied by the
  cosine cutoff (Sec. II.D; the cutoff makes the energy smooth at r_c);
- continuous-filter convolution x_i' = sum_j x_j W(r_ij) (eq. 6), inside an
  interaction block atom-wise -> cfconv -> atom-wise, ssp -> atom-wise, added as a
  residual x_i <- x_i + v_i (Fig. 2);
- atom-wise output network ssp MLP F -> F/2 -> 1 giving per-atom energies, summed
  by :class:`physnet.Potential` (eq. 11 and Fig. 2).

Target scaling (a scale and a per-atom shift from training statistics) is applied
by :class:`physnet.Potential` for every model alike, not here.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import torch

from physnet.data import keys as K
from physnet.data.neighbors import edge_pairs, edge_vectors
from physnet.models.registry import EnergyModel, register
from physnet.nn import CosineCutoff, GaussianRBF, ShiftedSoftplus, mlp, scatter_sum
from physnet.nn.tabulate import HermiteTable, hermite_polynomial, tabulated_convolution
from physnet.nn.tracing import is_exporting

# Below this many edges the sort that pairs edges with their reverse costs more than the
# filter evaluations it saves (2-core CPU, 128 filters); results agree to round-off either way.
PAIR_MIN_EDGES = 256
# From this many edges a frozen (tabulated) SchNet runs each convolution as one fused, chunked
# operation (physnet.nn.tabulate.tabulated_convolution) that stores no [n_edges, F] tensor;
# below it the unfused ops have less Python overhead.
FUSED_MIN_EDGES = 16384


class CFConv(torch.nn.Module):
    """Continuous-filter convolution, eq. (6), with its filter network.

    Args:
        n_features: atom feature width F.
        n_filters: filter width.
        n_rbf: number of radial basis functions fed to the filter network.
    """

    def __init__(self, n_features: int, n_filters: int, n_rbf: int) -> None:
        super().__init__()
        self.filter_net = torch.nn.Sequential(
            torch.nn.Linear(n_rbf, n_filters), ShiftedSoftplus(), torch.nn.Linear(n_filters, n_filters)
        )
        self.in2f = torch.nn.Linear(n_features, n_filters, bias=False)

    def forward(
        self,
        x: torch.Tensor,
        rbf: torch.Tensor,
        fcut: torch.Tensor,
        edge_index: torch.Tensor,
        pair: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """x [n_atoms, F], rbf [n_edges, n_rbf], fcut [n_edges] -> [n_atoms, n_filters].

        With ``pair`` [n_edges] (see :func:`physnet.data.neighbors.edge_pairs`), ``rbf`` and
        ``fcut`` are per pair [n_pairs, ...]: the filter, a function of the distance only, is
        computed once per pair and gathered to both directions (half the filter cost).
        """
        w = self.filter(rbf, fcut)  # [n_edges or n_pairs, n_filters]
        return self.convolve(x, w, edge_index, pair)

    def filter(self, rbf: torch.Tensor, fcut: torch.Tensor) -> torch.Tensor:
        """W(r) = filter_net(rbf) * f_cut: rbf [n, n_rbf], fcut [n] -> [n, n_filters]."""
        return self.filter_net(rbf) * fcut.unsqueeze(-1)

    def convolve(
        self, x: torch.Tensor, w: torch.Tensor, edge_index: torch.Tensor, pair: torch.Tensor | None = None
    ) -> torch.Tensor:
        """sum_j in2f(x)_j * W_ij, filters w [n_edges or n_pairs, n_filters] -> [n_atoms, n_filters]."""
        if pair is not None:
            w = w.index_select(0, pair)  # [n_edges, n_filters]
        y = self.in2f(x)  # [n_atoms, n_filters]
        # index_select, not [] indexing: its backward is index_add, several times faster on CPU
        messages = y.index_select(0, edge_index[1]) * w  # [n_edges, n_filters]
        return scatter_sum(messages, edge_index[0], x.shape[0])


class Interaction(torch.nn.Module):
    """SchNet interaction block (Fig. 2): cfconv -> Dense + ssp -> Dense, residual."""

    def __init__(self, n_features: int, n_filters: int, n_rbf: int) -> None:
        super().__init__()
        self.conv = CFConv(n_features, n_filters, n_rbf)
        self.f2out = torch.nn.Sequential(
            torch.nn.Linear(n_filters, n_features), ShiftedSoftplus(), torch.nn.Linear(n_features, n_features)
        )

    def forward(
        self,
        x: torch.Tensor,
        rbf: torch.Tensor,
        fcut: torch.Tensor,
        edge_index: torch.Tensor,
        pair: torch.Tensor | None = None,
    ) -> torch.Tensor:
        return x + self.f2out(self.conv(x, rbf, fcut, edge_index, pair))

    def from_filter(
        self, x: torch.Tensor, w: torch.Tensor, edge_index: torch.Tensor, pair: torch.Tensor | None = None
    ) -> torch.Tensor:
        """The block with precomputed filters w [n_edges or n_pairs, n_filters]."""
        return x + self.f2out(self.conv.convolve(x, w, edge_index, pair))


@register("schnet")
class SchNet(EnergyModel):
    """SchNet energy model returning per-atom energies [n_atoms].

    Args:
        species: elements (symbols or atomic numbers) the model handles.
        cutoff: cutoff radius r_c in Å (or the data's length unit); default 5.0.
        n_features: atom-wise feature width F; paper: 64.
        n_filters: filter width; paper: 64 (= F).
        n_interactions: interaction blocks T; paper: 3 for MD17-sized molecules.
        n_rbf: Gaussians on [0, r_c]; default 50 (0.1 Å spacing at 5 Å, as in the paper).
        rbf_gamma: Gaussian width parameter in 1/length^2; paper: 10 Å^-2.
    """

    def __init__(
        self,
        species: Sequence[int | str],
        cutoff: float = 5.0,
        n_features: int = 64,
        n_filters: int = 64,
        n_interactions: int = 3,
        n_rbf: int = 50,
        rbf_gamma: float = 10.0,
    ) -> None:
        super().__init__(species, cutoff)
        self.embedding = torch.nn.Embedding(len(self.species), n_features)
        self.rbf = GaussianRBF(n_rbf, cutoff, gamma=rbf_gamma)
        self.fcut = CosineCutoff(cutoff)
        self.interactions = torch.nn.ModuleList(
            Interaction(n_features, n_filters, n_rbf) for _ in range(n_interactions)
        )
        self.readout = mlp([n_features, n_features // 2, 1], act="ssp")
        self.filter_table: HermiteTable | None = None
        self._table_blocks: list[torch.Tensor] = []  # per interaction, for the fused path
        self._table_inputs: tuple[torch.Tensor, ...] = ()
        self._table_versions: tuple[int, ...] = ()

    @property
    def interaction_range(self) -> float:
        """T x cutoff: each interaction reaches one cutoff further."""
        return len(self.interactions) * self.cutoff

    def prepare_inference(self) -> None:
        """Tabulate the filters W_t(r) of every interaction (cubic Hermite, :mod:`physnet.nn.tabulate`).

        For float32 weights only: the table's measured error (relative to max |W|) is below
        1e-7, under float32 round-off, so forces and energies equal the network's to float32
        precision while a call skips the filter networks (2 dense layers per pair and
        interaction). Float64 models keep the exact networks. The table is dropped when the
        model is put in training mode or any filter weight changes in place.
        """
        self.filter_table = None
        param = next(self.parameters())
        if param.dtype != torch.float32:
            return
        nets = copy.deepcopy(torch.nn.ModuleList([self.rbf, self.fcut, *(b.conv for b in self.interactions)]))
        nets = nets.to(device="cpu", dtype=torch.float64)
        rbf, fcut, convs = nets[0], nets[1], list(nets[2:])

        def filters(r: torch.Tensor) -> torch.Tensor:  # [n] -> [n, T * n_filters]
            e, f = rbf(r), fcut(r)
            return torch.cat([conv.filter(e, f) for conv in convs], dim=-1)

        self.filter_table = HermiteTable(filters, self.cutoff, dtype=param.dtype, tol=1e-7).to(param.device)
        tensors = [*self.rbf.buffers(), *self.rbf.parameters()]
        for block in self.interactions:
            tensors.extend(block.conv.filter_net.parameters())
        self._table_inputs = tuple(tensors)  # everything the filters depend on
        n_blocks = len(self.interactions)
        self._table_blocks = [self.filter_table.block(t, n_blocks) for t in range(n_blocks)]
        self._table_versions = tuple(t._version for t in tensors)

    def train(self, mode: bool = True) -> SchNet:
        if mode:
            self.filter_table, self._table_inputs, self._table_blocks = None, (), []
        return super().train(mode)

    def _table(self) -> HermiteTable | None:
        """The filter table if it is current, else None (and it is dropped)."""
        table = self.filter_table
        if table is not None and tuple(t._version for t in self._table_inputs) != self._table_versions:
            self.filter_table = table = None  # a filter weight changed in place since tabulation
            self._table_blocks = []
        return table

    def forward(self, graph: dict[str, torch.Tensor]) -> torch.Tensor:
        """graph -> per-atom energies [n_atoms]."""
        edge_index = graph[K.EDGE_INDEX]
        vectors = edge_vectors(graph)  # [n_edges, 3]
        pairs = None
        exporting = is_exporting()  # static shapes: no pairing sort, no fused chunks
        if not exporting and edge_index.shape[1] >= PAIR_MIN_EDGES:
            pairs = edge_pairs(edge_index, graph.get(K.EDGE_SHIFT), graph[K.Z].shape[0])
        pair = None
        if pairs is not None:  # distance-only features once per pair, gathered to both edges
            rep, pair = pairs
            vectors = vectors.index_select(0, rep)  # [n_pairs, 3]
        r = torch.linalg.vector_norm(vectors, dim=-1)  # [n_edges or n_pairs]
        x = self.embedding(self.species(graph[K.Z]))  # [n_atoms, F]
        table = self._table()
        if table is not None and not exporting and edge_index.shape[1] >= FUSED_MIN_EDGES:  # large inference
            n_blocks = len(self.interactions)
            for t, block in enumerate(self.interactions):
                cached = self._table_blocks[t] if self._table_blocks else None
                coefficients = (
                    cached if cached is not None and cached.device == r.device else table.block(t, n_blocks)
                )
                y = block.conv.in2f(x)
                v = tabulated_convolution(y, r, coefficients, table.inv_dx, edge_index, pair)
                x = x + block.f2out(v)
            return self.readout(x).squeeze(-1)
        if table is not None and exporting:  # traced: filter lookups the compiler fuses, per block
            n_blocks = len(self.interactions)
            for t, block in enumerate(self.interactions):
                w = hermite_polynomial(r, self._table_blocks[t], table.inv_dx)  # [n_edges, n_filters]
                x = block.from_filter(x, w, edge_index)
            return self.readout(x).squeeze(-1)
        if table is not None:  # inference: every interaction's filters from one table lookup
            filters = table(r).chunk(len(self.interactions), dim=-1)  # T x [n, n_filters]
            for interaction, w in zip(self.interactions, filters, strict=True):
                x = interaction.from_filter(x, w, edge_index, pair)
            return self.readout(x).squeeze(-1)
        rbf = self.rbf(r)  # [n_edges or n_pairs, n_rbf]
        fcut = self.fcut(r)
        for interaction in self.interactions:
            x = interaction(x, rbf, fcut, edge_index, pair)
        return self.readout(x).squeeze(-1)  # [n_atoms]
