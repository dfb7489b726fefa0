"""SE(3)-Transformer on e3nn: equivariant graph attention, as a potential and as a dynamics model.

Fuchs, Worrall, Fischer & Welling, "SE(3)-Transformers: 3D Roto-Translation Equivariant
Attention Networks", NeurIPS 2020 (arXiv:2006.10503; equation numbers of arXiv v3). One
attention layer, Sec. 3.2, eqs. (10)-(12), with self-interaction (Sec. 3.3) and a gated
nonlinearity::

    f_i'     = W_S f_i + sum_{j in N(i)} alpha_ij v_ij                       (10)
    alpha_ij = exp(q_i . k_ij) / sum_{j' in N(i)} exp(q_i . k_ij')           (11)
    q_i      = W_Q f_i,   k_ij = W_K(x_j - x_i) f_j,   v_ij = W_V(x_j - x_i) f_j   (12)

where W(r) = sum_J phi_J(||r||) W_J(r/||r||) is an equivariant kernel: a tensor product of
the neighbour feature with spherical harmonics Y_J of the edge direction, weighted by a
radial MLP phi of the distance. Here e3nn does all the representation theory:
:func:`e3nn.o3.spherical_harmonics` for Y_J, :class:`e3nn.o3.TensorProduct` with per-edge
weights from :class:`e3nn.nn.FullyConnectedNet` for the kernels, :class:`e3nn.o3.Linear` for
W_Q, W_S and the mixing of channels, and :class:`e3nn.nn.Gate` for the nonlinearity.

Deviations and additions, all documented in the arguments:

- **Factorised kernels.** The paper learns a radial function for every pair of input and
  output channels (a "fully connected" tensor product with per-edge weights). That costs
  O(C_in C_out) radial outputs per edge; here the kernel is a channel-wise ("uvu") tensor
  product with one radial weight per input channel and path, followed by an equivariant
  channel-mixing linear map (as in NequIP and MACE). Keys and values share the tensor product
  and are split by one linear map (different weights, one edge-wise product).
- **Multi-head attention** (as the paper's models, which use several heads): every irrep block of q,
  k and v is split into ``n_heads`` equal groups of channels; head h's logit is the
  O(3)-invariant inner product sum_{l,u in h,m} q_{u m}^l k_{u m}^l / sqrt(d_head).
- **Smooth cutoff.** A polynomial envelope w_ij = (1 - r^2/r_c^2)^p enters the softmax as a
  weight, alpha_ij = w_ij exp(z_ij) / sum_j' w_ij' exp(z_ij') (segment softmax of
  :func:`physnet.nn.segment_softmax`), and multiplies the values again, f_i' = W_S f_i +
  sum_j alpha_ij w_ij v_ij. The first factor makes the softmax continuous when a neighbour
  crosses r_c; the second makes a *lone* neighbour's message vanish there (its alpha is 1).
  So energy and forces are continuous at r_c, which eq. (11) alone is not.
- **Safe directions.** Y_J is evaluated on r / sqrt(r^2 + eps^2) with e3nn's unnormalised
  (homogeneous polynomial) harmonics, i.e. (r^2/(r^2+eps^2))^(J/2) Y_J(r_hat): exactly
  equivariant, and finite with finite gradients when two atoms coincide (normalize=True
  has an infinite gradient at r = 0). eps = 1e-6 length units.
- **Nonlinearity and normalisation.** The paper's NormSE3 (a nonlinearity of layer-normed
  norms) is replaced by e3nn's :class:`~e3nn.nn.Gate` (SiLU on scalars, sigmoid gates on
  l > 0), which is smooth at zero norm. An optional equivariant layer norm
  (:class:`EquivariantLayerNorm`, as Equiformer's) normalises each layer's input (pre-norm).
- **Parity.** ``parity=True`` (default) uses O(3) irreps of natural parity (0e, 1o, 2e, ...)
  and polar spherical harmonics: the model is E(3)-equivariant (energy invariant under
  reflections); features have natural parity only, so pseudo-vector paths such as the cross
  product 1o x 1o -> 1e are not kept. ``parity=False`` is the paper's SE(3) model: every irrep
  is labelled even, so all SO(3) paths (e.g. the cross product 1 x 1 -> 1) are allowed; it is
  rotation- but not reflection-equivariant (it can tell mirror images apart).
- **Residuals.** Layers whose input and output irreps agree add their output to their input.
- **Options from later work** (off by default, so the defaults are the paper's model):
  ``attention=False`` replaces eq. (11) by NequIP's and MACE's plain neighbour sum over the mean
  neighbour count; ``correlation`` > 1 applies MACE's product basis (:class:`ProductBasis`,
  Batatia et al. 2022, eqs. (10)-(11)) to each layer's aggregated messages; ``radial_basis="bessel"``
  feeds the radial MLPs DimeNet's Bessel functions with trainable frequencies
  (:class:`physnet.nn.BesselRBF`) instead of Gaussians.

:class:`SE3Transformer` (registered ``"se3_transformer"``) is the potential: species embedding
-> attention layers on the cutoff graph -> MLP of the l = 0 channels -> per-atom energy
[n_atoms]; forces and stress follow by autograd in :class:`physnet.Potential`.
:meth:`SE3Transformer.node_features` exposes the equivariant features (all l), and
:meth:`SE3Transformer.vectors` an l = 1 output head per atom (an equivariant linear map of the
features; energy/force training does not train it, so it is for fine-tuning on vector targets).

:class:`SE3TransformerDynamics` is the N-body model of the EGNN paper's Sec. 5.1 benchmark
(where the SE(3)-Transformer is a baseline): positions, velocities and charges -> positions
ahead, on the fully connected graph of each system. Node inputs are [q_i, ||v_i||] (0e) and v_i
(1o); the radial MLP sees Gaussians of ||x_j - x_i|| and q_i q_j; the output is x_i plus an
l = 1 head of the final features and of the input (so x + t v is representable from the start).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence

import torch
from e3nn import o3
from e3nn.nn import FullyConnectedNet, Gate

from physnet.data import keys as K
from physnet.data.neighbors import edge_vectors
from physnet.models.dynamics import DynamicsModel, register_dynamics
from physnet.models.egnn import fully_connected_pairs, polynomial_envelope
from physnet.models.registry import EnergyModel, register
from physnet.nn import BesselRBF, GaussianRBF, mlp, scatter_sum, segment_softmax

__all__ = [
    "EquivariantLayerNorm",
    "ProductBasis",
    "SE3AttentionLayer",
    "SE3TransformerBackbone",
    "SE3Transformer",
    "SE3TransformerDynamics",
    "hidden_irreps",
    "safe_spherical_harmonics",
]


def hidden_irreps(channels: Sequence[int], parity: bool = True) -> o3.Irreps:
    """Irreps with ``channels[l]`` copies of degree l = 0 .. len(channels) - 1.

    With ``parity`` the parity is natural, (-1)^l (0e, 1o, 2e: scalars, vectors, rank-2
    tensors); without it every irrep is labelled even, which makes e3nn allow every SO(3)
    coupling (an SE(3)-, not E(3)-, equivariant model).

    >>> str(hidden_irreps([32, 8, 4])), str(hidden_irreps([4, 2], parity=False))
    ('32x0e+8x1o+4x2e', '4x0e+2x1e')
    """
    return o3.Irreps([(m, (l, (-1) ** l if parity else 1)) for l, m in enumerate(channels) if m > 0])


def safe_spherical_harmonics(vec: torch.Tensor, l_max: int, eps: float = 1e-6) -> torch.Tensor:
    """Spherical harmonics Y_0 .. Y_lmax of edge directions, finite (with gradients) at r = 0.

    e3nn's component-normalised harmonics of u = r / sqrt(|r|^2 + eps^2) without
    renormalisation: homogeneous polynomials of degree l, so equal to
    (|r|^2 / (|r|^2 + eps^2))^(l/2) Y_l(r_hat), exactly equivariant; Y_l>0 -> 0 as r -> 0.

    Args:
        vec: [n_edges, 3] edge vectors (length unit).
        l_max: highest degree.
        eps: softening length (length unit).

    Returns:
        [n_edges, (l_max + 1)^2], blocks l = 0, 1, ... in e3nn's order (l = 1 is x, y, z).
    """
    unit = vec / torch.sqrt((vec * vec).sum(-1, keepdim=True) + eps * eps)  # [n_edges, 3]
    return o3.spherical_harmonics(list(range(l_max + 1)), unit, normalize=False, normalization="component")


_W3J = re.compile(r"_w3j_(\d+)_(\d+)_(\d+)")


def _head_index(irreps: o3.Irreps, n_heads: int) -> torch.Tensor:
    """Head of every component of an irreps tensor: block (mul, l) -> [n_heads, mul / n_heads, 2l+1]."""
    heads = []
    for mul, ir in irreps:
        if mul % n_heads:
            raise ValueError(f"multiplicity {mul} of {ir} in {irreps} is not divisible by n_heads={n_heads}")
        heads.append(torch.arange(n_heads).repeat_interleave(mul // n_heads * ir.dim))
    return torch.cat(heads) if heads else torch.zeros(0, dtype=torch.long)


def _refill_wigner_3j(module: torch.nn.Module) -> None:
    """Overwrite every e3nn Wigner-3j buffer under ``module`` with float64-exact values (in its dtype)."""
    with torch.no_grad():
        for name, buf in module.named_buffers():
            match = _W3J.fullmatch(name.rsplit(".", 1)[-1])
            if match is not None and buf.is_floating_point():
                exact = o3.wigner_3j(*(int(g) for g in match.groups()), dtype=torch.float64)
                buf.copy_(exact.to(device=buf.device))


class EquivariantLayerNorm(torch.nn.Module):
    """Equivariant layer norm of an irreps tensor (as Equiformer's ``EquivariantLayerNormV2``).

    Per node and per irrep type: scalars (0e) are centred and divided by their RMS over
    channels; an l > 0 block x [mul, 2l+1] is divided by sqrt(mean_u |x_u|^2 / (2l+1) + eps)
    (the RMS component over its channels), so directions are untouched. A learnable per-channel
    scale (and a bias on scalars) follows. Smooth everywhere for eps > 0.

    Args:
        irreps: irreps of the features.
        eps: added to the mean square (feature unit^2).
    """

    def __init__(self, irreps: o3.Irreps | str, eps: float = 1e-5) -> None:
        super().__init__()
        self.irreps = o3.Irreps(irreps)
        self.eps = float(eps)
        self.weight = torch.nn.Parameter(torch.ones(self.irreps.num_irreps))
        n_scalars = sum(mul for mul, ir in self.irreps if ir.l == 0 and ir.p == 1)
        self.bias = torch.nn.Parameter(torch.zeros(n_scalars))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """[n, irreps.dim] -> [n, irreps.dim]."""
        out, w0, b0 = [], 0, 0
        for (mul, ir), sl in zip(self.irreps, self.irreps.slices(), strict=True):
            block = x[:, sl].reshape(-1, mul, ir.dim)  # [n, mul, 2l+1]
            if ir.l == 0 and ir.p == 1:
                block = block - block.mean(dim=1, keepdim=True)
            ms = block.pow(2).mean(dim=(1, 2), keepdim=True)  # [n, 1, 1]
            block = block / torch.sqrt(ms + self.eps) * self.weight[w0 : w0 + mul, None]
            if ir.l == 0 and ir.p == 1:
                block = block + self.bias[b0 : b0 + mul, None]
                b0 += mul
            w0 += mul
            out.append(block.reshape(-1, mul * ir.dim))
        return torch.cat(out, dim=-1)


class ProductBasis(torch.nn.Module):
    """MACE's higher-body-order product basis on aggregated equivariant features.

    Batatia, Kovács, Simm, Ortner & Csányi, "MACE: Higher Order Equivariant Message Passing
    Neural Networks for Fast and Accurate Force Fields", NeurIPS 2022 (arXiv:2206.07697),
    eqs. (10)-(11): from the atomic basis A_i (the sum of two-body messages of atom i) the
    product basis B_i^(nu) couples nu copies of A_i channel by channel,
    B^(nu)_{i,k LM} = sum_eta w^(nu)_{z_i,k,eta} sum_{lm} C^{LM}_{eta,lm} prod_{xi=1..nu} A_{i,k l_xi m_xi},
    with element-dependent weights w (z_i the species of atom i), and the message is a linear map of
    all orders, m_i = sum_nu W^(nu) B^(nu)_i (eq. (11)). Built recursively, as MACE's own
    symmetric contraction: B^(1) = A and B^(nu) = sum_eta w^(nu)_{z,k,eta} (B^(nu-1) (x)_eta A)_k, a
    channel-wise ("uuu") :class:`e3nn.o3.TensorProduct` whose paths eta into the same irrep are summed,
    with per-atom weights gathered from an element table. The nu-fold product of A_i is a polynomial
    of degree nu in the neighbour messages: (nu + 1)-body terms in one layer.

    Args:
        irreps_in: irreps of the aggregated messages.
        irreps_out: irreps of the returned message m_i.
        channels: k, channels of every degree l = 0 .. l_max of A (one linear map from irreps_in).
        l_max: highest degree of A and of every B^(nu).
        correlation: highest order nu (>= 2; 1 would be the plain two-body message).
        n_species: number of elements (rows of the weight tables).
        parity: natural-parity (E(3)) or all-even (SE(3)) irreps, as the layer's.
    """

    def __init__(
        self,
        irreps_in: o3.Irreps | str,
        irreps_out: o3.Irreps | str,
        channels: int,
        l_max: int,
        correlation: int,
        n_species: int,
        parity: bool = True,
    ) -> None:
        super().__init__()
        if correlation < 2:
            raise ValueError(f"correlation must be >= 2 for a product basis, got {correlation}")
        self.irreps_a = hidden_irreps([channels] * (l_max + 1), parity)
        self.linear_in = o3.Linear(irreps_in, self.irreps_a)
        wanted = [ir for _, ir in self.irreps_a]
        instructions = [
            (i1, i2, wanted.index(ir_out), "uuu", True)
            for i1, (_, ir1) in enumerate(self.irreps_a)
            for i2, (_, ir2) in enumerate(self.irreps_a)
            for ir_out in ir1 * ir2
            if ir_out in wanted
        ]
        self.products = torch.nn.ModuleList()
        self.weights = torch.nn.ParameterList()
        for _ in range(correlation - 1):
            tp = o3.TensorProduct(
                self.irreps_a,
                self.irreps_a,
                self.irreps_a,
                instructions,
                shared_weights=False,
                internal_weights=False,
            )
            self.products.append(tp)
            self.weights.append(torch.nn.Parameter(torch.randn(n_species, tp.weight_numel)))
        self.linear_out = o3.Linear(o3.Irreps(self.irreps_a * correlation), irreps_out)

    def _apply(self, fn: Callable[[torch.Tensor], torch.Tensor], recurse: bool = True) -> ProductBasis:
        """Move/cast, then refill the 3j buffers exactly (see :meth:`SE3AttentionLayer._apply`)."""
        super()._apply(fn, recurse)
        _refill_wigner_3j(self)
        return self

    def forward(self, a: torch.Tensor, species: torch.Tensor) -> torch.Tensor:
        """Messages A [n_nodes, irreps_in.dim], species indices [n_nodes] -> [n_nodes, irreps_out.dim]."""
        a = self.linear_in(a)  # [n_nodes, irreps_a.dim], A_i
        basis, b = [a], a
        for tp, w in zip(self.products, self.weights, strict=True):
            b = tp(b, a, w[species])  # [n_nodes, irreps_a.dim], B^(nu)
            basis.append(b)
        return self.linear_out(torch.cat(basis, dim=-1))


class SE3AttentionLayer(torch.nn.Module):
    """One SE(3)-Transformer attention layer, eqs. (10)-(12) of Fuchs et al. (2020), on e3nn.

    Args:
        irreps_in: irreps of the input node features f.
        irreps_out: irreps of the output node features (after the gate); its l = 0 part must be
            even scalars (0e); its l > 0 parts are gated by extra scalars.
        l_max: highest degree J of the spherical harmonics of the edge direction.
        n_radial: width of the invariant edge input to the radial MLP.
        radial_hidden: hidden widths of the radial MLP (SiLU), e.g. (32,).
        n_heads: attention heads; every multiplicity of ``irreps_key`` and of the values must
            be divisible by it.
        irreps_key: irreps of queries and keys (default: ``irreps_out``).
        parity: natural-parity (E(3)) spherical harmonics; False labels them even (SE(3)).
        layer_norm: apply :class:`EquivariantLayerNorm` to the input first (pre-norm).
        eps: softening length of :func:`safe_spherical_harmonics` (length unit).
        attention: the paper's softmax attention, eqs. (10)-(11) (default). False: the plain
            envelope-weighted sum of values over neighbours divided by the mean neighbour count
            (NequIP, Batzner et al. 2022, eq. (3); MACE, eq. (8)), f_i' = W_S f_i +
            sum_j w_ij v_ij / avg_neighbors; no queries or keys.
        correlation: order nu of the :class:`ProductBasis` applied to the aggregated messages
            (MACE, Batatia et al. 2022, eqs. (10)-(11)); 1 (default) is the paper's two-body
            message.
        product_channels: channels per degree of the product basis (with ``correlation > 1``).
        n_species: elements, for the product basis's element-dependent weights.
    """

    def __init__(
        self,
        irreps_in: o3.Irreps | str,
        irreps_out: o3.Irreps | str,
        l_max: int,
        n_radial: int,
        radial_hidden: Sequence[int] = (32,),
        n_heads: int = 4,
        irreps_key: o3.Irreps | str | None = None,
        parity: bool = True,
        layer_norm: bool = False,
        eps: float = 1e-6,
        attention: bool = True,
        correlation: int = 1,
        product_channels: int = 8,
        n_species: int = 1,
    ) -> None:
        super().__init__()
        if correlation < 1:
            raise ValueError(f"correlation must be >= 1, got {correlation}")
        self.attention = bool(attention)
        self.irreps_in = o3.Irreps(irreps_in)
        self.irreps_out = o3.Irreps(irreps_out)
        self.irreps_key = o3.Irreps(irreps_key) if irreps_key is not None else self.irreps_out
        self.irreps_sh = o3.Irreps([(1, (l, (-1) ** l if parity else 1)) for l in range(l_max + 1)])
        self.l_max = int(l_max)
        self.eps = float(eps)
        self.n_heads = int(n_heads)

        # Gate: value irreps = scalars + one gate scalar per l > 0 irrep + gated irreps.
        scalars = o3.Irreps([(m, ir) for m, ir in self.irreps_out if ir.l == 0])
        gated = o3.Irreps([(m, ir) for m, ir in self.irreps_out if ir.l > 0])
        if any(ir.p != 1 for _, ir in scalars):
            raise ValueError(f"output scalars must be even (0e), got {scalars}")
        gates = o3.Irreps([(gated.num_irreps, (0, 1))]) if gated.num_irreps else o3.Irreps([])
        self.gate = Gate(
            scalars, [torch.nn.functional.silu] * len(scalars), gates, [torch.sigmoid] * len(gates), gated
        )
        if self.gate.irreps_out.simplify() != self.irreps_out.simplify():
            raise ValueError(f"irreps_out {self.irreps_out} must be sorted (0e first, then by degree)")
        self.irreps_value = self.gate.irreps_in

        # Queries, eq. (12): a linear map of the centre's features.
        self.norm = EquivariantLayerNorm(self.irreps_in) if layer_norm else None
        self.query = o3.Linear(self.irreps_in, self.irreps_key) if attention else None

        # Keys and values, eq. (12): channel-wise tensor product f_j (x) Y(r_ij) with radial
        # weights (one per input channel and path), keeping only outputs that k or v use.
        wanted = {ir for _, ir in self.irreps_key + self.irreps_value}
        irreps_mid, instructions = [], []
        for i_in, (mul, ir_in) in enumerate(self.irreps_in):
            for i_sh, (_, ir_sh) in enumerate(self.irreps_sh):
                for ir_out in ir_in * ir_sh:
                    if ir_out in wanted:
                        instructions.append((i_in, i_sh, len(irreps_mid), "uvu", True))
                        irreps_mid.append((mul, ir_out))
        self.irreps_mid = o3.Irreps(irreps_mid)
        self.tp = o3.TensorProduct(
            self.irreps_in,
            self.irreps_sh,
            self.irreps_mid,
            instructions,
            shared_weights=False,
            internal_weights=False,
        )
        self.radial = FullyConnectedNet(
            [n_radial, *radial_hidden, self.tp.weight_numel], torch.nn.functional.silu
        )
        # The tensor product writes one block per path; regroup its columns by irrep (one gather)
        # so that the edge-wise linear map sees a few large blocks instead of many small ones
        # (each block is a slice, and slice backward zero-fills a whole [n_edges, dim] tensor).
        sorted_mid = self.irreps_mid.sort()
        slices = self.irreps_mid.slices()
        perm = [torch.arange(slices[k].start, slices[k].stop) for k in sorted_mid.inv]
        self.register_buffer("mid_order", torch.cat(perm), persistent=False)
        self.irreps_mid_grouped = sorted_mid.irreps.simplify()
        self.key_value = o3.Linear(
            self.irreps_mid_grouped, self.irreps_key + self.irreps_value if attention else self.irreps_value
        )
        self.product = (
            ProductBasis(
                self.irreps_value, self.irreps_value, product_channels, l_max, correlation, n_species, parity
            )
            if correlation > 1
            else None
        )
        # Self-interaction W_S, eq. (10) and Sec. 3.3.
        self.self_interaction = o3.Linear(self.irreps_in, self.irreps_value)

        self.register_buffer("key_head", _head_index(self.irreps_key, n_heads), persistent=False)
        self.register_buffer("value_head", _head_index(self.irreps_value, n_heads), persistent=False)
        self.logit_scale = 1.0 / math.sqrt(self.irreps_key.dim / n_heads)
        self.residual = self.irreps_in == self.irreps_out

    def _apply(self, fn: Callable[[torch.Tensor], torch.Tensor], recurse: bool = True) -> SE3AttentionLayer:
        """Move/cast as usual, then refill e3nn's Wigner-3j buffers from float64 values.

        e3nn stores the 3j symbols as buffers in the default dtype at construction, so a model
        built in float32 and cast with ``.double()`` would carry float32-rounded coefficients
        (equivariance errors ~1e-9 instead of ~1e-15). Recomputing them here keeps every dtype
        exact.
        """
        super()._apply(fn, recurse)
        _refill_wigner_3j(self)
        return self

    def forward(
        self,
        f: torch.Tensor,
        vec: torch.Tensor,
        edge_index: torch.Tensor,
        radial: torch.Tensor,
        edge_weight: torch.Tensor | None = None,
        species: torch.Tensor | None = None,
        avg_neighbors: float | torch.Tensor = 1.0,
    ) -> torch.Tensor:
        """Update node features.

        Args:
            f: [n_nodes, irreps_in.dim] node features.
            vec: [n_edges, 3] edge vectors r_ij = x_j - x_i (physnet's convention).
            edge_index: [2, n_edges], row 0 = centre i (attends), row 1 = neighbour j.
            radial: [n_edges, n_radial] invariant edge features (distance basis, ...).
            edge_weight: [n_edges] smooth cutoff envelope w_ij in [0, 1] (None: all 1).
            species: [n_nodes] species indices (needed with ``correlation > 1``).
            avg_neighbors: divisor of the neighbour sum without attention (scalar).

        Returns:
            [n_nodes, irreps_out.dim] new node features.
        """
        i, j = edge_index[0], edge_index[1]
        n_nodes = f.shape[0]
        x = self.norm(f) if self.norm is not None else f
        sh = safe_spherical_harmonics(vec, self.l_max, self.eps)  # [n_edges, (l_max+1)^2]
        mid = self.tp(x[j], sh, self.radial(radial))[:, self.mid_order]  # [n_edges, irreps_mid.dim]
        if self.query is not None:
            kv = self.key_value(mid)  # [n_edges, dk + dv]
            k, v = kv[:, : self.irreps_key.dim], kv[:, self.irreps_key.dim :]
            q = self.query(x)  # [n_nodes, dk]
            qk = q[i] * k  # [n_edges, dk]
            logits = scatter_sum(qk.t(), self.key_head, self.n_heads).t() * self.logit_scale  # [n_edges, H]
            alpha = segment_softmax(logits, i, n_nodes, edge_weight)  # [n_edges, H], eq. (11)
            if edge_weight is not None:
                alpha = alpha * edge_weight.unsqueeze(-1)
            message = alpha[:, self.value_head] * v  # [n_edges, dv]
            agg = scatter_sum(message, i, n_nodes)  # [n_nodes, dv], eq. (10)
        else:
            v = self.key_value(mid)  # [n_edges, dv]
            message = v * edge_weight.unsqueeze(-1) if edge_weight is not None else v
            agg = scatter_sum(message, i, n_nodes) / avg_neighbors  # [n_nodes, dv]
        if self.product is not None:
            if species is None:
                raise ValueError("a layer with correlation > 1 needs the species indices: pass species=")
            agg = self.product(agg, species)  # [n_nodes, dv], MACE eqs. (10)-(11)
        out = self.self_interaction(x) + agg  # [n_nodes, dv]
        out = self.gate(out)  # [n_nodes, irreps_out.dim]
        return f + out if self.residual else out


class SE3TransformerBackbone(torch.nn.Module):
    """A stack of :class:`SE3AttentionLayer` from input irreps to hidden irreps.

    Args:
        irreps_in: irreps of the input node features.
        irreps_hidden: irreps of every layer's output (sorted: 0e first, then by degree).
        n_layers: number of attention layers (>= 1).
        n_radial: width of the invariant edge input to the radial MLPs.
        radial_hidden: hidden widths of the radial MLPs.
        n_heads: attention heads.
        parity: E(3) (True) or SE(3) (False) couplings.
        layer_norm: equivariant pre-norm in every layer after the first.
        attention, correlation, product_channels, n_species: as :class:`SE3AttentionLayer`'s.
    """

    def __init__(
        self,
        irreps_in: o3.Irreps | str,
        irreps_hidden: o3.Irreps | str,
        n_layers: int,
        n_radial: int,
        radial_hidden: Sequence[int] = (32,),
        n_heads: int = 4,
        parity: bool = True,
        layer_norm: bool = False,
        attention: bool = True,
        correlation: int = 1,
        product_channels: int = 8,
        n_species: int = 1,
    ) -> None:
        super().__init__()
        if n_layers < 1:
            raise ValueError(f"n_layers must be >= 1, got {n_layers}")
        self.irreps_in = o3.Irreps(irreps_in)
        self.irreps_hidden = o3.Irreps(irreps_hidden)
        l_max = max(ir.l for _, ir in self.irreps_hidden)
        self.layers = torch.nn.ModuleList(
            SE3AttentionLayer(
                self.irreps_in if n == 0 else self.irreps_hidden,
                self.irreps_hidden,
                l_max=l_max,
                n_radial=n_radial,
                radial_hidden=radial_hidden,
                n_heads=n_heads,
                parity=parity,
                layer_norm=layer_norm and n > 0,
                attention=attention,
                correlation=correlation,
                product_channels=product_channels,
                n_species=n_species,
            )
            for n in range(n_layers)
        )

    def forward(
        self,
        f: torch.Tensor,
        vec: torch.Tensor,
        edge_index: torch.Tensor,
        radial: torch.Tensor,
        edge_weight: torch.Tensor | None = None,
        species: torch.Tensor | None = None,
        avg_neighbors: float | torch.Tensor = 1.0,
    ) -> torch.Tensor:
        """[n_nodes, irreps_in.dim] -> [n_nodes, irreps_hidden.dim]; arguments as the layer's."""
        for layer in self.layers:
            f = layer(f, vec, edge_index, radial, edge_weight, species, avg_neighbors)
        return f


@register("se3_transformer")
class SE3Transformer(EnergyModel):
    """SE(3)-Transformer potential returning per-atom energies [n_atoms] (see the module docstring).

    Args:
        species: elements (symbols or atomic numbers) the model handles.
        cutoff: cutoff radius r_c in Å (or the data's length unit); default 5.0.
        channels: multiplicities of degrees l = 0, 1, ..., l_max of the hidden features; the
            default (32, 8, 4) is 32x0e + 8x1o + 4x2e (l_max = 2). Each must be divisible by
            ``n_heads``.
        n_layers: attention layers; the paper uses 4 for QM9.
        n_heads: attention heads (paper: QM9 uses 8 heads).
        n_rbf: Gaussians of the distance on [0, r_c] fed to the radial MLPs.
        radial_hidden: hidden widths of the radial MLPs (SiLU).
        parity: E(3) (default; energy invariant under reflections) or SE(3) couplings.
        layer_norm: equivariant pre-norm in the layers after the first.
        envelope_exponent: p of the cutoff envelope (1 - r^2/r_c^2)^p.
        readout_hidden: hidden width of the MLP from the l = 0 features to the energy.
        attention: softmax attention over neighbours (the paper's, default) or a plain sum
            divided by the mean neighbour count of the training set (NequIP/MACE; set by
            :meth:`fit_statistics`, 1 before it).
        correlation: body order nu of MACE's product basis in every layer (1: none, the paper's).
        product_channels: channels per degree of the product basis.
        radial_basis: "gaussian" (default; Gaussians on [0, r_c]) or "bessel" (DimeNet's
            sin(w_n r) / r with trainable frequencies, Gasteiger et al. 2020, eq. (7)).
    """

    def __init__(
        self,
        species: Sequence[int | str],
        cutoff: float = 5.0,
        channels: Sequence[int] = (32, 8, 4),
        n_layers: int = 3,
        n_heads: int = 4,
        n_rbf: int = 16,
        radial_hidden: Sequence[int] = (32,),
        parity: bool = True,
        layer_norm: bool = True,
        envelope_exponent: int = 3,
        readout_hidden: int = 32,
        attention: bool = True,
        correlation: int = 1,
        product_channels: int = 8,
        radial_basis: str = "gaussian",
    ) -> None:
        super().__init__(species, cutoff)
        self.irreps_hidden = hidden_irreps(channels, parity)
        n_embed = int(channels[0])
        self.embedding = torch.nn.Embedding(len(self.species), n_embed)
        if radial_basis == "gaussian":
            self.rbf: torch.nn.Module = GaussianRBF(n_rbf, cutoff)
        elif radial_basis == "bessel":
            self.rbf = BesselRBF(n_rbf, cutoff)
        else:
            raise ValueError(f"radial_basis must be 'gaussian' or 'bessel', got {radial_basis!r}")
        self.backbone = SE3TransformerBackbone(
            o3.Irreps(f"{n_embed}x0e"),
            self.irreps_hidden,
            n_layers=n_layers,
            n_radial=n_rbf,
            radial_hidden=tuple(radial_hidden),
            n_heads=n_heads,
            parity=parity,
            layer_norm=layer_norm,
            attention=attention,
            correlation=correlation,
            product_channels=product_channels,
            n_species=len(self.species),
        )
        self.register_buffer("avg_neighbors", torch.ones(()))
        self.readout = mlp([n_embed, readout_hidden, 1], act="silu")
        self.vector_head = o3.Linear(self.irreps_hidden, o3.Irreps("1x1o" if parity else "1x1e"))
        self.envelope_exponent = int(envelope_exponent)
        self.eps = 1e-6

    @property
    def interaction_range(self) -> float:
        """n_layers x cutoff: each attention layer reaches one cutoff further."""
        return len(self.backbone.layers) * self.cutoff

    def node_features(self, graph: dict[str, torch.Tensor]) -> torch.Tensor:
        """graph -> equivariant node features [n_atoms, irreps_hidden.dim] (e3nn layout)."""
        edge_index = graph[K.EDGE_INDEX]
        vec = edge_vectors(graph)  # [n_edges, 3], r_ij = x_j - x_i
        d2 = (vec * vec).sum(-1)  # [n_edges]
        weight = polynomial_envelope(d2, self.cutoff, self.envelope_exponent)  # [n_edges]
        radial = self.rbf(torch.sqrt(d2 + self.eps * self.eps))  # [n_edges, n_rbf], safe norm
        species = self.species(graph[K.Z])  # [n_atoms]
        f = self.embedding(species).to(vec.dtype)  # [n_atoms, C0]
        return self.backbone(f, vec, edge_index, radial, weight, species, self.avg_neighbors)

    def fit_statistics(self, graphs: Sequence[dict[str, torch.Tensor]]) -> None:
        """Set ``avg_neighbors`` (the divisor of the neighbour sum without attention) from training graphs:
        edges per atom over all of them. Unused with attention."""
        n_edges = sum(int(g[K.EDGE_INDEX].shape[1]) for g in graphs)
        n_atoms = sum(int(g[K.Z].shape[0]) for g in graphs)
        if n_atoms and n_edges:
            self.avg_neighbors.fill_(n_edges / n_atoms)

    def vectors(self, graph: dict[str, torch.Tensor]) -> torch.Tensor:
        """l = 1 output head: one vector per atom [n_atoms, 3] (x, y, z), rotating with the input."""
        return self.vector_head(self.node_features(graph))

    def forward(self, graph: dict[str, torch.Tensor]) -> torch.Tensor:
        """graph -> per-atom energies [n_atoms]."""
        f = self.node_features(graph)
        scalars = f[:, : self.irreps_hidden[0].mul]  # [n_atoms, C0], the 0e block comes first
        return self.readout(scalars).squeeze(-1)


@register_dynamics("se3_transformer")
class SE3TransformerDynamics(DynamicsModel):
    """SE(3)-Transformer for N-body dynamics (EGNN paper, Sec. 5.1): predicts positions ahead.

    Fully connected graph of each system (no cutoff, no envelope); node inputs
    [q_i, ||v_i||] (2x0e) and v_i (1x1o); radial MLP input [Gaussians of ||x_j - x_i|| on
    [0, rbf_max], q_i q_j]; output x_i + W [h_i, v_i] with W an equivariant linear map to one
    l = 1 vector. E(3)-equivariant with ``parity`` (SE(3) without): rotating (reflecting) and
    translating positions and rotating (reflecting) velocities transforms the prediction alike.

    Args:
        channels: multiplicities of l = 0 .. l_max hidden features (default 32x0e+16x1o+8x2e).
        n_layers: attention layers.
        n_heads: attention heads.
        n_rbf: Gaussians of the distance.
        rbf_max: last Gaussian centre (length unit of the data).
        radial_hidden: hidden widths of the radial MLPs.
        parity: E(3) (True) or SE(3) (False, the paper's model).
        layer_norm: equivariant pre-norm in the layers after the first.

    >>> model = SE3TransformerDynamics(channels=(8, 4), n_layers=2, n_heads=2)
    >>> x, v, q = torch.randn(5, 3), torch.randn(5, 3), torch.tensor([1.0, -1, 1, -1, 1])
    >>> model(x, v, q, torch.zeros(5, dtype=torch.long)).shape
    torch.Size([5, 3])
    """

    def __init__(
        self,
        channels: Sequence[int] = (32, 16, 8),
        n_layers: int = 4,
        n_heads: int = 4,
        n_rbf: int = 16,
        rbf_max: float = 6.0,
        radial_hidden: Sequence[int] = (32,),
        parity: bool = True,
        layer_norm: bool = True,
    ) -> None:
        super().__init__()
        vector = o3.Irreps("1x1o" if parity else "1x1e")
        self.irreps_in = o3.Irreps("2x0e") + vector
        self.irreps_hidden = hidden_irreps(channels, parity)
        self.rbf = GaussianRBF(n_rbf, rbf_max)
        self.backbone = SE3TransformerBackbone(
            self.irreps_in,
            self.irreps_hidden,
            n_layers=n_layers,
            n_radial=n_rbf + 1,
            radial_hidden=tuple(radial_hidden),
            n_heads=n_heads,
            parity=parity,
            layer_norm=layer_norm,
        )
        self.head = o3.Linear(self.irreps_hidden + self.irreps_in, vector)
        self.eps = 1e-6

    def forward(
        self, pos: torch.Tensor, vel: torch.Tensor, charges: torch.Tensor, batch: torch.Tensor
    ) -> torch.Tensor:
        """Future positions [n_nodes, 3] (shapes: :class:`~physnet.models.dynamics.DynamicsModel`)."""
        edge_index, vec = fully_connected_pairs(pos, batch)  # vec = x_j - x_i [n_edges, 3]
        i, j = edge_index[0], edge_index[1]
        q = charges.to(pos.dtype)  # [n_nodes]
        r = torch.sqrt((vec * vec).sum(-1) + self.eps * self.eps)  # [n_edges], safe norm
        radial = torch.cat([self.rbf(r), (q[i] * q[j]).unsqueeze(-1)], dim=-1)  # [n_edges, n_rbf + 1]
        speed = torch.sqrt((vel * vel).sum(-1) + self.eps * self.eps)  # [n_nodes]
        f_in = torch.cat([q.unsqueeze(-1), speed.unsqueeze(-1), vel], dim=-1)  # [n_nodes, 5]
        h = self.backbone(f_in, vec, edge_index, radial)
        return pos + self.head(torch.cat([h, f_in], dim=-1))
