"""The attention encoder (paper Sec. 3.2): RNN input, packed <-> padded layout, and the flipped-sequence BiLSTM
against ``nn.LSTM(bidirectional=True)`` on packed sequences (the oracle)."""

import pytest
import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from r2cnn.models.encoder import AttentionEncoder, BiLSTM, PackedLayout, point_offsets
from r2cnn.sketch import SketchBatch


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Small LSTMs gain nothing from intra-op threads; on a shared machine 2 spinning threads cost far more."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _offsets(lengths):
    lengths = torch.as_tensor(lengths, dtype=torch.int64)
    offsets = torch.zeros(len(lengths) + 1, dtype=torch.int64)
    offsets[1:] = lengths.cumsum(0)
    return offsets


def _batch(lengths, seed=0):
    g = torch.Generator().manual_seed(seed)
    offsets = _offsets(lengths)
    points = torch.rand(int(offsets[-1]), 3, generator=g) * 2 - 1
    points[:, 2] = (torch.rand(len(points), generator=g) < 0.2).float()
    return SketchBatch(points, offsets, torch.zeros(len(lengths), dtype=torch.int64))


def _packed_reference(lstm: nn.LSTM, x: torch.Tensor, offsets: torch.Tensor):
    """nn.LSTM on a PackedSequence; returns packed-order outputs (P, 2H) and top-layer h_n as (B, 2H)."""
    layout = PackedLayout.from_offsets(offsets)
    lengths = offsets[1:] - offsets[:-1]
    packed = pack_padded_sequence(layout.pad(x), lengths, batch_first=True, enforce_sorted=False)
    out, (h, _) = lstm(packed)
    out, _ = pad_packed_sequence(out, batch_first=True, total_length=layout.max_len)
    return layout.unpad(out), torch.cat([h[-2], h[-1]], dim=1)


def test_point_offsets_first_point_from_origin_and_no_crossing():
    points = torch.tensor([[0.5, 0.5, 0], [0.6, 0.4, 1], [-0.2, 0.1, 1], [0.3, -0.3, 0], [0.1, -0.1, 1]])
    offsets = torch.tensor([0, 3, 5])
    got = point_offsets(points, offsets)
    want = torch.tensor([[0.5, 0.5, 0], [0.1, -0.1, 1], [-0.8, -0.3, 1],   # sketch 0: first point from origin
                         [0.3, -0.3, 0], [-0.2, 0.2, 1]])                 # sketch 1 starts again from the origin
    assert torch.allclose(got, want, atol=1e-6)


def test_layout_pad_unpad_roundtrip_and_reverse():
    offsets = _offsets([3, 1, 4])
    x = torch.arange(8, dtype=torch.float32)[:, None]
    layout = PackedLayout.from_offsets(offsets)
    padded = layout.pad(x)
    assert padded.shape == (3, 4, 1)
    assert padded[:, :, 0].tolist() == [[0, 1, 2, 0], [3, 0, 0, 0], [4, 5, 6, 7]]
    rev = layout.pad(x, reverse=True)
    assert rev[:, :, 0].tolist() == [[2, 1, 0, 0], [3, 0, 0, 0], [7, 6, 5, 4]]
    assert torch.equal(layout.unpad(padded), x)
    assert torch.equal(layout.unpad(rev, reverse=True), x)


def _twin_lstms(lengths, hidden):
    """A batch of ``lengths``, its RNN input, and an nn.LSTM with a BiLSTM holding the same weights."""
    torch.manual_seed(0)
    batch = _batch(lengths)
    x = point_offsets(batch.points, batch.offsets)
    ref = nn.LSTM(3, hidden, num_layers=2, bidirectional=True, batch_first=True)
    mine = BiLSTM(3, hidden, num_layers=2)
    mine.load_lstm_state_dict(ref.state_dict())
    return batch, x, ref, mine


@pytest.mark.parametrize("lengths", [[5, 1, 17, 9, 17, 2], [1], [40, 3]])
def test_bilstm_equals_packed_bidirectional_lstm(lengths):
    batch, x, ref, mine = _twin_lstms(lengths, 24)
    x_ref, x_mine = x.clone().requires_grad_(), x.clone().requires_grad_()
    out_ref, final_ref = _packed_reference(ref, x_ref, batch.offsets)
    out, final = mine(x_mine, PackedLayout.from_offsets(batch.offsets))
    assert out.shape == (len(x), 48) and final.shape == (len(lengths), 48)
    assert torch.allclose(out, out_ref, atol=1e-5)
    assert torch.allclose(final, final_ref, atol=1e-5)
    # gradients agree too (the backward direction really is the reversed sequence, not padding)
    w = torch.randn_like(out)
    (out * w).sum().backward()
    (out_ref * w).sum().backward()
    assert torch.allclose(x_mine.grad, x_ref.grad, atol=1e-5)


def test_dropout_only_between_layers_and_only_in_training():
    torch.manual_seed(0)
    batch = _batch([6, 4])
    enc = AttentionEncoder(hidden_size=16, num_layers=2, dropout=0.5)
    enc.eval()
    assert torch.equal(enc(batch), enc(batch))
    enc.train()
    assert not torch.equal(enc(batch), enc(batch))
    single = AttentionEncoder(hidden_size=16, num_layers=1, dropout=0.5).train()
    assert torch.equal(single(batch), single(batch))  # like nn.LSTM: no dropout after the last layer


def test_attention_encoder_shape_range_and_channels():
    batch = _batch([7, 3, 12])
    att = AttentionEncoder(hidden_size=8, num_layers=2, dropout=0.0, channels=3)(batch)
    assert att.shape == (22, 3)
    assert bool(((att > 0) & (att < 1)).all())


@pytest.mark.parametrize("lengths", [[5, 1, 17, 9, 17, 2], [1], [0, 4, 0], [3, 120, 7, 7, 45, 60, 2, 1, 90, 33] * 4])
def test_bucketed_bilstm_equals_packed_bidirectional_lstm(lengths):
    """Length buckets (several padded blocks, sketches sorted longest first) change only the GEMMs' blocking: the
    outputs, final states and gradients are still those of the packed nn.LSTM, in batch order, empty sketches
    included."""
    batch, x, ref, mine = _twin_lstms(lengths, 16)
    layout = PackedLayout.from_offsets(batch.offsets, buckets=True)
    if len(lengths) == 40:
        assert len(layout.groups) > 1  # the long batch really is cut into blocks
    assert sum(n for n, _ in layout.groups) == len(lengths)
    x_ref, x_mine = x.clone().requires_grad_(), x.clone().requires_grad_()
    out, final = mine(x_mine, layout)
    nonempty = [i for i, n in enumerate(lengths) if n]
    keep = torch.tensor(nonempty)
    sub_offsets = _offsets([lengths[i] for i in nonempty])
    out_ref, final_ref = _packed_reference(ref, x_ref, sub_offsets)
    assert torch.allclose(out, out_ref, atol=1e-5)
    assert torch.allclose(final[keep], final_ref, atol=1e-5)
    assert not final[[i for i, n in enumerate(lengths) if not n]].any()
    w = torch.randn_like(out)
    (out * w).sum().backward()
    (out_ref * w).sum().backward()
    assert torch.allclose(x_mine.grad, x_ref.grad, atol=1e-5)


def test_length_buckets_cut_long_from_short_and_keep_one_block_for_equal_lengths():
    from r2cnn.models.encoder import length_buckets

    assert length_buckets([30] * 64) == [64]
    sizes = length_buckets([300] + [40] * 63)
    assert sizes == [1, 63]
    assert sum(length_buckets(sorted(range(1, 65), reverse=True))) == 64


def test_sequence_encoder_on_one_thread_gives_the_same_outputs_and_gradients():
    """On a CPU with several threads the encoder runs its LSTMs on one thread, forward and backward (a custom
    autograd node); outputs and every parameter's gradient equal the plain run's, and the caller's thread count is
    restored."""
    from r2cnn.models.encoder import SequenceEncoder

    torch.manual_seed(0)
    batch = _batch([5, 1, 17, 9, 0, 2])
    enc = SequenceEncoder(hidden_size=12, num_layers=2, dropout=0.0)
    torch.set_num_threads(1)  # the plain path
    out1, fin1 = enc(batch)
    ((out1 ** 2).sum() + fin1.sum()).backward()
    plain = {n: p.grad.clone() for n, p in enc.named_parameters()}
    enc.zero_grad()
    torch.set_num_threads(2)
    try:
        out2, fin2 = enc(batch)
        assert out2.grad_fn is not None and torch.get_num_threads() == 2
        ((out2 ** 2).sum() + fin2.sum()).backward()
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(1)
    assert torch.allclose(out1, out2, atol=1e-6) and torch.allclose(fin1, fin2, atol=1e-6)
    for n, p in enc.named_parameters():
        assert torch.allclose(p.grad, plain[n], atol=1e-5), n
    enc.zero_grad()  # an outer graph kept with retain_graph can be differentiated twice, as without the node
    torch.set_num_threads(2)
    try:
        out3, _ = enc(batch)
        loss = (out3 ** 2).sum()
        loss.backward(retain_graph=True)
        once = {n: p.grad.clone() for n, p in enc.named_parameters()}
        loss.backward()
    finally:
        torch.set_num_threads(1)
    for n, p in enc.named_parameters():
        assert torch.allclose(p.grad, 2 * once[n], atol=1e-5), n


def test_encoder_stays_fp32_under_cpu_autocast():
    """On the CPU only the CNN runs in bf16: under CPU autocast the attention (LSTM and head) is still fp32 and equal
    to the plain run, while a plain Linear in the same context would give bf16."""
    torch.manual_seed(0)
    batch = _batch([7, 3, 12])
    enc = AttentionEncoder(hidden_size=8, num_layers=2, dropout=0.0).eval()
    plain = enc(batch)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        att = enc(batch)
        assert nn.Linear(3, 2)(torch.rand(4, 3)).dtype == torch.bfloat16
    assert att.dtype == torch.float32 and torch.equal(att, plain)


def test_amp_dtype_uses_bf16_on_the_cpu_only_where_it_is_native(monkeypatch):
    import r2cnn.engine.precision as P

    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    monkeypatch.setattr(P, "cpu_bf16_native", lambda: True)
    assert P.amp_dtype({"amp": "bf16"}, cpu) == torch.bfloat16
    assert P.amp_dtype({"amp": "fp16"}, cpu) is None and P.amp_dtype({"amp": "none"}, cpu) is None
    monkeypatch.setattr(P, "cpu_bf16_native", lambda: False)
    assert P.amp_dtype({"amp": "bf16"}, cpu) is None
    assert P.amp_dtype({"amp": "bf16"}, cuda) == torch.bfloat16 and P.amp_dtype({"amp": "fp16"}, cuda) == torch.float16


def test_contrast_attention_spreads_every_sketch_and_export_form_agrees():
    """The contrast design standardises the logits within each sketch: at initialisation every sketch's attention
    spans most of (0, 1) whatever the RNN gives, and ``attention_one`` (export) equals the batch form per sketch."""
    from r2cnn.models.encoder import ContrastAttentionEncoder

    torch.manual_seed(0)
    lengths = [7, 3, 12, 1]
    batch = _batch(lengths)
    enc = ContrastAttentionEncoder(hidden_size=8, num_layers=2, dropout=0.0).eval()
    att = enc(batch)
    assert att.shape == (23, 1) and bool(((att > 0) & (att < 1)).all())
    start = 0
    for n in lengths:
        a = att[start:start + n, 0]
        if n > 2:
            assert float((a.max() - a.min()).detach()) > 0.5  # a plain sigmoid head at init spans a few hundredths
        else:
            assert n == 3 or torch.allclose(a, torch.sigmoid(enc.bias))  # one point: sigmoid(b)
        one = enc.attention_one(batch.points[start:start + n])
        assert torch.allclose(one, att[start:start + n], atol=1e-5)
        start += n
