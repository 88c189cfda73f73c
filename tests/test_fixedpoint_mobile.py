"""The integer-only EfficientNet-Lite0 (lpft.fixedpoint.mobile): each integer operation against a plain int64 /
float64 reference, the network against its float64 simulation and the float model, eager against torch.compile."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lpft import efficientnet
from lpft.fixedpoint import mobile
from lpft.task import Classifier


def _randomised(backbone):
    """Random running statistics, so that the folded BatchNorms are not the identity."""
    g = torch.Generator().manual_seed(1)
    for m in backbone.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.copy_(torch.rand(m.num_features, generator=g) * 0.4 - 0.2)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) * 1.5 + 0.5)
    return backbone.eval()


@pytest.fixture(scope="module")
def digit_net():
    torch.manual_seed(0)
    model = Classifier(_randomised(efficientnet.DigitBackbone(32)), 10).eval()
    x = torch.rand(4, 1, 8, 8, generator=torch.Generator().manual_seed(2))
    return model, mobile.FixedPointLite0(model, x), x


# ---- the integer operations ----------------------------------------------------------------------------------------

@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(h=st.integers(1, 9), w=st.integers(1, 9), c=st.integers(1, 6), k=st.sampled_from([3, 5]),
       stride=st.sampled_from([1, 2]), signed=st.booleans(), seed=st.integers(0, 2**16))
def test_depthwise_matches_int64_reference(h, w, c, k, stride, signed, seed):
    g = torch.Generator().manual_seed(seed)
    lo, hi = (-127, 128) if signed else (0, 256)
    x = torch.randint(lo, hi, (2, h, w, c), generator=g).to(torch.int8 if signed else torch.uint8)
    wq = torch.randint(-127, 128, (c, 1, k, k), generator=g).to(torch.int8)
    b = torch.randint(-10**6, 10**6, (c,), generator=g).to(torch.int32)
    acc = mobile.integer_depthwise(x, wq, b, stride)
    assert acc.dtype == torch.int32 and acc.shape == (2, -(-h // stride), -(-w // stride), c)
    assert torch.equal(acc.to(torch.int64), mobile.reference_depthwise(x, wq, b, stride))


def test_same_pads_reproduce_sameconv_and_depthwise_matches_float_conv():
    g = torch.Generator().manual_seed(3)
    for n, k, s in [(8, 3, 2), (7, 3, 2), (9, 5, 2), (6, 5, 1), (3, 5, 2)]:
        conv = efficientnet.SameConv(4, 4, k, s, groups=4)
        x = torch.randint(0, 256, (1, n, n, 4), generator=g).to(torch.uint8)
        wq = torch.randint(-127, 128, (4, 1, k, k), generator=g).to(torch.int8)
        with torch.no_grad():
            conv.weight.copy_(wq.float())
            expected = conv(x.permute(0, 3, 1, 2).double().float()).permute(0, 2, 3, 1)   # exact: |acc| < 2^24
        acc = mobile.integer_depthwise(x, wq, torch.zeros(4, dtype=torch.int32), s)
        assert torch.equal(acc.float(), expected), (n, k, s)


def test_stem_matches_float64_convolution():
    g = torch.Generator().manual_seed(4)
    x = torch.randint(0, 256, (2, 9, 8, 3), generator=g).to(torch.uint8)
    wq = torch.randint(-127, 128, (5, 3, 3, 3), generator=g).to(torch.int8)
    b_map = torch.randint(-1000, 1000, (5, 4, 5), generator=g).to(torch.int32)   # (H', W', O)
    acc = mobile.integer_stem(x, wq, b_map, 2)
    pads = mobile.same_pads(9, 8, 3, 2)
    ref = F.conv2d(F.pad(x.permute(0, 3, 1, 2).double(), pads), wq.double(), None, 2).permute(0, 2, 3, 1) + b_map
    assert torch.equal(acc.double(), ref)


@settings(max_examples=40, deadline=None)
@given(fl_acc=st.integers(6, 15), log2p=st.integers(0, 3), fl_y=st.integers(0, 8), seed=st.integers(0, 2**16))
def test_pooled_relu6_rounds_once_like_the_reference(fl_acc, log2p, fl_y, seed):
    g = torch.Generator().manual_seed(seed)
    side = 2**log2p
    clip = 6 * 2**fl_acc
    acc = torch.randint(-clip, 2 * clip, (3, side, side, 7), generator=g).to(torch.int32)
    log2_positions = 2 * log2p
    got = mobile.pooled_relu6(acc, fl_acc, log2_positions, fl_y, clip)
    assert torch.equal(got, mobile.reference_pooled_relu6(acc, fl_acc, log2_positions, fl_y, clip))


def test_relu6_codes_clip_at_six_only_where_the_format_reaches_it():
    acc = torch.tensor([-5, 0, 100, 10**6], dtype=torch.int32)
    assert mobile.relu6_codes(acc, 0, 5).tolist() == [0, 0, 100, 192]      # 6 · 2^5 = 192 < 255: ReLU6
    assert mobile.relu6_codes(acc, 0, 6).tolist() == [0, 0, 100, 255]      # 255 · 2^-6 ≈ 3.98 < 6: the format's clip


# ---- the network ---------------------------------------------------------------------------------------------------

def test_integer_network_equals_its_float64_simulation(digit_net):
    model, net, x = digit_net
    logits = net.integer_logits(net.quantize_input(x))
    assert logits.dtype == torch.int32
    assert torch.equal(logits.double() * 2.0 ** -(net.fl_features + net.fl_classifier), net.simulate(x))


def test_simulation_with_every_layer_float_is_the_float_model():
    """With every layer exact only the pixel quantisation is left; on inputs already on the pixel grid the
    simulation is the float model in float64: checks the folded BatchNorms, the stem's scale and positional bias
    (TF "same" padding in the [-1, 1] convention) and the pooled ReLU6, at 96 px (3×3 = 9 positions, not a power of
    two, so the folded factor 16/9 is exercised)."""
    torch.manual_seed(0)
    backbone = _randomised(efficientnet.Lite0Features())
    p = torch.randint(0, 256, (2, 3, 96, 96), generator=torch.Generator().manual_seed(5)).double()
    v = 2 * p / 255 - 1
    net = mobile.FixedPointLite0(backbone, v.float())
    assert net.layers[-1]["log2_positions"] == 3
    with torch.no_grad():
        expected = backbone.double().pooled(v)
    got = net.simulate(v, set(net.exact))
    assert torch.allclose(got, expected, rtol=1e-9, atol=1e-9)
    assert torch.equal(net.integer_features(net.quantize_input(v.float())).double() * 2.0 ** -net.fl_features,
                       net.simulate(v))


def test_eager_and_compiled_are_bit_identical():
    """On a three-block Lite0 (every kind of layer: the stem, a block without expansion, a stride-2 block, a block
    with its residual add, the head convolution and pooling, the classifier); compiling the full network takes
    minutes and is done by benchmarks/fixedpoint_lite0.py."""
    torch.manual_seed(0)
    backbone = efficientnet.DigitBackbone(32)
    backbone._blocks = torch.nn.ModuleList(list(backbone._blocks)[:3])
    backbone._conv_head = efficientnet.SameConv(24, efficientnet.FEATURE_DIM, 1)
    x = torch.rand(4, 1, 8, 8, generator=torch.Generator().manual_seed(2))
    net = mobile.FixedPointLite0(Classifier(_randomised(backbone), 10), x)
    assert [layer["kind"] for layer in net.layers] == ["stem", "depthwise", "project", *["expand", "depthwise",
                                                                                        "project"] * 2, "head"]
    assert net.layers[-2]["residual"]
    q = net.quantize_input(x)
    compiled = torch.compile(net.integer_logits, fullgraph=True, dynamic=False)
    assert torch.equal(compiled(q), net.integer_logits(q))


def test_integer_logits_track_the_float_model(digit_net):
    model, net, x = digit_net
    with torch.no_grad():
        lf = model(x)
    li = net(x).double() * 2.0 ** -(net.fl_features + net.fl_classifier)
    assert (li - lf).abs().max() < 0.1 * lf.abs().max() + 0.01


def test_bad_inputs_name_the_fix():
    with pytest.raises(TypeError, match="lpft.efficientnet"):
        mobile.FixedPointLite0(torch.nn.Linear(2, 2), torch.zeros(1, 2))
    backbone = efficientnet.DigitBackbone(32)
    with pytest.raises(ValueError, match="activation_rule"):
        mobile.FixedPointLite0(backbone, torch.rand(2, 1, 8, 8), activation_rule="max")
    net = mobile.FixedPointLite0(backbone, torch.rand(2, 1, 8, 8))
    with pytest.raises(ValueError, match="integer_features"):
        net.integer_logits(net.quantize_input(torch.rand(2, 1, 8, 8)))
    with pytest.raises(ValueError, match="unknown layer"):
        net.simulate(torch.rand(2, 1, 8, 8), {"nope"})
