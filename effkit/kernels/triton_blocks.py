"""One Triton kernel per residual block, channels-last (NHWC), inference.

Each program takes BLOCK_P pixels and keeps everything between the block's input and its output in registers: only the
input (with its k×k neighbourhood), the output and the weights cross DRAM, the weights from L2.

ConvFirst: the grouped k×k conv (group width GW) at the narrow width C is computed first, [BLOCK_P, C] in registers;
then, BLOCK_H expanded channels at a time, e = SiLU(y1 · W2ᵀ + b2) ([BLOCK_P, BLOCK_H]) is projected straight into the
output accumulator (acc += e · W3ᵀ): the expanded activations never leave the chip.

MBConv: its depthwise conv runs at the expanded width, so each output pixel needs the expanded activations of its k×k
neighbourhood (the halo). This kernel recomputes them: for each of the k² offsets it loads the shifted input pixels and
expands them again (k² times the expand FLOPs, no extra DRAM traffic beyond re-reading x, which L1/L2 serve), with
the expanded map's zero padding applied after the SiLU, as the depthwise conv pads it. The alternative, a shared-memory
tile of expanded activations with its halo, needs (tile + k − 1)² · BLOCK_H values of shared memory per chunk.

Products run in the weights' dtype (bf16 on the GPU), accumulate in fp32. Triton's interpreter (TRITON_INTERPRET=1) runs
these on the CPU in fp32, which is how the tests check their logic.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl


@triton.jit
def _pixel_tile(NPIX, H, W, C, BLOCK_P: tl.constexpr, BLOCK_C: tl.constexpr):
    """This program's pixels (flat over N, H, W) and channels, their masks, and each pixel's n, h, w."""
    p = tl.program_id(0) * BLOCK_P + tl.arange(0, BLOCK_P)
    c = tl.arange(0, BLOCK_C)
    return p, p < NPIX, p // (H * W), (p % (H * W)) // W, p % W, c, c < C


@triton.jit
def _project_out(acc, x_ptr, b3_ptr, out_ptr, p, pm, c, cm, C):
    """The block's end: the projection's bias and the residual added, the output tile stored."""
    acc += tl.load(b3_ptr + c, mask=cm, other=0.0).to(tl.float32)[None, :]
    offs = (p * C)[:, None] + c[None, :]
    io = pm[:, None] & cm[None, :]
    acc += tl.load(x_ptr + offs, mask=io, other=0.0).to(tl.float32)
    tl.store(out_ptr + offs, acc.to(out_ptr.dtype.element_ty), mask=io)


@triton.jit
def _convfirst_kernel(x_ptr, w1_ptr, b1_ptr, w2_ptr, b2_ptr, w3_ptr, b3_ptr, out_ptr, NPIX, H, W, C, HID,
                      K: tl.constexpr, GW: tl.constexpr, BLOCK_P: tl.constexpr, BLOCK_C: tl.constexpr, BLOCK_H: tl.constexpr):
    p, pm, n, h, w, c, cm = _pixel_tile(NPIX, H, W, C, BLOCK_P, BLOCK_C)
    grp = (c // GW) * GW
    y1 = tl.zeros((BLOCK_P, BLOCK_C), dtype=tl.float32)
    for dy in tl.static_range(K):
        for dx in tl.static_range(K):
            hh = h + dy - K // 2
            ww = w + dx - K // 2
            ok = pm & (hh >= 0) & (hh < H) & (ww >= 0) & (ww < W)
            base = ((n * H + hh) * W + ww) * C
            for j in tl.static_range(GW):
                xv = tl.load(x_ptr + base[:, None] + (grp + j)[None, :], mask=ok[:, None] & cm[None, :], other=0.0).to(tl.float32)
                wv = tl.load(w1_ptr + ((c * GW + j) * K + dy) * K + dx, mask=cm, other=0.0).to(tl.float32)
                y1 += xv * wv[None, :]
    y1 += tl.load(b1_ptr + c, mask=cm, other=0.0).to(tl.float32)[None, :]
    y1 = y1.to(w2_ptr.dtype.element_ty)
    acc = tl.zeros((BLOCK_P, BLOCK_C), dtype=tl.float32)
    for h0 in range(0, HID, BLOCK_H):
        hi = h0 + tl.arange(0, BLOCK_H)
        hm = hi < HID
        w2t = tl.load(w2_ptr + hi[None, :] * C + c[:, None], mask=cm[:, None] & hm[None, :], other=0.0)  # [BLOCK_C, BLOCK_H]
        e = tl.dot(y1, w2t) + tl.load(b2_ptr + hi, mask=hm, other=0.0).to(tl.float32)[None, :]
        e = e * tl.sigmoid(e)
        w3t = tl.load(w3_ptr + c[None, :] * HID + hi[:, None], mask=hm[:, None] & cm[None, :], other=0.0)  # [BLOCK_H, BLOCK_C]
        acc += tl.dot(e.to(w3_ptr.dtype.element_ty), w3t)
    _project_out(acc, x_ptr, b3_ptr, out_ptr, p, pm, c, cm, C)


@triton.jit
def _mbconv_kernel(x_ptr, w1_ptr, b1_ptr, wd_ptr, bd_ptr, w3_ptr, b3_ptr, out_ptr, NPIX, H, W, C, HID,
                   K: tl.constexpr, BLOCK_P: tl.constexpr, BLOCK_C: tl.constexpr, BLOCK_H: tl.constexpr):
    p, pm, n, h, w, c, cm = _pixel_tile(NPIX, H, W, C, BLOCK_P, BLOCK_C)
    acc = tl.zeros((BLOCK_P, BLOCK_C), dtype=tl.float32)
    for h0 in range(0, HID, BLOCK_H):
        hi = h0 + tl.arange(0, BLOCK_H)
        hm = hi < HID
        w1t = tl.load(w1_ptr + hi[None, :] * C + c[:, None], mask=cm[:, None] & hm[None, :], other=0.0)  # [BLOCK_C, BLOCK_H]
        b1 = tl.load(b1_ptr + hi, mask=hm, other=0.0).to(tl.float32)
        d = tl.zeros((BLOCK_P, BLOCK_H), dtype=tl.float32)
        for dy in tl.static_range(K):
            for dx in tl.static_range(K):
                hh = h + dy - K // 2
                ww = w + dx - K // 2
                ok = pm & (hh >= 0) & (hh < H) & (ww >= 0) & (ww < W)
                xs = tl.load(x_ptr + (((n * H + hh) * W + ww) * C)[:, None] + c[None, :], mask=ok[:, None] & cm[None, :], other=0.0)
                e = tl.dot(xs.to(w1_ptr.dtype.element_ty), w1t) + b1[None, :]
                e = e * tl.sigmoid(e)
                e = tl.where(ok[:, None], e, 0.0)  # the depthwise conv pads the expanded map with zeros
                wd = tl.load(wd_ptr + (hi * K + dy) * K + dx, mask=hm, other=0.0).to(tl.float32)
                d += e * wd[None, :]
        d += tl.load(bd_ptr + hi, mask=hm, other=0.0).to(tl.float32)[None, :]
        d = d * tl.sigmoid(d)
        w3t = tl.load(w3_ptr + c[None, :] * HID + hi[:, None], mask=hm[:, None] & cm[None, :], other=0.0)  # [BLOCK_H, BLOCK_C]
        acc += tl.dot(d.to(w3_ptr.dtype.element_ty), w3t)
    _project_out(acc, x_ptr, b3_ptr, out_ptr, p, pm, c, cm, C)


def _launch(kernel, x, weights: tuple, hidden: int, block_p: int | None, block_h: int | None, **constexprs) -> torch.Tensor:
    """Run a block kernel over every pixel of `x` (NCHW; channels-last memory preferred); returns channels-last NCHW."""
    n, c, hgt, wid = x.shape
    xh = x.permute(0, 2, 3, 1).contiguous()  # the NHWC view: free for a channels-last tensor, a copy otherwise
    out = torch.empty_like(xh)
    block_c = max(16, triton.next_power_of_2(c))
    bp, bh = block_p or 32, block_h or min(64, max(16, triton.next_power_of_2(hidden)))
    npix = n * hgt * wid
    kernel[(triton.cdiv(npix, bp),)](xh, *weights, out, npix, hgt, wid, c, hidden, BLOCK_P=bp, BLOCK_C=block_c, BLOCK_H=bh, **constexprs)
    return out.permute(0, 3, 1, 2)


def convfirst(x, w1, b1, w2, b2, w3, b3, group_width: int, block_p: int | None = None, block_h: int | None = None) -> torch.Tensor:
    """The fused ConvFirst block on an NCHW tensor (channels-last memory preferred); returns channels-last NCHW."""
    return _launch(_convfirst_kernel, x, (w1, b1, w2, b2, w3, b3), w2.shape[0], block_p, block_h, K=w1.shape[-1], GW=group_width)


def mbconv(x, w1, b1, wd, bd, w3, b3, block_p: int | None = None, block_h: int | None = None) -> torch.Tensor:
    """The fused MBConv block (depthwise) on an NCHW tensor; returns channels-last NCHW."""
    return _launch(_mbconv_kernel, x, (w1, b1, wd, bd, w3, b3), w1.shape[0], block_p, block_h, K=wd.shape[-1])
