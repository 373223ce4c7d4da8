"""The Triton kernels of deepae.triton_step (imported only where they run: Triton comes
with them). One training step of a D -> H1 -> L -> H2 -> D net is five launches:

1. `wide_in`, one program per chunk of BD pixels: that chunk's share of layer 1's
   product, x[:, chunk] @ W1[:, chunk]^T, into partials (C, BB, HP1).
2. `narrow_forward`, one program: sums the partials, adds the bias, and runs the three
   small layers (h1, the codes h2, h3) into buffers.
3. `wide_out`, one program per chunk: that chunk's logits, its share of the loss, its
   rows of layer 4's gradient (written), and its share of dL/dh3 into partials.
4. `narrow_backward`, one program: sums the partials and runs the small layers backward,
   writing their gradients, dL/dz1 and the loss.
5. `wide_grad`, one program per chunk: layer 1's gradient for the chunk, dz1^T x[:, chunk].

Partial sums go through buffers, not atomics: the same inputs give the same bits. Every
tile is padded to a power of 2 >= 16 (tl.dot's least); padded rows and columns carry
zeros where they could reach a result.
"""

import triton
import triton.language as tl


@triton.jit
def _act(z, code: tl.constexpr):
    if code == 1:  # relu; 0: linear
        z = tl.maximum(z, 0.0)
    return z


@triton.jit
def _act_grad(g, out, code: tl.constexpr):
    # from the output, as aten.threshold_backward: g where out > 0, else 0
    if code == 1:
        g = tl.where(out > 0.0, g, 0.0)
    return g


@triton.jit
def _tile(ptr, n_rows, n_cols, stride, ROWS: tl.constexpr, COLS: tl.constexpr):
    # the (ROWS, COLS) tile at ptr of a row-major (n_rows, n_cols) array, zero-padded
    r, c = tl.arange(0, ROWS), tl.arange(0, COLS)
    mask = (r[:, None] < n_rows) & (c[None, :] < n_cols)
    return tl.load(ptr + r[:, None] * stride + c[None, :], mask=mask, other=0.0)


@triton.jit
def _put(ptr, value, n_rows, n_cols, stride, ROWS: tl.constexpr, COLS: tl.constexpr):
    r, c = tl.arange(0, ROWS), tl.arange(0, COLS)
    mask = (r[:, None] < n_rows) & (c[None, :] < n_cols)
    tl.store(ptr + r[:, None] * stride + c[None, :], value, mask=mask)


@triton.jit
def _dense(h, w_ptr, b_ptr, n_out, n_in, IN: tl.constexpr, OUT: tl.constexpr,
           code: tl.constexpr):  # fmt: skip
    # act(h @ W^T + b) for h (BB, IN) and W (n_out, n_in); padded columns stay 0
    w_t = tl.trans(_tile(w_ptr, n_out, n_in, n_in, OUT, IN))  # (IN, OUT)
    cols = tl.arange(0, OUT)
    b = tl.load(b_ptr + cols, mask=cols < n_out, other=0.0)
    z = tl.dot(h, w_t, input_precision="ieee") + b[None, :]
    return tl.where(cols[None, :] < n_out, _act(z, code), 0.0)


@triton.jit
def _dense_grad(dz, h, gw_ptr, gb_ptr, n_out, n_in, IN: tl.constexpr, OUT: tl.constexpr):
    # writes dL/dW = dz^T h (n_out, n_in) and dL/db = sum(dz) for dz (BB, OUT), h (BB, IN)
    gw = tl.dot(tl.trans(dz), h, input_precision="ieee")  # (OUT, IN)
    _put(gw_ptr, gw, n_out, n_in, n_in, OUT, IN)
    cols = tl.arange(0, OUT)
    tl.store(gb_ptr + cols, tl.sum(dz, 0), mask=cols < n_out)


@triton.jit
def wide_in(x_ptr, w1, z1_part, B, H1, D: tl.constexpr, BB: tl.constexpr, BD: tl.constexpr,
            HP1: tl.constexpr):  # fmt: skip
    c = tl.program_id(0)
    start = c * BD
    xs = _tile(x_ptr + start, B, D - start, D, BB, BD)  # (BB, BD)
    w = _tile(w1 + start, H1, D - start, D, HP1, BD)  # (HP1, BD)
    part = tl.dot(xs, tl.trans(w), input_precision="ieee")  # (BB, HP1)
    _put(z1_part + c * BB * HP1, part, BB, HP1, HP1, BB, HP1)


@triton.jit
def narrow_forward(z1_part, b1, w2, b2, w3, b3, h1_ptr, h2_ptr, h3_ptr, H1, L, H2,
                   C: tl.constexpr, BB: tl.constexpr, HP1: tl.constexpr, LP: tl.constexpr,
                   HP2: tl.constexpr, ACT1: tl.constexpr, ACT2: tl.constexpr,
                   ACT3: tl.constexpr):  # fmt: skip
    z1 = tl.zeros((BB, HP1), dtype=tl.float32)
    for c in range(C):  # in chunk order: deterministic
        z1 += _tile(z1_part + c * BB * HP1, BB, HP1, HP1, BB, HP1)
    cols = tl.arange(0, HP1)
    b = tl.load(b1 + cols, mask=cols < H1, other=0.0)
    h1 = tl.where(cols[None, :] < H1, _act(z1 + b[None, :], ACT1), 0.0)
    h2 = _dense(h1, w2, b2, L, H1, HP1, LP, ACT2)  # (BB, LP): the codes
    h3 = _dense(h2, w3, b3, H2, L, LP, HP2, ACT3)  # (BB, HP2)
    _put(h1_ptr, h1, BB, HP1, HP1, BB, HP1)
    _put(h2_ptr, h2, BB, LP, LP, BB, LP)
    _put(h3_ptr, h3, BB, HP2, HP2, BB, HP2)


@triton.jit
def wide_out(x_ptr, w4, b4, g4, gb4, h3_ptr, dh3_part, loss_part, B, H2, scale,
             D: tl.constexpr, BB: tl.constexpr, BD: tl.constexpr, HP2: tl.constexpr):  # fmt: skip
    c = tl.program_id(0)
    start = c * BD
    rows, cols = tl.arange(0, BB), start + tl.arange(0, BD)
    col_ok = cols < D
    ok = (rows[:, None] < B) & col_ok[None, :]
    h3 = _tile(h3_ptr, BB, HP2, HP2, BB, HP2)
    w = _tile(w4 + start * H2, D - start, H2, H2, BD, HP2)  # (BD, HP2): W4's rows of the chunk
    logits = tl.dot(h3, tl.trans(w), input_precision="ieee")  # (BB, BD)
    logits += tl.load(b4 + cols, mask=col_ok, other=0.0)[None, :]
    xs = _tile(x_ptr + start, B, D - start, D, BB, BD)
    # Keras' BCE on logits; log1p(e) for e = exp(-|l|) in (0, 1]: its series below 1e-4 (a
    # trained model's background pixels), else log(u) e / (u - 1) for u = 1 + e rounded,
    # which cancels that rounding (Goldberg's); log(u) alone loses up to 6e-4 of log1p(e)
    e = tl.exp(-tl.abs(logits))
    u = 1.0 + e
    small = e < 1e-4
    log1p_e = tl.where(small, e * (1.0 - 0.5 * e),
                       tl.log(u) * (e / tl.where(small, 1.0, u - 1.0)))  # fmt: skip
    per_pixel = tl.where(ok, tl.maximum(logits, 0.0) - xs * logits + log1p_e, 0.0)
    tl.store(loss_part + c, tl.sum(tl.sum(per_pixel, 1), 0))
    g = tl.where(ok, (tl.sigmoid(logits) - xs) * scale, 0.0)  # dL/dlogits of the mean loss
    gw = tl.dot(tl.trans(g), h3, input_precision="ieee")  # (BD, HP2)
    _put(g4 + start * H2, gw, D - start, H2, H2, BD, HP2)
    tl.store(gb4 + cols, tl.sum(g, 0), mask=col_ok)
    part = tl.dot(g, w, input_precision="ieee")  # (BB, HP2): the chunk's share of dL/dh3
    _put(dh3_part + c * BB * HP2, part, BB, HP2, HP2, BB, HP2)


@triton.jit
def narrow_backward(w2, w3, g2, gb2, g3, gb3, gb1, h1_ptr, h2_ptr, h3_ptr, dh3_part,
                    loss_part, dz1_ptr, loss_ptr, H1, L, H2, C: tl.constexpr,
                    BB: tl.constexpr, HP1: tl.constexpr, LP: tl.constexpr,
                    HP2: tl.constexpr, CP: tl.constexpr, ACT1: tl.constexpr,
                    ACT2: tl.constexpr, ACT3: tl.constexpr):  # fmt: skip
    dh3 = tl.zeros((BB, HP2), dtype=tl.float32)
    for c in range(C):
        dh3 += _tile(dh3_part + c * BB * HP2, BB, HP2, HP2, BB, HP2)
    h1 = _tile(h1_ptr, BB, HP1, HP1, BB, HP1)
    h2 = _tile(h2_ptr, BB, LP, LP, BB, LP)
    h3 = _tile(h3_ptr, BB, HP2, HP2, BB, HP2)
    dz3 = _act_grad(dh3, h3, ACT3)
    _dense_grad(dz3, h2, g3, gb3, H2, L, LP, HP2)
    w3_tile = _tile(w3, H2, L, L, HP2, LP)  # (HP2, LP)
    dz2 = _act_grad(tl.dot(dz3, w3_tile, input_precision="ieee"), h2, ACT2)
    _dense_grad(dz2, h1, g2, gb2, L, H1, HP1, LP)
    w2_tile = _tile(w2, L, H1, H1, LP, HP1)  # (LP, HP1)
    dz1 = _act_grad(tl.dot(dz2, w2_tile, input_precision="ieee"), h1, ACT1)  # (BB, HP1)
    _put(dz1_ptr, dz1, BB, HP1, HP1, BB, HP1)
    cols = tl.arange(0, HP1)
    tl.store(gb1 + cols, tl.sum(dz1, 0), mask=cols < H1)
    parts = tl.arange(0, CP)
    tl.store(loss_ptr, tl.sum(tl.load(loss_part + parts, mask=parts < C, other=0.0), 0))


@triton.jit
def wide_grad(x_ptr, dz1_ptr, g1, B, H1, D: tl.constexpr, BB: tl.constexpr,
              BD: tl.constexpr, HP1: tl.constexpr):  # fmt: skip
    c = tl.program_id(0)
    start = c * BD
    xs = _tile(x_ptr + start, B, D - start, D, BB, BD)  # (BB, BD)
    dz1 = _tile(dz1_ptr, BB, HP1, HP1, BB, HP1)
    gw = tl.dot(tl.trans(dz1), xs, input_precision="ieee")  # (HP1, BD)
    _put(g1 + start, gw, H1, D - start, D, HP1, BD)
