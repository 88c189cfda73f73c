"""The 8-bit fixed-point format, kernel and integer-only network (lpft.fixedpoint) against plain references."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lpft.fixedpoint import deploy, kernel, network, qformat
from lpft.digits import DigitNet


# ---- format --------------------------------------------------------------------------------------------------------

def test_quantize_rounds_half_to_even_and_saturates():
    x = torch.tensor([0.5, 1.5, 2.5, -0.5, -1.5, 126.5, 127.5, 1e6, -1e6])
    assert qformat.quantize(x, 0, True).tolist() == [0, 2, 2, 0, -2, 126, 127, 127, -127]
    assert qformat.quantize(x, 0, False).tolist() == [0, 2, 2, 0, 0, 126, 128, 255, 0]
    assert qformat.quantize(torch.tensor([0.25, 0.375]), 3, True).tolist() == [2, 3]   # 2.0, 3.0 exact
    assert qformat.quantize(x, 0, True).dtype == torch.int8 and qformat.quantize(x, 0, False).dtype == torch.uint8


def test_std_rule_closed_form_and_clamps():
    # floor(log2(40 / 0.3)) = floor(7.06) = 7; floor(log2(40/1)) = 5; floor(log2(70/1)) = 6
    assert qformat.fl_std_rule(0.3, True) == 7 and qformat.fl_std_rule(1.0, True) == 5
    assert qformat.fl_std_rule(1.0, False) == 6
    assert qformat.fl_std_rule(1e-6, True) == 7 and qformat.fl_std_rule(1e-6, False) == 8  # clamped at 8 - signed
    assert qformat.fl_std_rule(1e6, True) == 0                                           # clamped below at 0
    # the threshold: σ = 40 / 2^FL is the largest σ with that FL
    for fl in range(1, 7):
        assert qformat.fl_std_rule(40 / 2**fl, True) == fl and qformat.fl_std_rule(40 / 2**fl * 1.001, True) == fl - 1


def test_grid_search_is_the_brute_force_minimum():
    g = torch.Generator().manual_seed(0)
    for sigma in (0.01, 0.1, 1.0, 5.0):
        x = torch.randn(20000, generator=g, dtype=torch.float64) * sigma
        errors = [qformat.quantization_mse(x, fl, True) for fl in range(8)]
        assert errors[qformat.fl_grid_search(x, True)] == min(errors)
        # the σ rule lands within one FL of the optimum on Gaussian data (the chapter's sweep: they agree on almost
        # every σ)
        assert abs(qformat.choose_fl(x, True, "std") - qformat.fl_grid_search(x, True)) <= 1
    with pytest.raises(ValueError, match="rule"):
        qformat.choose_fl(x, True, "mean")


# ---- kernel vs oracle ----------------------------------------------------------------------------------------------

def _random_case(rng: np.random.Generator, m: int, k: int, n: int, unsigned: bool, bias_scale: int):
    x = rng.integers(0, 256, (m, k)) if unsigned else rng.integers(-127, 128, (m, k))
    w = rng.integers(-127, 128, (n, k))
    b = rng.integers(-bias_scale, bias_scale + 1, n)
    return (torch.tensor(x, dtype=torch.uint8 if unsigned else torch.int8), torch.tensor(w, dtype=torch.int8),
            torch.tensor(b, dtype=torch.int32))


_compiled = torch.compile(kernel.fixed_point_linear, fullgraph=True, dynamic=True)
# Each (shift, out_signed) is a constant baked into its own compiled graph: a few shifts keep the compile time small.
# Sizes of 1 are specialised by dynamo (another graph each): the compiled test draws sizes >= 2, and size-1 cases
# run compiled in the tie and saturation tests below.
COMPILED_SHIFTS = (-3, 0, 1, 6, 31)


@pytest.fixture(autouse=True, scope="module")
def _no_silent_eager_fallback():
    """Past its recompile limit dynamo would quietly run the eager function: make that an error instead."""
    config = torch._dynamo.config
    saved = config.recompile_limit, config.fail_on_recompile_limit_hit
    config.recompile_limit, config.fail_on_recompile_limit_hit = 64, True
    yield
    config.recompile_limit, config.fail_on_recompile_limit_hit = saved


@settings(max_examples=1500, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(m=st.integers(1, 40), k=st.integers(1, 300), n=st.integers(1, 40), unsigned=st.booleans(),
       shift=st.integers(kernel.MIN_SHIFT, kernel.MAX_SHIFT), out_signed=st.booleans(), seed=st.integers(0, 2**32 - 1),
       bias_log=st.integers(0, 24))
def test_eager_kernel_is_bit_exact_with_the_reference(m, k, n, unsigned, shift, out_signed, seed, bias_log):
    x, w, b = _random_case(np.random.default_rng(seed), m, k, n, unsigned, 2**bias_log)
    got = kernel.fixed_point_linear(x, w, b, shift, out_signed=out_signed)
    assert got.dtype == (torch.int8 if out_signed else torch.uint8)
    assert torch.equal(got, kernel.reference_linear(x, w, b, shift, out_signed=out_signed))


@settings(max_examples=1500, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(m=st.integers(2, 40), k=st.integers(2, 300), n=st.integers(2, 40), unsigned=st.booleans(),
       shift=st.sampled_from(COMPILED_SHIFTS), out_signed=st.booleans(), seed=st.integers(0, 2**32 - 1),
       bias_log=st.integers(0, 24))
def test_compiled_kernel_is_bit_exact_with_the_reference(m, k, n, unsigned, shift, out_signed, seed, bias_log):
    x, w, b = _random_case(np.random.default_rng(seed), m, k, n, unsigned, 2**bias_log)
    assert torch.equal(_compiled(x, w, b, shift, out_signed=out_signed),
                       kernel.reference_linear(x, w, b, shift, out_signed=out_signed))


def test_ties_round_to_even_in_both_directions():
    # one input, weight 1: the accumulator is the bias, so every tie value can be placed exactly
    x = torch.ones(1, 1, dtype=torch.int8)
    w = torch.ones(1, 1, dtype=torch.int8)
    for shift in (1, 6):
        for acc in range(-40 * 2**shift, 40 * 2**shift + 1):
            b = torch.tensor([acc - 1], dtype=torch.int32)
            expected = max(-127, min(127, round(acc / 2**shift)))   # Python round: half to even
            assert kernel.fixed_point_linear(x, w, b, shift).item() == expected, (acc, shift)
            assert _compiled(x, w, b, shift).item() == expected, (acc, shift)


def test_saturation_at_both_ends_and_no_wraparound():
    k = kernel.max_reduction_length(torch.uint8)
    x = torch.full((2, k), 255, dtype=torch.uint8)
    w = torch.stack([torch.full((k,), 127, dtype=torch.int8), torch.full((k,), -127, dtype=torch.int8)])
    b = torch.zeros(2, dtype=torch.int32)
    acc = kernel.integer_linear(x, w, b)
    assert acc[0, 0].item() == 255 * 127 * k and acc[0, 1].item() == -255 * 127 * k   # no int32 wrap at the limit
    for shift in (0, 3, 31, -5):
        assert kernel.fixed_point_linear(x, w, b, shift).tolist() == kernel.reference_linear(x, w, b, shift).tolist()
    assert kernel.fixed_point_linear(x, w, b, 0).tolist() == [[127, -127]] * 2
    assert kernel.fixed_point_linear(x, w, b, 0, out_signed=False).tolist() == [[255, 0]] * 2


def test_refuses_overflowing_shapes_and_bad_input():
    k = kernel.max_reduction_length(torch.uint8) + 1
    x = torch.zeros(1, k, dtype=torch.uint8)
    w = torch.zeros(1, k, dtype=torch.int8)
    with pytest.raises(ValueError, match="too long for an int32 accumulator"):
        kernel.fixed_point_linear(x, w, torch.zeros(1, dtype=torch.int32), 2)
    assert kernel.max_reduction_length(torch.int8) == (2**31 - 1) // (128 * 128)
    x, w = torch.zeros(2, 4, dtype=torch.uint8), torch.zeros(3, 4, dtype=torch.int8)
    with pytest.raises(ValueError, match="bias"):
        kernel.fixed_point_linear(x, w, torch.full((3,), 2**31 - 1, dtype=torch.int32), 2)
    with pytest.raises(TypeError, match="x_q must be int8 or uint8"):
        kernel.fixed_point_linear(x.float(), w, torch.zeros(3, dtype=torch.int32), 2)
    with pytest.raises(TypeError, match="int32"):
        kernel.fixed_point_linear(x, w, torch.zeros(3, dtype=torch.int64), 2)
    with pytest.raises(ValueError, match="shapes do not match"):
        kernel.fixed_point_linear(x, w, torch.zeros(2, dtype=torch.int32), 2)
    for bad in (2.0, True, 40, -30):
        with pytest.raises(ValueError, match="shift"):
            kernel.fixed_point_linear(x, w, torch.zeros(3, dtype=torch.int32), bad)


def test_compiled_epilogue_is_one_fused_loop():
    """Inductor's generated code for the compiled kernel: the GEMM stays an extern call (on CPU ATen's int32 product,
    after one kernel that widens the operands) and everything after it (rounding shift, clamp, cast) is a single
    kernel."""
    from torch._inductor.utils import run_and_get_code

    torch._dynamo.reset()
    rng = np.random.default_rng(0)
    x, w, b = _random_case(rng, 64, 128, 32, True, 2**10)
    fn = torch.compile(lambda x, w, b: kernel.fixed_point_linear(x, w, b, 6, out_signed=False), fullgraph=True)
    _, codes = run_and_get_code(fn, x, w, b)
    code = "\n".join(codes)
    body = code[code.index("def call("):].splitlines()
    gemm = [i for i, line in enumerate(body) if "extern_kernels." in line and "mm(" in line]
    assert len(gemm) == 1, code
    after = [line for line in body[gemm[0] + 1:] if line.strip().startswith("cpp_fused")]
    assert len(after) == 1, code


def test_conv2d_matches_float_convolution_on_integers():
    g = torch.Generator().manual_seed(1)
    x = torch.randint(0, 256, (3, 5, 6, 6), generator=g, dtype=torch.uint8)
    w = torch.randint(-127, 128, (4, 5, 3, 3), generator=g, dtype=torch.int8)
    b = torch.randint(-1000, 1000, (4,), generator=g, dtype=torch.int32)
    for shift, padding in [(9, 1), (0, 0), (12, 1)]:
        exact = torch.nn.functional.conv2d(x.double(), w.double(), b.double(), padding=padding)   # exact in float64
        expected = torch.from_numpy((exact.numpy() / 2.0**shift).round().clip(-127, 127)).to(torch.int8)
        assert torch.equal(kernel.fixed_point_conv2d(x, w, b, shift, padding=padding), expected)


# ---- integer helpers -----------------------------------------------------------------------------------------------

def test_isqrt_and_rounding_division_are_exact():
    rng = np.random.default_rng(3)
    values = np.concatenate([np.arange(1, 2000), rng.integers(1, 2**62, 3000),
                             np.array([n * n for n in rng.integers(1, 2**31, 500)] + [2**62 - 1])])
    d = torch.tensor(values, dtype=torch.int64)
    assert network.isqrt(d).tolist() == [math.isqrt(int(v)) for v in values]
    a = torch.tensor(rng.integers(-10**9, 10**9, 5000), dtype=torch.int64)
    b = torch.tensor(rng.integers(1, 10**4, 5000), dtype=torch.int64)
    a[:50] = b[:50] * torch.arange(-25, 25) + b[:50] // 2 * (b[:50] % 2 == 0)     # exact ties
    from fractions import Fraction
    assert network.round_half_even_div(a, b).tolist() == [round(Fraction(int(p), int(q))) for p, q in zip(a, b)]


def test_integer_group_norm_matches_float_group_norm():
    g = torch.Generator().manual_seed(2)
    fl_in, fl_out = 5, 6
    q = torch.randint(-127, 128, (4, 16, 4, 4), generator=g, dtype=torch.int8)
    norm = torch.nn.GroupNorm(4, 16)
    with torch.no_grad():
        norm.weight.uniform_(0.5, 1.5, generator=g)
        norm.bias.uniform_(-0.5, 0.5, generator=g)
    fl_gamma = qformat.choose_fl(norm.weight, True, "search")
    gamma_q = qformat.quantize(norm.weight, fl_gamma, True)
    beta_q = torch.round(norm.bias.double() * 2.0**fl_out).to(torch.int32)
    got = network.group_norm_int(q, 4, fl_in, gamma_q, fl_gamma, beta_q, fl_out, norm.eps)
    # the float GroupNorm with the same (quantised) γ, in float64, then ReLU and rounding to the output grid
    ref_norm = torch.nn.functional.group_norm(qformat.dequantize(q, fl_in).double(), 4,
                                              qformat.dequantize(gamma_q, fl_gamma)
                                              .double(), beta_q.double() * 2.0**-fl_out, norm.eps)
    expected = (ref_norm * 2**fl_out).round().clamp(0, 255)
    diff = (got.double() - expected).abs()
    assert diff.max() <= 1 and (diff > 0).double().mean() < 0.01   # off by one code only near rounding boundaries


def _rint_clip(values: np.ndarray, lo: int, hi: int) -> np.ndarray:
    return np.clip(np.rint(values), lo, hi)   # numpy rint: half to even


@pytest.mark.parametrize("hw", [(2, 2), (4, 4), (1, 2)])
def test_global_average_sums_in_int32_and_rounds_once(hw):
    rng = np.random.default_rng(4)
    scale = 2 ** rng.integers(3, 21, (64, 1, 1, 1))              # magnitudes from 2^3 to 2^20: in range and saturated
    acc = rng.integers(-scale, scale, (64, 8, *hw))
    log_p = int(np.log2(hw[0] * hw[1]))
    # exact ties of the single rounding at shift 6: the first 16 examples' sums are made k·D + D/2, D = 2^(6 + log2 P)
    d = 2 ** (6 + log_p)
    acc[:16] = np.abs(acc[:16]) % 2**9
    rest = acc[:16].sum(axis=(2, 3)) - acc[:16, :, 0, 0]
    acc[:16, :, 0, 0] = (rest // d + 1) * d + d // 2 - rest
    for shift in (-2, 0, 3, 6, 13):
        got = network.global_average_int(torch.tensor(acc, dtype=torch.int32), shift)
        # reference: ReLU and the sum in int64, the division by 2^(shift + log2 P) in float64 (exact), one rounding
        total = np.maximum(acc, 0).astype(np.int64).sum(axis=(2, 3))
        expected = _rint_clip(total.astype(np.float64) / 2.0 ** (shift + log_p), 0, 255)
        assert got.dtype == torch.uint8 and got.shape == (64, 8)
        assert got.numpy().astype(np.int64).tolist() == expected.astype(np.int64).tolist(), shift
    with pytest.raises(ValueError, match="power-of-two"):
        network.global_average_int(torch.zeros(1, 1, 3, 3, dtype=torch.int32), 0)


def test_rounding_once_differs_from_requantising_before_the_pool():
    # the double rounding the chapter measures: codes requantised per position, then the mean rounded again
    rng = np.random.default_rng(5)
    acc = torch.tensor(rng.integers(0, 2**12, (500, 16, 2, 2)), dtype=torch.int32)
    once = network.global_average_int(acc, 5)
    twice = network.global_average_int(kernel.requantize(acc, 5, out_signed=False).to(torch.int32), 0)
    differ = (once != twice).double().mean().item()
    assert 0.05 < differ < 0.5 and (once.int() - twice.int()).abs().max() == 1


def _group_norm_mean_reference(q, groups, gamma_q, fl_gamma, beta_q, fl_out, e):
    """GroupNorm + ReLU + mean over positions, exact in Fractions, rounded half to even once (Python round)."""
    from fractions import Fraction
    b, c, h, w = q.shape
    per = c // groups
    n = per * h * w
    out = np.zeros((b, c), dtype=np.int64)
    for i in range(b):
        for g in range(groups):
            vals = [int(v) for v in q[i, g * per:(g + 1) * per].reshape(-1)]
            s1, s2 = sum(vals), sum(v * v for v in vals)
            root = math.isqrt(n * s2 - s1 * s1 + e)
            for ch in range(g * per, (g + 1) * per):
                normed = [Fraction(int(gamma_q[ch]) * (n * int(v) - s1) * 2**fl_out, root * 2**fl_gamma)
                          + int(beta_q[ch]) for v in q[i, ch].reshape(-1)]
                mean = sum(max(x, 0) for x in normed) / (h * w)
                out[i, ch] = min(max(round(mean), 0), 255)
    return out


def test_group_norm_mean_pools_the_exact_normalised_values_and_rounds_once():
    g = torch.Generator().manual_seed(6)
    q = torch.randint(-127, 128, (6, 16, 2, 2), generator=g, dtype=torch.int8)
    gamma_q = torch.randint(-127, 128, (16,), generator=g, dtype=torch.int8)
    beta_q = torch.randint(-300, 300, (16,), generator=g, dtype=torch.int32)
    fl_in, fl_gamma, fl_out, eps = 5, 6, 6, 1e-5
    n = 4 * 2 * 2
    e = max(1, round(n * n * eps * 4.0**fl_in))
    got = network.group_norm_mean_int(q, 4, fl_in, gamma_q, fl_gamma, beta_q, fl_out, eps)
    expected = _group_norm_mean_reference(q.numpy(), 4, gamma_q.numpy(), fl_gamma, beta_q.numpy(), fl_out, e)
    assert got.dtype == torch.uint8 and got.numpy().astype(np.int64).tolist() == expected.tolist()
    # rounding per position first (group_norm_int, then the mean rounded again) is a different function
    twice = network.global_average_int(network.group_norm_int(q, 4, fl_in, gamma_q, fl_gamma, beta_q, fl_out, eps)
                                  .to(torch.int32), 0)
    assert not torch.equal(twice, got)
    with pytest.raises(ValueError, match="int8"):
        network.group_norm_mean_int(q.to(torch.int16), 4, fl_in, gamma_q, fl_gamma, beta_q, fl_out, eps)


def test_image_codes_are_round_255x():
    rng = np.random.default_rng(7)
    x = np.concatenate([np.arange(256) / 255, rng.random(10000)]).astype(np.float32)
    got = network.quantize_image(torch.tensor(x))
    assert got.dtype == torch.uint8
    assert got.numpy().astype(np.int64).tolist() == np.rint(x.astype(np.float64) * 255).astype(np.int64).tolist()
    assert got[:256].tolist() == list(range(256))
    for bad in (-0.01, 1.01):
        with pytest.raises(ValueError, match=r"\[0, 1\]"):
            network.quantize_image(torch.tensor([0.5, bad]))


# ---- integer-only network ------------------------------------------------------------------------------------------

def _reference_features(q: network.FixedPointDigitNet, x: torch.Tensor) -> np.ndarray:
    """The features of a norm-free FixedPointDigitNet recomputed from its integer weights and FLs: image codes
    round(255x), every convolution exact in float64, one rounding per layer (numpy rint), exact max pooling, and the
    last layer's ReLU'd accumulators averaged in float64 with a single rounding."""
    codes = np.rint(x.double().numpy() * 255)
    for i, layer in enumerate(q.layers):
        acc = torch.nn.functional.conv2d(torch.tensor(codes), getattr(q, f"w{i}").double(),
                                         getattr(q, f"b{i}").double(), padding=layer["padding"]).numpy()
        if i == len(q.layers) - 1:
            return _rint_clip(np.maximum(acc, 0).mean(axis=(2, 3)) / 2.0 ** layer["shift"], 0, 255)
        codes = _rint_clip(acc / 2.0 ** layer["shift"], 0, 255)
        if layer["pool"]:
            codes = torch.nn.functional.max_pool2d(torch.tensor(codes), 2).numpy()


def test_fixed_point_network_without_norm_equals_the_float64_reference():
    torch.manual_seed(3)
    model = DigitNet(10, "none").eval()
    x = torch.rand(300, 1, 8, 8)
    q = network.FixedPointDigitNet(model, x[:128])
    assert q.fl_input == 8 and q.fls()["layers"][-1]["fl_y"] == q.fl_features
    got = q.integer_features(q.quantize_input(x)).numpy().astype(np.int64)
    assert got.tolist() == _reference_features(q, x).astype(np.int64).tolist()
    assert len(np.unique(got)) > 10                                  # not a constant: the features spread


def test_first_layer_folds_256_over_255_and_variants_are_checked():
    torch.manual_seed(4)
    model = DigitNet(10, "group").eval()
    x = torch.rand(64, 1, 8, 8)
    q = network.FixedPointDigitNet(model, x)
    fl_w = q.layers[0]["fl_w"]
    assert torch.equal(q.w0, qformat.quantize(model.backbone.first[0].weight * (256 / 255), fl_w, True))
    sigma = network.FixedPointDigitNet(model, x, image="sigma")
    assert sigma.fl_input == qformat.choose_fl(x, False) and torch.equal(sigma.quantize_input(x),
                                                                     qformat.quantize(x, sigma.fl_input, False))
    for bad in ({"image": "float"}, {"pool": "thrice"}, {"activation_rule": "mse"}):
        with pytest.raises(ValueError, match="must be one of"):
            network.FixedPointDigitNet(model, x, **bad)


@pytest.mark.parametrize("norm", ["group", "none"])
def test_fixed_point_network_tracks_the_float_network(norm):
    torch.manual_seed(0)
    model = DigitNet(10, norm).eval()
    x = torch.rand(256, 1, 8, 8)
    q = network.FixedPointDigitNet(model, x[:128])
    logits = q(x)
    assert logits.dtype == torch.int32 and logits.shape == (256, 10)
    real = logits.double() * 2.0 ** -(q.fl_features + q.fl_head)
    with torch.no_grad():
        ref = model(x).double()
    assert torch.corrcoef(torch.stack([real.flatten(), ref.flatten()]))[0, 1] > 0.95
    feats = q.features(x)
    with torch.no_grad():
        assert ((feats - model.features(x)) ** 2).mean() < 0.05 * (model.features(x) ** 2).mean()
    compiled = torch.compile(q, fullgraph=True)
    assert torch.equal(compiled(x), logits)   # compiled integer network = eager integer network, bit for bit


def test_rule_sweep_reports_the_rule_and_the_brute_force_optimum():
    df = qformat.fl_rule_sweep([0.05, 0.3, 2.0, 40.0], 5000, signed=True, seed=0)
    for sigma, rows in df.groupby("sigma"):
        assert (rows["rule_FL"] == qformat.fl_std_rule(sigma, True)).all()
        assert rows.loc[rows["relative_rmse"].idxmin(), "FL"] == rows["best_FL"].iloc[0]
    assert set(df["FL"]) == set(range(8))
    unsigned = qformat.fl_rule_sweep([1.0], 5000, signed=False)
    assert set(unsigned["FL"]) == set(range(9)) and unsigned["rule_FL"].iloc[0] == 6   # floor(log2 70) = 6


def test_folded_batchnorm_is_the_same_function():
    torch.manual_seed(0)
    conv, bn = torch.nn.Conv2d(3, 5, 3, padding=1), torch.nn.BatchNorm2d(5)
    with torch.no_grad():
        bn.running_mean.uniform_(-1, 1)
        bn.running_var.uniform_(0.5, 2)
        bn.weight.uniform_(0.5, 1.5)
        bn.bias.uniform_(-0.5, 0.5)
    bn.eval()
    x = torch.randn(4, 3, 6, 6, dtype=torch.float64)
    w, b = kernel.fold_batchnorm(conv.double(), bn.double())
    with torch.no_grad():
        assert torch.allclose(torch.nn.functional.conv2d(x, w, b, padding=1), bn(conv(x)), atol=1e-12)


def test_residual_add_aligns_fractional_lengths_and_saturates():
    a = torch.tensor([3, -5, 2**30], dtype=torch.int32)      # at FL 2: 0.75, -1.25, 2^28
    b = torch.tensor([1, 1, 2**30], dtype=torch.int32)       # at FL 4: 0.0625, 0.0625, 2^26
    total, fl = kernel.residual_add(a, 2, b, 4)
    assert fl == 4 and total.dtype == torch.int32
    assert total[:2].tolist() == [3 * 4 + 1, -5 * 4 + 1]      # exact at the larger FL
    assert total[2].item() == 2**31 - 1                       # 2^32 + 2^30 saturates instead of wrapping


def test_deviations_compare_each_variant_with_the_faithful_network():
    from torch.utils.data import TensorDataset

    torch.manual_seed(5)
    model = DigitNet(10, "group").eval()
    x, y = torch.rand(192, 1, 8, 8), torch.randint(0, 10, (192,))
    splits = {"id": TensorDataset(x[:64], y[:64]), "ood": TensorDataset(x[64:128], y[64:128]),
              "natural": TensorDataset(x[128:], y[128:])}
    calibration = x[:128]
    fixed = network.FixedPointDigitNet(model, calibration)
    codes = {s: deploy._fixed_point_pass(fixed, d)[0] for s, d in splits.items()}
    out = deploy._deviations(model, fixed, calibration, splits, codes)
    assert set(out["variants"]) == set(deploy.VARIANTS)
    twice = network.FixedPointDigitNet(model, calibration, pool="twice")
    for s, d in splits.items():
        other = twice.integer_features(twice.quantize_input(d.tensors[0]))
        assert out["pooled_codes_differ"][s] == (other != codes[s]).double().mean().item()
        assert out["variants"]["pool: 8-bit codes rounded again"][s] == \
            (twice(d.tensors[0]).argmax(1) == d.tensors[1]).double().mean().item()
    assert 0 < out["pooled_codes_differ"]["id"] < 0.5            # the two poolings do differ, on a minority of codes
    assert "natural" not in out["variants"]["image: σ-rule FL"]
    assert 0 <= out["batch_fls_differ"] <= 1


def test_deploy_all_deploys_the_reported_models(tmp_path):
    """The deployment of a tiny digit experiment: one record per seed, holding exactly the methods and hyperparameters
    the experiment reports (chosen over seeds), whose float accuracy is the experiment's own ID-test accuracy."""
    from lpft import protocol
    from lpft.records import archive

    setup = dict(id_domain="mnist", ood_domain="uci", shift="invert", strength=1.0, n_train_per_class=8,
                 pool_shifts=[["invert", 1.0]], norm="group", pretraining="supervised", contrastive=None,
                 pretrain_epochs=1, pretrain_lr=1e-3, pretrain_seed=0, epochs=1, lp_C=[0.1, 1.0],
                 ft_lr=[1e-2, 3e-2], lpft_lr=[1e-3], wise_alpha=[0.5], l2sp_weight=[0.01], surgical=["last"],
                 eval_shifts=[["none", 0.0], ["invert", 1.0]], methods=["LP", "FT", "LP-FT"])
    records = deploy.deploy_all(setup, [0], tmp_path / "fxp", experiment_folder=tmp_path / "exp",
                                cache=tmp_path / "c", models=tmp_path / "m", n_calibration=deploy.BATCH, jobs=1)
    experiment = protocol.run_all(setup, [0], tmp_path / "exp", cache=tmp_path / "c", jobs=1)  # read back
    for record in records:
        seed = record["config"]["seed"]
        rows = {r["method"]: r for r in protocol.selected_rows(experiment) if r["seed"] == seed}
        assert set(record["results"]) == {"LP", "FT", "LP-FT", "seconds"}
        for method, row in rows.items():
            assert record["results"][method]["hp"] == row["hp"] == record["config"]["reported"][method]
            assert record["results"][method]["id"]["float"] == pytest.approx(row["id"])
    archive(records, tmp_path / "x", deploy.archive_name)
    assert [p.name for p in (tmp_path / "x").iterdir()] == ["seed0.json"]


GEMM_CHECK = """
import torch
from lpft.fixedpoint import kernel
g = torch.Generator().manual_seed(0)
w = torch.randint(-127, 128, (32, 96), generator=g).to(torch.int8)
for x in (torch.randint(0, 256, (64, 96), generator=g).to(torch.uint8),
          torch.randint(-127, 128, (64, 96), generator=g).to(torch.int8),
          torch.full((64, 96), 255, dtype=torch.uint8)):          # pairs of products beyond int16
    for w_ in (w, torch.full_like(w, 127), torch.full_like(w, -127)):
        assert torch.equal(kernel.int_mm(x, w_).long(), x.long() @ w_.long().T), (x.dtype, x[0, :4], w_[0, :4])
"""


@pytest.mark.parametrize("isa", ["AVX2", "AVX2_VNNI", "AVX512_CORE_VNNI", None])
def test_integer_gemm_is_exact_whatever_int8_kernels_the_cpu_offers(isa):
    """``torch._int_mm`` on a CPU with AVX512-VNNI, under the book's pinned ``ONEDNN_MAX_CPU_ISA=AVX2``, summed pairs
    of 8-bit products in saturating int16. The integer GEMM must be exact under every cap (each in a fresh process,
    since oneDNN reads the variable once); on a CPU without VNNI the caps change nothing and this passes trivially."""
    import os
    import subprocess
    import sys

    env = dict(os.environ)
    if isa is None:
        env.pop("ONEDNN_MAX_CPU_ISA", None)
    else:
        env["ONEDNN_MAX_CPU_ISA"] = isa
    done = subprocess.run([sys.executable, "-c", GEMM_CHECK], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
