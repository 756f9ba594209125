"""Weight layouts the Triton kernels read, made in PyTorch (no Triton needed: the modules build them at swap time)."""
from __future__ import annotations

import torch


def block_c_of(c: int) -> int:
    """The channel tile: the block's width rounded up to a power of two (at least 16, a tensor-core dot's minimum)."""
    return max(16, 1 << (c - 1).bit_length())


def channel_parts(c: int) -> tuple[int, int]:
    """The ConvFirst kernel's channel tile as two parts (a, b), each a power of two of at least 16 (a tensor-core dot's
    minimum), a >= b, a + b >= c and as small as can be: the zoo's widths 3·2^k are exact (48 = 32 + 16, 96 = 64 + 32,
    192 = 128 + 64, 384 = 256 + 128), where one power-of-two tile pads them by a third (64, 128, 256, 512). The kernel
    keeps each part as its own tensor (Triton's tensors have power-of-two shapes) and adds the parts' dots."""
    best = None
    a = 16
    while a < 2 * max(c, 16):
        b = 16
        while b <= a:
            if a + b >= c and (best is None or a + b < sum(best)):
                best = (a, b)
            b *= 2
        a *= 2
    return best


def three_parts_fit(c: int) -> bool:
    """Whether a width c is 3·p with p a power of two of at least 16 (48, 96, 192, 384): the widths the ConvFirst kernel
    can hold as three equal parts."""
    p = c // 3
    return c % 3 == 0 and p >= 16 and p & (p - 1) == 0


def input_parts(c: int, one_part: bool | None = None, three: bool = False) -> tuple[int, ...]:
    """The ConvFirst kernel's input channel parts: `channel_parts`, or one part (c, 0) for a power-of-two width c ≥ 16
    when `one_part` is True, and by default (None) up to 32 channels: on the H200, c32>48/s2 took 0.0644 ms as one part
    of 32 against 0.0842 as 16 + 16 (run 18; 16 would be 16 + 16, half of it padding). Wider powers of two keep two
    parts (not measured as one). three=True: a width 3·p (p a power of two ≥ 16) as three equal parts (p, p, p), which
    the dense grouped conv multiplies at 3·p² MACs a pixel and tap where two parts take (2p)² + p² (192: 12,288
    against 20,480)."""
    if three:
        if not three_parts_fit(c):
            raise ValueError(f"three parts need a width of 3·p, p a power of two of at least 16 (48, 96, 192, 384), got {c}")
        return (c // 3,) * 3
    if one_part is None:
        one_part = c in (16, 32)
    return (c, 0) if one_part else channel_parts(c)


def default_three_parts(c_in: int, c_wide: int, stride: int) -> bool:
    """Whether the ConvFirst kernel takes its input as three parts by default: where it was measured faster on the H200
    (run 25, batch 64, the tap loop three deep; ms, three parts against two): c96 0.0476 against 0.0511, c192 0.0369
    against 0.0410, c192>384/s2 0.0362 against the pairs' 0.0380; not at c48 (0.0743 against 0.0749 three deep, 0.0728
    four deep), c48>96/s2 (0.0512 against the unrolled taps' 0.0330) or c96>192/s2 (0.0259 against 0.0238). c_wide is the
    wider of the block's input and output (the tile the defaults are keyed by); c384 was not measured and keeps two."""
    wide = block_c_of(c_wide)
    return three_parts_fit(c_in) and ((stride == 1 and wide in (128, 256)) or (stride == 2 and wide == 512))


def kernel_input_parts(c_in: int, c_wide: int, stride: int, config: dict | None) -> tuple[int, ...]:
    """The input parts a ConvFirst launch asked for with `config` takes (the launcher's rule, shared with the module that
    lays out the dense weight at swap time): one_part or three_parts as asked; otherwise, for the whole block (parts 3),
    the default (`input_parts`, and three parts where `default_three_parts` says so), and for an ablation two parts."""
    config = config or {}
    whole = config.get("parts", 3) == 3
    one = config.get("one_part", None if whole else False)
    three = config.get("three_parts", whole and not one and default_three_parts(c_in, c_wide, stride))
    return input_parts(c_in, one, three=bool(three))


def block_diagonal_pairs(w1: torch.Tensor, block_c: int) -> torch.Tensor:
    """The grouped conv's weight [C, GW, k, k] as [k², block_c/16, 16, 16]: for each tap and each chunk q of 16 channels,
    the 16x16 matrix from input channel q·16 + i to output channel q·16 + o, zero outside a group (GW must divide 16).
    The tensor-core grouped conv multiplies the input's chunks by these (twice the MACs for GW = 8, half of them zeros)."""
    c, gw, k, _ = w1.shape
    if 16 % gw:
        raise ValueError(f"block_diagonal_pairs needs a group width dividing 16, got {gw}")
    out = torch.zeros(k * k, block_c // 16, 16, 16, dtype=w1.dtype, device=w1.device)
    c_out = torch.arange(c, device=w1.device)
    for j in range(gw):
        c_in = (c_out // gw) * gw + j  # the j-th input of c_out's group, in the same chunk of 16
        out[:, c_out // 16, c_in % 16, c_out % 16] = w1[:, j].reshape(c, k * k).T
    return out


def block_diagonal_dense(w1: torch.Tensor, block_c: int) -> torch.Tensor:
    """The grouped conv's weight [C, GW, k, k] as one dense [k², block_c, block_c] matrix a tap (input channel i to
    output channel o, zero outside a group): the chunks of `block_diagonal_pairs` laid on the diagonal. The dense grouped
    conv multiplies the whole input tile by it, one 2-D dot a tap (block_c / GW times the grouped conv's MACs, 8x at
    48 channels padded to 64: kept for narrow blocks, where those MACs are few beside the expansion's)."""
    pairs = block_diagonal_pairs(w1, block_c)
    out = torch.zeros(pairs.shape[0], block_c, block_c, dtype=w1.dtype, device=w1.device)
    for q in range(block_c // 16):
        out[:, q * 16:(q + 1) * 16, q * 16:(q + 1) * 16] = pairs[:, q]
    return out


def block_diagonal_dense_parts(w1: torch.Tensor, parts: tuple[int, ...]) -> torch.Tensor:
    """The grouped conv's weight [C, GW, k, k] as one dense block-diagonal matrix a tap for each channel part (a, b[, c])
    of `input_parts`, flat: [k², a, a] (channels 0 .. a−1), then [k², b, b] (channels a .. a+b−1), and so on. A group
    never straddles the parts (GW divides 16, and each part is a multiple of 16), so nothing is lost between them; the
    dense grouped conv's MACs are a² + b² a pixel and tap instead of (a + b)²: 3.2x fewer at 48, 96, 192 and 384 channels."""
    full = block_diagonal_dense(w1, sum(parts))
    out, lo = [], 0
    for p in parts:
        out.append(full[:, lo:lo + p, lo:lo + p].reshape(-1))
        lo += p
    return torch.cat(out)


def halo_tiles(h: int, w: int, k: int, halo_p: int) -> tuple[int, int, int]:
    """The staged MBConv kernel's spatial tile for an h×w map and a k×k depthwise conv, given at most `halo_p` pixels
    (a power of two) of expanded activations a tile: (tile height, tile width, pixels a tile computes, a power of two).
    A tile computes its frame, the tile plus a halo of k // 2 on each side, as one flat run of pixels padded to a power
    of two; of the frames that fit halo_p, the one with the fewest pixels computed over the whole map is taken (ties:
    the wider), so a small map gets one tile and a smaller power of two."""
    r = k // 2
    best = None
    for frame_w in range(2 * r + 1, min(w + 2 * r, halo_p // (2 * r + 1)) + 1):
        frame_h = min(h + 2 * r, halo_p // frame_w)
        th, tw = frame_h - 2 * r, frame_w - 2 * r
        used = max(16, 1 << (frame_h * frame_w - 1).bit_length())
        cost = -(-h // th) * -(-w // tw) * used
        if best is None or cost <= best[0]:
            best = (cost, th, tw, used)
    if best is None:
        raise ValueError(f"halo_p={halo_p} is too small for a {k}x{k} halo: a tile needs at least {(2 * r + 1) ** 2} pixels")
    return best[1], best[2], best[3]


def im2col_weight(w: torch.Tensor) -> torch.Tensor:
    """A dense k×k conv's weight [C_out, C_in, k, k] as the matrix [block_k, block_co] the stem kernel multiplies its
    im2col tile by: row j = (dy·k + dx)·C_in + c_in (the column order of `conv_act`'s gathered input), column c_out;
    zero-padded to powers of two of at least 16 (block_k ≥ C_in·k², block_co ≥ C_out). 3 × 3 × 3 = 27 columns: 32."""
    c_out, c_in, kh, kw = w.shape
    rows = w.permute(2, 3, 1, 0).reshape(kh * kw * c_in, c_out)
    out = torch.zeros(block_c_of(rows.shape[0]), block_c_of(c_out), dtype=w.dtype, device=w.device)
    out[:rows.shape[0], :c_out] = rows
    return out
