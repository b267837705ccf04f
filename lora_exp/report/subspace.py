"""What LoRA learns (Hu et al. 2021, Sec. 7): subspace similarity and the amplification factor.

Subspace similarity (Eq. 4, Appendix G). For LoRA factors A₁ ∈ R^{r₁×d} and A₂ ∈ R^{r₂×d} of the
same weight, let U₁, U₂ (d × r) hold their right-singular vectors (rows of Vᵀ in A = U Σ Vᵀ),
ordered by singular value, and Uⁱ the first i columns. Then

    φ(A₁, A₂, i, j) = ‖U₁ⁱᵀ U₂ʲ‖²_F / min(i, j)  ∈ [0, 1]
                    = (Σ_k σ_k²) / min(i, j),   σ_k the singular values of U₁ⁱᵀ U₂ʲ,

1 when one subspace contains the other, 0 when they are orthogonal. It is symmetric in the sense
φ(A₁, A₂, i, j) = φ(A₂, A₁, j, i).

Random control (Fig. 4, right). If U₂ʲ spans a uniformly random j-dimensional subspace of R^d and
U₁ⁱ is fixed, E‖U₁ⁱᵀ U₂ʲ‖²_F = Σ over the j columns u of E‖U₁ⁱᵀ u‖² = j · i / d, so

    E φ = i · j / (d · min(i, j)) = max(i, j) / d.

(Not min(i, j)/d: for i = 1 and j = d the subspace U₂ʲ is all of R^d and φ = 1 = max/d.) A Gaussian
matrix of A₂'s shape has such a uniformly random row space.

Amplification factor (Sec. 7.3, Table 7, Appendix H.4). With ΔW = U Σ Vᵀ (d_out × d_in) and Uᵣ, Vᵣ
its top-r left and right singular vectors (r = the LoRA rank), project W onto ΔW's subspace:

    ‖Uᵣᵀ W Vᵣ‖_F        (the paper writes ‖Uᵀ W Vᵀ‖_F with V as rows)
    amplification = ‖ΔW‖_F / ‖Uᵣᵀ W Vᵣ‖_F

Table 7 puts beside it the same projection onto W's own top-r directions (= the norm of W's top r
singular values) and onto random orthonormal directions. The paper finds ≈ 21.5 for GPT-3 ΔW_q at
r = 4 (6.91 / 0.32): ΔW amplifies directions that W does not emphasise.
"""

from __future__ import annotations

import numpy as np

Array = np.ndarray


def right_singular_basis(a: Array) -> Array:
    """Orthonormal right-singular vectors of A (r × d) as columns, by descending singular value.

    Returns:
        U of shape (d, min(r, d)): the columns span A's row space.
    """
    a = np.asarray(a, dtype=np.float64)
    _, _, vh = np.linalg.svd(a, full_matrices=False)  # vh: (min(r, d), d)
    return vh.T


def phi(a1: Array, a2: Array, i: int, j: int) -> float:
    """Normalized subspace similarity φ(A₁, A₂, i, j) of Eq. 4 (1 ≤ i ≤ r₁, 1 ≤ j ≤ r₂)."""
    u1, u2 = right_singular_basis(a1), right_singular_basis(a2)
    if not (1 <= i <= u1.shape[1] and 1 <= j <= u2.shape[1]):
        raise ValueError(f"i={i}, j={j} outside 1..{u1.shape[1]} × 1..{u2.shape[1]}")
    overlap = u1[:, :i].T @ u2[:, :j]  # (i, j)
    return float(np.sum(overlap**2) / min(i, j))


def phi_grid(a1: Array, a2: Array) -> Array:
    """φ for every i ≤ r₁ and j ≤ r₂: grid[i - 1, j - 1] (one SVD per matrix).

    Cumulative sums over the squared overlaps give ‖U₁ⁱᵀ U₂ʲ‖²_F for all (i, j) at once.
    """
    u1, u2 = right_singular_basis(a1), right_singular_basis(a2)
    if u1.shape[0] != u2.shape[0]:
        raise ValueError(f"A₁ and A₂ act on different input sizes: {u1.shape[0]} vs {u2.shape[0]}")
    squared = (u1.T @ u2) ** 2  # (r₁, r₂)
    cumulative = squared.cumsum(axis=0).cumsum(axis=1)  # [i-1, j-1] = ‖U₁ⁱᵀ U₂ʲ‖²_F
    i = np.arange(1, u1.shape[1] + 1)[:, None]
    j = np.arange(1, u2.shape[1] + 1)[None, :]
    return cumulative / np.minimum(i, j)


def gaussian_like(a: Array, seed: int = 0) -> Array:
    """The random control: a standard Gaussian matrix of A's shape (fixed seed)."""
    return np.random.default_rng(seed).standard_normal(np.shape(a))


def expected_random_phi(i: int, j: int, d: int) -> float:
    """E φ between a fixed i-dim and a uniformly random j-dim subspace of R^d: max(i, j) / d."""
    return max(i, j) / d


def top_directions(m: Array, r: int) -> tuple[Array, Array]:
    """Top-r left (d_out × r) and right (d_in × r) singular vectors of M."""
    u, _, vh = np.linalg.svd(np.asarray(m, dtype=np.float64), full_matrices=False)
    return u[:, :r], vh[:r].T


def random_directions(d_out: int, d_in: int, r: int, seed: int = 0) -> tuple[Array, Array]:
    """r random orthonormal directions on each side (QR of Gaussian matrices)."""
    rng = np.random.default_rng(seed)
    u, _ = np.linalg.qr(rng.standard_normal((d_out, r)))
    v, _ = np.linalg.qr(rng.standard_normal((d_in, r)))
    return u, v


def projection_norm(w: Array, u: Array, v: Array) -> float:
    """‖Uᵀ W V‖_F: how much of W lies in the span of (U, V); W is d_out × d_in."""
    return float(np.linalg.norm(u.T @ np.asarray(w, dtype=np.float64) @ v))


def amplification(delta_w: Array, w: Array, r: int, seed: int = 0) -> dict[str, float]:
    """Table 7 for one weight: the projections of W and the amplification factor of ΔW.

    Args:
        delta_w: ΔW = (α/r) B A, shape (d_out, d_in) in nn.Linear orientation.
        w: the pretrained W, same shape.
        r: how many top directions to project onto (the LoRA rank in the paper).
        seed: seed of the random directions.

    Returns:
        norm_w, norm_delta (Frobenius norms), proj_delta = ‖Uᵀ W V‖ with U, V from ΔW,
        proj_w (from W itself), proj_random, and amplification = norm_delta / proj_delta.
    """
    delta_w, w = np.asarray(delta_w, dtype=np.float64), np.asarray(w, dtype=np.float64)
    if delta_w.shape != w.shape:
        raise ValueError(f"ΔW {delta_w.shape} and W {w.shape} differ in shape")
    proj_delta = projection_norm(w, *top_directions(delta_w, r))
    norm_delta = float(np.linalg.norm(delta_w))
    return {
        "r": r,
        "norm_w": float(np.linalg.norm(w)),
        "norm_delta": norm_delta,
        "proj_delta": proj_delta,
        "proj_w": projection_norm(w, *top_directions(w, r)),
        "proj_random": projection_norm(w, *random_directions(*w.shape, r, seed)),
        "amplification": norm_delta / proj_delta if proj_delta > 0 else float("inf"),
    }
