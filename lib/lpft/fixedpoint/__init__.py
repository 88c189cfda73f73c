"""8-bit fixed-point arithmetic after F8Net (Jin et al., ICLR 2022, arXiv 2202.05239; official code
github.com/snap-research/F8Net), and integer-only LP / FT / LP-FT digit networks.

A fixed-point number with fractional length FL is ``x = q · 2^-FL``, ``q`` an 8-bit integer: signed
``q ∈ [-127, 127]`` (FL ∈ 0..7) or unsigned ``q ∈ [0, 255]`` (FL ∈ 0..8, used after a ReLU). A layer multiplies
8-bit integers, sums them exactly in int32 at ``FL_x + FL_w``, and moves the sum to the next layer's FL by a bit shift
with round-half-to-even and saturation: no floating point and no int32 multiplier at inference (F8Net's integer-only
mode, ``int_op_only_fix_quant`` in its ``models/fix_quant_ops.py``).

One module per concept; callers import the module they need (``from lpft.fixedpoint import kernel``):

* :mod:`lpft.fixedpoint.qformat`: the format (:func:`~lpft.fixedpoint.qformat.quantize`, the σ rule
  :func:`~lpft.fixedpoint.qformat.fl_std_rule`, :func:`~lpft.fixedpoint.qformat.fl_grid_search`);
* :mod:`lpft.fixedpoint.kernel`: the integer linear and convolution kernels
  (:func:`~lpft.fixedpoint.kernel.fixed_point_linear`, written so that ``torch.compile`` fuses its requantisation
  epilogue into one loop), requantisation, and the plain int64 / float64 oracle
  (:func:`~lpft.fixedpoint.kernel.reference_linear`) the kernel is checked against bit for bit;
* :mod:`lpft.fixedpoint.network`: the integer operations of the digit network (GroupNorm, pooling, integer square
  root) and :class:`~lpft.fixedpoint.network.FixedPointDigitNet`, the integer-only version of a trained
  :class:`~lpft.digits.DigitNet`;
* :mod:`lpft.fixedpoint.deploy`: the experiment: the digit chapter's selected models deployed per seed, one record
  each, and the tables of the fixed-point chapter.
"""
