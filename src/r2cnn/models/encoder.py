"""The RNN half of Sketch-R2CNN (paper Sec. 3.2): a bidirectional LSTM over the points of each sketch that gives
per-point features and, through a fully connected layer and a sigmoid, per-point attention ``a_i``.

Input representation (Sec. 3.1-3.2): each point is fed as its offset from the previous point ``(dx, dy)`` plus the
pen state ``s_i`` (1 on the last point of a stroke). The first point of a sketch has no predecessor; we feed its
offset from the canvas origin, i.e. its normalised coordinates (the normalised sketch is centred on the origin, so
this tells the RNN where drawing started). Offsets never cross sketch boundaries.

Why not ``nn.LSTM(bidirectional=True)`` on a ``PackedSequence``: on CPU the packed kernels run step by step on a
shrinking batch and are several times slower (docs/architecture.md "Performance"). :class:`BiLSTM` instead runs, per
layer, one unidirectional LSTM on the padded batch ``(B, T, F)`` and another on a copy in which every sequence is
reversed *within its own length* (padding stays at the end). Each direction then only reads its valid prefix, so
the outputs at valid positions are exactly those of the packed bidirectional LSTM (tested in
``tests/test_encoder.py``); padding outputs are never gathered. Packed <-> padded conversion is a gather with
index tensors built once per batch (:class:`PackedLayout`).

Threads: the LSTM kernel opens one OpenMP parallel region per time step, in the forward and in the backward pass.
At the fast CPU preset's size (batch 64, hidden 64) a step's gate GEMM is a few million multiply-adds, well under
a millisecond of work, so a second thread mostly waits at the step's barrier. On a busy machine a waiting thread that
spins takes the core another process wants: two concurrent trainings slowed each other from about 1.1 s to 7-16 s
per step. The launcher sets ``OMP_WAIT_POLICY=PASSIVE`` (:mod:`r2cnn.cli`) so that idle threads sleep instead;
``r2cnn bench train --concurrent 2`` measures two trainings at once against one alone (each kept 0.6-0.7x of its
lone rate on 2 cores, docs/architecture.md "Performance"). ``r2cnn bench encoder`` shows the wall and CPU time of a
training step with all threads and with one.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from r2cnn.sketch import SketchBatch

INPUT_FEATURES = 3  # dx, dy, pen_end


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


@dataclass
class PackedLayout:
    """Index tensors mapping packed points ``(P, F)`` to padded ``(B, T, F)`` and back.

    - ``forward_index`` ``(B*T,)``: packed row for padded slot (b, t), or ``P`` (a zero row) beyond the length.
    - ``reverse_index`` ``(B*T,)``: same for the per-sequence reversed copy: slot (b, t) holds point
      ``len_b - 1 - t`` of sketch b.
    - ``forward_slot`` / ``reverse_slot`` ``(P,)``: flat padded slot of each packed point in either copy.
    - ``last_slot`` ``(B,)``: flat slot of the last valid step (same in both copies; empty sketches give 0).
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

    @classmethod
    def from_offsets(cls, offsets: torch.Tensor) -> "PackedLayout":
        lengths = offsets[1:] - offsets[:-1]
        b, p = lengths.numel(), int(offsets[-1])
        t = max(int(lengths.max()), 1) if b else 1
        dev = offsets.device
        steps = torch.arange(t, device=dev)
        valid = steps[None, :] < lengths[:, None]                       # (B, T)
        fwd = torch.where(valid, offsets[:-1, None] + steps[None, :], p)
        rev = torch.where(valid, offsets[:-1, None] + lengths[:, None] - 1 - steps[None, :], p)
        sketch_of_point = torch.repeat_interleave(torch.arange(b, device=dev), lengths, output_size=p)
        step_of_point = torch.arange(p, device=dev) - offsets[:-1][sketch_of_point]
        forward_slot = sketch_of_point * t + step_of_point
        reverse_slot = sketch_of_point * t + lengths[sketch_of_point] - 1 - step_of_point
        last_slot = torch.arange(b, device=dev) * t + (lengths - 1).clamp(min=0)
        return cls(b, t, p, fwd.reshape(-1), rev.reshape(-1), forward_slot, reverse_slot, last_slot, lengths)

    def pad(self, packed: torch.Tensor, reverse: bool = False) -> torch.Tensor:
        """``(P, F)`` -> ``(B, T, F)``, zero padded; ``reverse`` reverses each sequence within its length."""
        rows = torch.cat([packed, packed.new_zeros(1, packed.shape[1])])
        index = self.reverse_index if reverse else self.forward_index
        return rows[index].view(self.batch_size, self.max_len, -1)

    def unpad(self, padded: torch.Tensor, reverse: bool = False) -> torch.Tensor:
        """``(B, T, F)`` -> ``(P, F)`` in packed order (undoing the reversal when ``reverse``)."""
        slot = self.reverse_slot if reverse else self.forward_slot
        return padded.reshape(-1, padded.shape[-1])[slot]


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

    def forward(self, x: torch.Tensor, layout: PackedLayout) -> tuple[torch.Tensor, torch.Tensor]:
        """``x`` ``(P, F)`` packed inputs -> (per-point outputs ``(P, 2H)``, final states ``(B, 2H)``).

        Final states are ``h_n`` of the top layer as ``nn.LSTM`` returns them for packed input: the forward
        direction after the last point, the backward direction after the first point (concatenated)."""
        for i, (fwd, bwd) in enumerate(zip(self.forward_layers, self.backward_layers)):
            if i:
                x = self.dropout(x)
            out_f, _ = fwd(layout.pad(x))
            out_b, _ = bwd(layout.pad(x, reverse=True))
            x = torch.cat([layout.unpad(out_f), layout.unpad(out_b, reverse=True)], dim=1)
        h = self.hidden_size
        final = torch.cat([out_f.reshape(-1, h)[layout.last_slot], out_b.reshape(-1, h)[layout.last_slot]], dim=1)
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

    def forward(self, batch: SketchBatch) -> tuple[torch.Tensor, torch.Tensor]:
        layout = PackedLayout.from_offsets(batch.offsets)
        return self.rnn(point_offsets(batch.points, batch.offsets), layout)


class AttentionEncoder(nn.Module):
    """Sec. 3.2: BiLSTM (2 layers, hidden 512, dropout 0.5 in the paper) -> fully connected -> sigmoid, one
    attention value per point and channel (paper: C = 1; the original code used 8).

    ``forward(batch)`` -> attention ``(P, C)`` in ``(0, 1)``, aligned with ``batch.points``."""

    def __init__(self, hidden_size: int = 512, num_layers: int = 2, dropout: float = 0.5, channels: int = 1):
        super().__init__()
        self.sequence = SequenceEncoder(hidden_size, num_layers, dropout)
        self.head = nn.Linear(self.sequence.output_size, channels)
        self.channels = channels

    def forward(self, batch: SketchBatch) -> torch.Tensor:
        features, _ = self.sequence(batch)
        return torch.sigmoid(self.head(features))

    def attention_one(self, points: torch.Tensor) -> torch.Tensor:
        """The attention of one normalised sketch ``(N, 3)`` -> ``(N, C)`` without packed sequences
        (:meth:`BiLSTM.forward_one`): the exportable form of :meth:`forward` (equal within 1e-6, tested)."""
        return torch.sigmoid(self.head(self.sequence.rnn.forward_one(sketch_offsets(points))))


class StrokeAttentionEncoder(AttentionEncoder):
    """Stroke-level attention (beyond the paper; issue 16): the RNN still reads every point, but the head's
    per-point logits are averaged over each stroke before the sigmoid, so all points of a stroke get one value.
    The CNN then sees each stroke at one brightness: attention can only say which strokes matter, not where
    along a stroke, which is the granularity of the time-encoded image's stroke-order channel.

    ``forward(batch)`` -> attention ``(P, C)`` in ``(0, 1)``, constant within every stroke."""

    def forward(self, batch: SketchBatch) -> torch.Tensor:
        features, _ = self.sequence(batch)
        logits = self.head(features)
        stroke = stroke_index(batch.points, batch.offsets)
        n = int(stroke[-1]) + 1 if len(stroke) else 0
        sums = logits.new_zeros(n, logits.shape[1]).index_add_(0, stroke, logits)
        counts = torch.bincount(stroke, minlength=n).to(logits.dtype)
        return torch.sigmoid((sums / counts[:, None])[stroke])
