"""The RNN half of Sketch-R2CNN (paper Sec. 3.2): a bidirectional LSTM over the points of each sketch that gives
per-point features and, through a fully connected layer and a sigmoid, per-point attention ``a_i``.

Input representation (Sec. 3.1-3.2): each point is fed as its offset from the previous point ``(dx, dy)`` plus the
pen state ``s_i`` (1 on the last point of a stroke). The first point of a sketch has no predecessor; we feed its
offset from the canvas origin, i.e. its normalised coordinates (the normalised sketch is centred on the origin, so
this tells the RNN where drawing started). Offsets never cross sketch boundaries.

Why not ``nn.LSTM(bidirectional=True)`` on a ``PackedSequence``: on CPU the packed kernels run step by step on a
shrinking batch and are several times slower (docs/architecture.md "Performance"). :class:`BiLSTM` instead runs, per
layer, one unidirectional LSTM on padded sketches ``(n, T, F)`` and another on a copy in which every sequence is
reversed *within its own length* (padding stays at the end). Each direction then only reads its valid prefix, so
the outputs at valid positions are exactly those of the packed bidirectional LSTM (tested in
``tests/test_encoder.py``); padding outputs are never gathered. Packed <-> padded conversion is a gather with
index tensors built once per batch (:class:`PackedLayout`), whose gradient is a gather too (:class:`_Gather`).
In training the sketches are sorted by length and padded in blocks (:func:`length_buckets`), each block only to its
own longest sketch: QuickDraw sketches have 45 points on average while a batch of 64 often holds one of 120-300.

Threads: the LSTM kernel opens one OpenMP parallel region per time step, in the forward and in the backward pass.
At the fast CPU preset's size (batch 64, hidden 64) a step's gate GEMM is a few million multiply-adds, well under
a millisecond of work, so a second thread mostly waits at the step's barrier. On a busy machine a waiting thread that
spins takes the core another process wants: two concurrent trainings slowed each other from about 1.1 s to 7-16 s
per step. The launcher sets ``OMP_WAIT_POLICY=PASSIVE`` (:mod:`r2cnn.cli`) so that idle threads sleep instead, which
makes every time step wake one: :class:`SequenceEncoder` therefore runs the LSTMs on one thread, forward and backward
(:class:`_OneThread`), while the CNN keeps all of them. ``r2cnn bench encoder`` shows the wall and CPU time of a
training step with all threads and with one.
"""

from __future__ import annotations

import contextlib
import functools
from dataclasses import dataclass

import torch
from torch import nn

from r2cnn.sketch import SketchBatch

INPUT_FEATURES = 3  # dx, dy, pen_end


def fp32_on_cpu(forward):
    """Run a module's ``forward`` with CPU autocast off (its CUDA autocast untouched): on the CPU only the CNN runs in
    bf16 (:mod:`r2cnn.engine.precision`); the LSTM's recurrence and the attention it gives stay in fp32."""

    @functools.wraps(forward)
    def wrapper(self, *args, **kwargs):
        if torch.is_autocast_enabled("cpu"):
            with torch.autocast("cpu", enabled=False):
                return forward(self, *args, **kwargs)
        return forward(self, *args, **kwargs)

    return wrapper


def point_offsets(points: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
    """RNN input of Sec. 3.2: ``(P, 3)`` = (x_i - x_{i-1}, y_i - y_{i-1}, s_i); the first point of each sketch keeps
    its coordinates (offset from the origin). ``points`` ``(P, 3)``, ``offsets`` ``(B+1,)`` int64."""
    xy = points[:, :2]
    prev = torch.zeros_like(xy)
    prev[1:] = xy[:-1]
    starts = offsets[:-1][offsets[:-1] < offsets[1:]]  # first points of non-empty sketches
    prev[starts] = 0.0
    return torch.cat([xy - prev, points[:, 2:3]], dim=1)


def sketch_offsets(points: torch.Tensor) -> torch.Tensor:
    """:func:`point_offsets` of one sketch ``(N, 3)`` -> ``(N, 3)``, written with slices only (no index
    assignment), so a trace keeps ``N`` dynamic (export, :meth:`AttentionEncoder.attention_one`)."""
    xy = points[:, :2]
    return torch.cat([torch.cat([xy[:1], xy[1:] - xy[:-1]]), points[:, 2:3]], dim=1)


def stroke_index(points: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
    """Global stroke index ``(P,)`` int64 of every packed point: strokes are numbered across the batch in order;
    a stroke starts at a sketch's first point (even after a missing pen_end) and after every pen_end."""
    num_points = points.shape[0]
    lengths = offsets[1:] - offsets[:-1]
    starts = torch.zeros(num_points, dtype=torch.bool, device=points.device)
    starts[offsets[:-1][lengths > 0]] = True
    starts[1:] |= points[:-1, 2] > 0.5
    return torch.cumsum(starts.long(), 0) - 1


# Length buckets (:meth:`PackedLayout.from_offsets` with ``buckets=True``). The oneDNN LSTM kernel's time per step is
# about ``a + b * sketches`` with ``a`` the cost of ~8 sketches' rows (measured at hidden 64, batch 8-128, forward and
# backward): padding every sketch of a batch to its longest one (QuickDraw: mean 45 points, a batch's longest often
# 120-300) wastes more than half the work, while one call per sketch pays ``a`` per step each time.
BUCKET_STEP_COST = 8.0   # the per-step overhead of one LSTM call, in sketch-steps
BUCKET_CALL_COST = 64.0  # the fixed cost of one more LSTM call (per layer and direction), in sketch-steps


def length_buckets(lengths: list[int]) -> list[int]:
    """Split lengths sorted longest first into consecutive groups that minimise the modelled LSTM cost
    ``sum over groups (longest * (BUCKET_STEP_COST + sketches) + BUCKET_CALL_COST)``; returns the group sizes.
    Dynamic programming over the split points (``O(B^2)``, B = batch size)."""
    n = len(lengths)
    best = [0.0] + [float("inf")] * n  # best[i]: cost of the first i sketches
    cut = [0] * (n + 1)
    for i in range(1, n + 1):
        for j in range(i):  # last group: sketches j .. i-1, whose longest is lengths[j]
            c = best[j] + max(lengths[j], 1) * (BUCKET_STEP_COST + i - j) + BUCKET_CALL_COST
            if c < best[i]:
                best[i], cut[i] = c, j
    sizes, i = [], n
    while i:
        sizes.append(i - cut[i])
        i = cut[i]
    return sizes[::-1]


class _Gather(torch.autograd.Function):
    """``rows[index]``, where ``rows`` is ``x`` with a zero row appended when ``zero_row`` (index ``len(x)`` then
    reads zeros), for an ``index`` that names each row of ``x`` exactly once (``inverse[p]`` is where row ``p``
    lands). Its gradient is then a gather too, ``grad[inverse]``, instead of the scatter-add (``index_put`` with
    accumulation) that autograd uses for a general index, which on CPU is several times slower."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, index: torch.Tensor, inverse: torch.Tensor, zero_row: bool) -> torch.Tensor:
        ctx.save_for_backward(index, inverse)
        ctx.zero_row = zero_row
        rows = torch.cat([x, x.new_zeros(1, x.shape[1])]) if zero_row else x
        return rows.index_select(0, index)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        index, inverse = ctx.saved_tensors
        # every row of x lands in the output, so its gradient has no zero row to read; output positions that are
        # not a row of x (padding) take a zero gradient from the appended row
        return _Gather.apply(grad, inverse, index, not ctx.zero_row), None, None, None


def gather_rows(x: torch.Tensor, index: torch.Tensor, inverse: torch.Tensor, zero_row: bool) -> torch.Tensor:
    """``cat([x, 0])[index]`` (``zero_row``) or ``x[index]``, with a gather as its gradient (:class:`_Gather`);
    ``inverse`` maps every row of ``x`` to its position in the output. With ``zero_row``, the output positions not
    in ``inverse`` hold ``len(x)``; without, ``index`` covers every output position and the rows it skips get zero
    gradient."""
    return _Gather.apply(x, index, inverse, zero_row)


@dataclass
class PackedLayout:
    """Index tensors mapping packed points ``(P, F)`` to padded groups of sketches and back.

    The sketches are laid out in ``groups``: ``(sketches, steps)`` blocks, each a padded ``(sketches, steps, F)``
    batch, stored one after another in a flat ``(S, F)`` tensor (``S = sum sketches * steps``). Without buckets there
    is one group, the whole batch padded to its longest sketch, in batch order; with buckets the sketches are sorted
    longest first and cut into groups by :func:`length_buckets`, each padded only to its own longest.

    - ``forward_index`` ``(S,)``: packed row for each flat slot (step t of a sketch holds its point t), or ``P`` (a
      zero row) beyond the sketch's length.
    - ``reverse_index`` ``(S,)``: same for the per-sequence reversed copy: step t holds point ``len - 1 - t``.
    - ``forward_slot`` / ``reverse_slot`` ``(P,)``: flat slot of each packed point in either copy.
    - ``last_slot`` ``(B,)``: flat slot of each sketch's last valid step (same in both copies; empty sketches give
      their first slot).
    """

    batch_size: int
    max_len: int
    num_points: int
    forward_index: torch.Tensor
    reverse_index: torch.Tensor
    forward_slot: torch.Tensor
    reverse_slot: torch.Tensor
    last_slot: torch.Tensor
    lengths: torch.Tensor
    groups: tuple[tuple[int, int], ...] = ()

    @classmethod
    def from_offsets(cls, offsets: torch.Tensor, buckets: bool = False) -> "PackedLayout":
        lengths = offsets[1:] - offsets[:-1]
        b, p = lengths.numel(), int(offsets[-1])
        dev = offsets.device
        if buckets and b > 1:
            order = torch.argsort(lengths, descending=True, stable=True)
            sorted_lengths = lengths[order].tolist()
            sizes = length_buckets(sorted_lengths)
            starts = [0]
            for size in sizes[:-1]:
                starts.append(starts[-1] + size)
            groups = tuple((size, max(sorted_lengths[s], 1)) for s, size in zip(starts, sizes))
        else:
            order = torch.arange(b, device=dev)
            groups = ((b, max(int(lengths.max()), 1) if b else 1),)
        # every sketch's group row: the flat slot of its step 0, and its group's steps
        steps_of = torch.cat([torch.full((n,), t, dtype=torch.int64) for n, t in groups]).to(dev) if b else \
            torch.zeros(0, dtype=torch.int64, device=dev)
        row_sorted = torch.cumsum(steps_of, 0) - steps_of
        row_start = torch.empty_like(row_sorted)
        row_start[order] = row_sorted
        # flat slot -> (sketch, step)
        total = int(steps_of.sum())
        slot_sketch = torch.repeat_interleave(order, steps_of, output_size=total)
        slot_step = torch.arange(total, device=dev) - row_start[slot_sketch]
        slot_len = lengths[slot_sketch]
        valid = slot_step < slot_len
        start = offsets[:-1][slot_sketch]
        fwd = torch.where(valid, start + slot_step, p)
        rev = torch.where(valid, start + slot_len - 1 - slot_step, p)
        sketch_of_point = torch.repeat_interleave(torch.arange(b, device=dev), lengths, output_size=p)
        step_of_point = torch.arange(p, device=dev) - offsets[:-1][sketch_of_point]
        forward_slot = row_start[sketch_of_point] + step_of_point
        reverse_slot = row_start[sketch_of_point] + lengths[sketch_of_point] - 1 - step_of_point
        last_slot = row_start + (lengths - 1).clamp(min=0)
        max_len = max(t for _, t in groups)
        return cls(b, max_len, p, fwd, rev, forward_slot, reverse_slot, last_slot, lengths, groups)

    def gather(self, packed: torch.Tensor, reverse: bool = False) -> torch.Tensor:
        """``(P, F)`` -> flat ``(S, F)``, zero padded; ``reverse`` reverses each sequence within its length."""
        if reverse:
            return gather_rows(packed, self.reverse_index, self.reverse_slot, True)
        return gather_rows(packed, self.forward_index, self.forward_slot, True)

    def scatter(self, flat: torch.Tensor, reverse: bool = False) -> torch.Tensor:
        """Flat ``(S, F)`` -> ``(P, F)`` in packed order (undoing the reversal when ``reverse``)."""
        if reverse:
            return gather_rows(flat, self.reverse_slot, self.reverse_index, False)
        return gather_rows(flat, self.forward_slot, self.forward_index, False)

    def blocks(self, flat: torch.Tensor) -> list[torch.Tensor]:
        """Flat ``(S, F)`` -> one ``(sketches, steps, F)`` view per group."""
        out, at = [], 0
        for n, t in self.groups:
            out.append(flat[at:at + n * t].view(n, t, flat.shape[-1]))
            at += n * t
        return out

    def pad(self, packed: torch.Tensor, reverse: bool = False) -> torch.Tensor:
        """``(P, F)`` -> ``(B, T, F)``, zero padded, in batch order (a layout without buckets); ``reverse`` reverses
        each sequence within its length."""
        if len(self.groups) != 1:
            raise ValueError("pad: a bucketed layout has several padded blocks; use gather() and blocks()")
        return self.gather(packed, reverse).view(self.batch_size, self.max_len, -1)

    def unpad(self, padded: torch.Tensor, reverse: bool = False) -> torch.Tensor:
        """``(B, T, F)`` (or flat ``(S, F)``) -> ``(P, F)`` in packed order (undoing the reversal when ``reverse``)."""
        return self.scatter(padded.reshape(-1, padded.shape[-1]), reverse)


class BiLSTM(nn.Module):
    """Multi-layer bidirectional LSTM on packed sketches, equal to ``nn.LSTM(bidirectional=True)`` on a
    ``PackedSequence`` (see module docstring). Dropout ``dropout`` is applied to the outputs of every layer but the
    last, as ``nn.LSTM`` does. Use :meth:`load_lstm_state_dict` to copy an ``nn.LSTM``'s weights in."""

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 2, dropout: float = 0.0):
        super().__init__()
        self.input_size, self.hidden_size, self.num_layers = input_size, hidden_size, num_layers
        sizes = [input_size] + [2 * hidden_size] * (num_layers - 1)
        self.forward_layers = nn.ModuleList(nn.LSTM(s, hidden_size, batch_first=True) for s in sizes)
        self.backward_layers = nn.ModuleList(nn.LSTM(s, hidden_size, batch_first=True) for s in sizes)
        self.dropout = nn.Dropout(dropout)

    @property
    def output_size(self) -> int:
        return 2 * self.hidden_size

    @staticmethod
    def _run(lstm: nn.LSTM, blocks: list[torch.Tensor]) -> torch.Tensor:
        """``lstm`` on every padded block -> the outputs, flat ``(S, H)`` in the blocks' order."""
        outs = [lstm(block)[0] for block in blocks]
        return torch.cat([o.reshape(-1, o.shape[-1]) for o in outs]) if len(outs) > 1 else \
            outs[0].reshape(-1, outs[0].shape[-1])

    def forward(self, x: torch.Tensor, layout: PackedLayout) -> tuple[torch.Tensor, torch.Tensor]:
        """``x`` ``(P, F)`` packed inputs -> (per-point outputs ``(P, 2H)``, final states ``(B, 2H)``).

        Final states are ``h_n`` of the top layer as ``nn.LSTM`` returns them for packed input: the forward
        direction after the last point, the backward direction after the first point (concatenated)."""
        for i, (fwd, bwd) in enumerate(zip(self.forward_layers, self.backward_layers)):
            if i:
                x = self.dropout(x)
            out_f = self._run(fwd, layout.blocks(layout.gather(x)))
            out_b = self._run(bwd, layout.blocks(layout.gather(x, reverse=True)))
            x = torch.cat([layout.scatter(out_f), layout.scatter(out_b, reverse=True)], dim=1)
        final = torch.cat([out_f[layout.last_slot], out_b[layout.last_slot]], dim=1)
        return x, final * (layout.lengths > 0).unsqueeze(1).to(final.dtype)

    def forward_one(self, x: torch.Tensor) -> torch.Tensor:
        """One sketch, no packing and no padding: ``x`` ``(N, F)`` -> per-point outputs ``(N, 2H)``, the same as
        :meth:`forward` on a batch holding only this sketch (within float rounding: the batch size changes the
        GEMMs' blocking). The backward direction runs on ``x.flip(0)``; exportable to ONNX (the LSTM op) and
        TorchScript with a dynamic ``N``."""
        for i, (fwd, bwd) in enumerate(zip(self.forward_layers, self.backward_layers)):
            if i:
                x = self.dropout(x)
            out_f, _ = fwd(x[None])
            out_b, _ = bwd(x.flip(0)[None])
            x = torch.cat([out_f[0], out_b[0].flip(0)], dim=1)
        return x

    @torch.no_grad()
    def load_lstm_state_dict(self, state: dict) -> None:
        """Copy weights from the ``state_dict()`` of an ``nn.LSTM(input_size, hidden_size, num_layers,
        bidirectional=True)`` (keys ``weight_ih_l{k}[_reverse]``, ``weight_hh_l{k}``, ``bias_ih_l{k}``, ...)."""
        for k in range(self.num_layers):
            for suffix, layer in (("", self.forward_layers[k]), ("_reverse", self.backward_layers[k])):
                for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
                    getattr(layer, f"{name}_l0").copy_(state[f"{name}_l{k}{suffix}"])


@contextlib.contextmanager
def one_thread():
    """One torch intra-op thread inside the block (the caller's count again after it)."""
    before = torch.get_num_threads()
    if before > 1:
        torch.set_num_threads(1)
    try:
        yield
    finally:
        if before > 1:
            torch.set_num_threads(before)


class _OneThread(torch.autograd.Function):
    """``run(x)`` with one intra-op thread in the forward *and* the backward pass. The LSTM opens a parallel region
    per time step; with the launcher's ``OMP_WAIT_POLICY=PASSIVE`` (module docstring) every region wakes a sleeping
    thread, and on 2 cores the 2-thread BiLSTM step of cpu-r2cnn took 164 ms against 55 ms on one thread. The inner
    graph is built here and differentiated in :meth:`backward` with ``torch.autograd.grad``; ``params`` are passed
    in so that their gradients leave through this node."""

    @staticmethod
    def forward(ctx, run, x: torch.Tensor, *params: torch.Tensor):
        with one_thread(), torch.enable_grad():
            inner = x.detach().requires_grad_(x.requires_grad)
            outs = run(inner)
        ctx.inner, ctx.outs, ctx.params = inner, outs, params
        return tuple(o.detach() for o in outs)

    @staticmethod
    def backward(ctx, *grads):
        x_grad = ctx.inner.requires_grad
        wrt = ([ctx.inner] if x_grad else []) + [p for p in ctx.params if p.requires_grad]
        with one_thread():  # retain_graph: the outer graph may be differentiated again (backward(retain_graph=True));
            # the inner graph is freed with this node
            got = list(torch.autograd.grad(ctx.outs, wrt, grads, allow_unused=True, retain_graph=True))
        gx = got.pop(0) if x_grad else None
        rest = iter(got)
        return (None, gx, *(next(rest) if p.requires_grad else None for p in ctx.params))


class SequenceEncoder(nn.Module):
    """The RNN of Sec. 3.2 on a batch: point offsets (:func:`point_offsets`) -> :class:`BiLSTM`.

    ``forward(batch)`` -> (per-point features ``(P, 2H)``, final states ``(B, 2H)``). The final states are the
    RNN branch's sketch descriptor in the late-fusion ablation (Table 2)."""

    def __init__(self, hidden_size: int = 512, num_layers: int = 2, dropout: float = 0.5):
        super().__init__()
        self.rnn = BiLSTM(INPUT_FEATURES, hidden_size, num_layers, dropout)

    @property
    def output_size(self) -> int:
        return self.rnn.output_size

    @fp32_on_cpu
    def forward(self, batch: SketchBatch) -> tuple[torch.Tensor, torch.Tensor]:
        layout = PackedLayout.from_offsets(batch.offsets, buckets=True)
        x = point_offsets(batch.points, batch.offsets)
        if x.device.type != "cpu" or torch.get_num_threads() == 1:
            return self.rnn(x, layout)
        if not torch.is_grad_enabled():
            with one_thread():
                return self.rnn(x, layout)
        return _OneThread.apply(lambda inner: self.rnn(inner, layout), x, *self.rnn.parameters())


class AttentionEncoder(nn.Module):
    """Sec. 3.2: BiLSTM (2 layers, hidden 512, dropout 0.5 in the paper) -> fully connected -> sigmoid, one
    attention value per point and channel (paper: C = 1; the original code used 8).

    ``forward(batch)`` -> attention ``(P, C)`` in ``(0, 1)``, aligned with ``batch.points``."""

    def __init__(self, hidden_size: int = 512, num_layers: int = 2, dropout: float = 0.5, channels: int = 1):
        super().__init__()
        self.sequence = SequenceEncoder(hidden_size, num_layers, dropout)
        self.head = nn.Linear(self.sequence.output_size, channels)
        self.channels = channels

    @fp32_on_cpu
    def forward(self, batch: SketchBatch) -> torch.Tensor:
        features, _ = self.sequence(batch)
        return torch.sigmoid(self.head(features))

    def attention_one(self, points: torch.Tensor) -> torch.Tensor:
        """The attention of one normalised sketch ``(N, 3)`` -> ``(N, C)`` without packed sequences
        (:meth:`BiLSTM.forward_one`): the exportable form of :meth:`forward` (equal within 1e-6, tested)."""
        return torch.sigmoid(self.head(self.sequence.rnn.forward_one(sketch_offsets(points))))


class StrokeAttentionEncoder(AttentionEncoder):
    """Stroke-level attention (beyond the paper; an attention design): the RNN still reads every point, but the head's
    per-point logits are averaged over each stroke before the sigmoid, so all points of a stroke get one value.
    The CNN then sees each stroke at one brightness: attention can only say which strokes matter, not where
    along a stroke, which is the granularity of the time-encoded image's stroke-order channel.

    ``forward(batch)`` -> attention ``(P, C)`` in ``(0, 1)``, constant within every stroke."""

    @fp32_on_cpu
    def forward(self, batch: SketchBatch) -> torch.Tensor:
        features, _ = self.sequence(batch)
        logits = self.head(features)
        stroke = stroke_index(batch.points, batch.offsets)
        n = int(stroke[-1]) + 1 if len(stroke) else 0
        sums = logits.new_zeros(n, logits.shape[1]).index_add_(0, stroke, logits)
        counts = torch.bincount(stroke, minlength=n).to(logits.dtype)
        return torch.sigmoid((sums / counts[:, None])[stroke])


class ContrastAttentionEncoder(AttentionEncoder):
    """Sketch-level contrast (beyond the paper; an attention design): the head's per-point logits are standardised
    within each sketch (and channel) before a learned gain and bias and the sigmoid, ``a = sigmoid(g * z + b)``.

    Why: the paper's design's attention (cpu-r2cnn-paper) on qd340-mini stayed within 0.70-0.86 for 90% of the points
    (std 0.041 within a sketch): the CNN saw an almost binary image, while the time-encoded image's order channels
    span 0 to 1. Standardising makes every sketch's attention use the range from the first step (g = 2, b = 1: about
    0.05-0.99), and the gain, learned, sets how much contrast the CNN gets. A sketch whose points all have the same
    logit gets ``sigmoid(b)`` everywhere.

    ``forward(batch)`` -> attention ``(P, C)`` in ``(0, 1)``."""

    def __init__(self, hidden_size: int = 512, num_layers: int = 2, dropout: float = 0.5, channels: int = 1):
        super().__init__(hidden_size, num_layers, dropout, channels)
        self.gain = nn.Parameter(torch.full((channels,), 2.0))
        self.bias = nn.Parameter(torch.ones(channels))

    def _contrast(self, z: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.gain * z + self.bias)

    @fp32_on_cpu
    def forward(self, batch: SketchBatch) -> torch.Tensor:
        features, _ = self.sequence(batch)
        logits = self.head(features)
        lengths = batch.offsets[1:] - batch.offsets[:-1]
        sketch = torch.repeat_interleave(torch.arange(lengths.numel(), device=logits.device), lengths,
                                         output_size=logits.shape[0])
        n = lengths.clamp(min=1).to(logits.dtype)[:, None]
        mean = logits.new_zeros(lengths.numel(), logits.shape[1]).index_add_(0, sketch, logits) / n
        centred = logits - mean[sketch]
        var = logits.new_zeros(lengths.numel(), logits.shape[1]).index_add_(0, sketch, centred * centred) / n
        return self._contrast(centred / torch.sqrt(var[sketch] + 1e-4))

    def attention_one(self, points: torch.Tensor) -> torch.Tensor:
        logits = self.head(self.sequence.rnn.forward_one(sketch_offsets(points)))
        centred = logits - logits.mean(0, keepdim=True)
        return self._contrast(centred / torch.sqrt((centred * centred).mean(0, keepdim=True) + 1e-4))
