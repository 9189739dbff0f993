"""SSML-QNet: Scale-Separative Metric Learning Quadruplet Network (Zhang et al.).

Architecture (paper), for a pair of 64x64 single-channel patches (a from the fixed image,
b from the moving image):

* four branches: a Siamese pair with shared weights applied to a and b, and a pseudo-Siamese
  pair (same layout, separate weights) applied to a and b; the first three convolutions of each
  branch are followed by instance norm, then batch norm, then ReLU;
* the four branch outputs are concatenated along channels;
* a scale-separative module splits the concatenation into four channel groups, convolves them
  with 3x3 / 5x5 / 7x7 / 9x9 kernels, and refines each group by coordinate attention then
  squeeze-excitation with a residual add;
* fusion: coordinate attention over the re-concatenated groups, a residual add, a 3x3 conv;
* global pooling, FC 512 -> 128 -> 2 (non-match, match); trained with cross-entropy.

Choices where the paper is silent (recorded here, as the design card asks):

* Branch layout: four conv3x3 stages reducing 64 px patches to 8x8 maps. ``paper``: widths
  (64, 128, 256, 256), 2x2 max-pool after stages 1-3, head width 512. ``lite``: widths
  (16, 32, 64, 32), stride-2 first conv and max-pool after stages 1-2, head width 64. (Session 1
  shipped half these widths, 11.8 MFLOP per pair: it under-fitted, training loss 0.55 after 6
  epochs; at this width a training step runs ~550 pairs/s on 2 CPU cores on synthetic batches,
  at least ~280 pairs/s in ``pipelines.train`` with its data handling.)
* The scale-separative module gives each kernel size ``head_width // 4`` output channels; the
  fusion conv maps back to ``head_width`` channels; global average *and* max pooling are
  concatenated, then a linear layer maps them to the 512-d vector the FC 512 -> 128 -> 2 takes.
* Coordinate attention reduction 8 (min 8 channels), squeeze-excitation reduction 4.
* Input normalisation: each patch is standardised (zero mean, unit std) inside :func:`embed`, so
  the network never sees absolute brightness (which differs across modalities anyway).
* The per-patch branch features are what :meth:`SSMLQNet.embed` returns, so a keypoint's features
  are computed once and reused for every candidate pair (:meth:`SSMLQNet.head`).
* Precision (inference only): :meth:`SSMLQNet.set_compute_dtype` lets the convolutions with
  more than one input channel (:class:`Conv`) multiply in bfloat16, accumulating in float32;
  the first convolution, the norms, attention and the classifier stay in float32
  (:mod:`register.score` decides when: docs/results.md, "Speed, session 18").

FLOPs per pair (multiply-adds x 2, counted by :func:`count_flops` at batch 1, 64x64 input):
``paper`` 2.52 GFLOP (1.53 in the two patches' branches, 0.99 in the head), ``lite`` 45.3 MFLOP
(29.5 + 15.8), about 56x fewer.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn
from torch.nn import functional as F

PRESETS: dict[str, dict] = {
    # widths of the four branch convs, stride of the first, which convs a 2x2 max-pool follows
    "paper": {"widths": (64, 128, 256, 256), "head_width": 512, "first_stride": 1,
              "pool_after": (True, True, True, False)},
    "lite": {"widths": (16, 32, 64, 32), "head_width": 64, "first_stride": 2,
             "pool_after": (True, True, False, False)},
}


@dataclass(frozen=True)
class ModelConfig:
    """Hyper-parameters of :class:`SSMLQNet`; ``preset`` picks defaults from :data:`PRESETS`."""

    preset: str = "lite"
    widths: tuple[int, int, int, int] = (16, 32, 64, 32)
    head_width: int = 64
    first_stride: int = 2
    pool_after: tuple[bool, bool, bool, bool] = (True, True, False, False)

    @classmethod
    def from_preset(cls, preset: str, **overrides) -> "ModelConfig":
        if preset not in PRESETS:
            raise ValueError(f"unknown preset {preset!r}; choose one of {sorted(PRESETS)}")
        values = {**PRESETS[preset], **overrides}
        values["widths"] = tuple(values["widths"])
        values["pool_after"] = tuple(bool(p) for p in values["pool_after"])
        return cls(preset=preset, **values)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["widths"] = list(self.widths)
        d["pool_after"] = list(self.pool_after)
        return d


class Conv(nn.Conv2d):
    """:class:`torch.nn.Conv2d` that, in eval mode, may multiply in :attr:`compute_dtype`
    (None: the input's own dtype): input, weight and bias rounded to it, the output cast back
    to the input's dtype. The parameters and their state-dict keys are a Conv2d's."""

    compute_dtype: torch.dtype | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dt = self.compute_dtype
        if dt is None or self.training or x.dtype == dt:
            return super().forward(x)
        bias = None if self.bias is None else self.bias.to(dt)
        y = F.conv2d(x.to(dt), self.weight.to(dt), bias, self.stride, self.padding,
                     self.dilation, self.groups)
        return y.to(x.dtype)


class ConvINBN(nn.Module):
    """conv3x3 -> instance norm -> batch norm -> ReLU (the first three convs of a branch)."""

    def __init__(self, cin: int, cout: int, stride: int = 1, instance_norm: bool = True):
        super().__init__()
        # one input channel: too thin a product for bfloat16 to pay (Conv's compute_dtype)
        conv = Conv if cin > 1 else nn.Conv2d
        self.conv = conv(cin, cout, 3, stride=stride, padding=1, bias=False)
        self.inorm = nn.InstanceNorm2d(cout, affine=True) if instance_norm else nn.Identity()
        self.bn = nn.BatchNorm2d(cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn(self.inorm(self.conv(x))))

    def folded(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(C,) scale and shift that apply the instance norm's affine and the eval-mode batch
        norm in one step, to the instance-normalised conv output (or to the raw conv output
        when there is no instance norm)."""
        bn = self.bn
        s = bn.weight * torch.rsqrt(bn.running_var + bn.eps)
        if isinstance(self.inorm, nn.InstanceNorm2d):
            return self.inorm.weight * s, (self.inorm.bias - bn.running_mean) * s + bn.bias
        return s, bn.bias - bn.running_mean * s

    def infer(self, x: torch.Tensor, pool: bool) -> torch.Tensor:
        """Eval-mode :meth:`forward`, followed by a 2x2 max-pool when ``pool``; the same
        numbers (to float rounding) in about half the time on CPU.

        The batch norm is folded into the instance norm's affine (:meth:`folded`). When every
        folded scale is positive, normalise-then-ReLU is increasing in each channel, so it
        commutes with the max-pool: the statistics come from the full-size map, the pool runs
        on the raw conv output and the normalisation on a quarter of the values. The pool
        takes the maximum of four strided views, far faster than ``max_pool2d`` on NCHW.
        """
        y = self.conv(x)
        scale, shift = self.folded()
        if not isinstance(self.inorm, nn.InstanceNorm2d):
            y = torch.relu_(torch.addcmul(shift[:, None, None], y, scale[:, None, None]))
            return _pool2(y) if pool else y
        var, mean = _var_mean(y)
        if pool and bool((scale > 0).all()):
            y = _pool2(y)
            pool = False
        k = scale[:, None, None] * torch.rsqrt(var + self.inorm.eps)
        b = (shift[:, None, None] - mean * k).to(y.dtype)
        y = torch.relu_(torch.addcmul(b, y, k.to(y.dtype)))
        return _pool2(y) if pool else y


def _var_mean(y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-map (biased) variance and mean of (B, C, H, W), each (B, C, 1, 1), as E[y^2] - E[y]^2:
    a mean and a norm are each one fast pass where ``torch.var_mean`` is 20x slower on CPU.
    The maps are convolutions of standardised patches, O(1) in scale, so in float32 (always:
    the statistics of a bfloat16 map are taken in float32) the cancellation costs a few 1e-6
    (measured against float64)."""
    b, c, h, w = y.shape
    flat = y.reshape(b, c, h * w).float()  # bfloat16 (CUDA autocast) would cancel badly
    mean = flat.mean(2)
    var = (torch.linalg.vector_norm(flat, dim=2) ** 2 / (h * w) - mean * mean).clamp_min(0)
    return var[:, :, None, None], mean[:, :, None, None]


def _pool2(x: torch.Tensor) -> torch.Tensor:
    """2x2 max-pool, stride 2, of (B, C, H, W) with even H and W: rows, as the two halves of
    each pair of rows viewed as one (contiguous runs), then columns (strided views). The same
    numbers as ``max_pool2d``, which is 10x slower on NCHW; 40 % faster than columns first
    (0.64 against 1.06 ms for 256 x 16 x 32 x 32, 2 cores)."""
    b, c, h, w = x.shape
    rows = x.reshape(b, c, h // 2, 2 * w)
    y = torch.maximum(rows[..., :w], rows[..., w:])
    return torch.maximum(y[..., 0::2], y[..., 1::2])


class Branch(nn.Module):
    """One of the four branches: (B, 1, 64, 64) -> (B, widths[3], 8, 8)."""

    def __init__(self, config: "ModelConfig"):
        super().__init__()
        layers: list[nn.Module] = []
        cin = 1
        for i, (cout, pool) in enumerate(zip(config.widths, config.pool_after)):
            layers.append(ConvINBN(cin, cout, stride=config.first_stride if i == 0 else 1,
                                   instance_norm=i < 3))
            if pool:
                layers.append(nn.MaxPool2d(2))
            cin = cout
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            return self.net(x)
        layers = list(self.net)
        for i, layer in enumerate(layers):
            if isinstance(layer, ConvINBN):
                pool = i + 1 < len(layers) and isinstance(layers[i + 1], nn.MaxPool2d)
                x = layer.infer(x, pool)
        return x


class CoordAttention(nn.Module):
    """Coordinate attention (Hou et al. 2021): direction-aware channel attention."""

    def __init__(self, channels: int, reduction: int = 8):
        super().__init__()
        mid = max(8, channels // reduction)
        self.conv1 = nn.Conv2d(channels, mid, 1)
        self.bn = nn.BatchNorm2d(mid)
        self.conv_h = nn.Conv2d(mid, channels, 1)
        self.conv_w = nn.Conv2d(mid, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _, _, h, w = x.shape
        xh = x.mean(3, keepdim=True)  # (B, C, H, 1)
        xw = x.mean(2, keepdim=True).transpose(2, 3)  # (B, C, W, 1)
        y = F.relu(self.bn(self.conv1(torch.cat([xh, xw], 2))))
        yh, yw = torch.split(y, [h, w], 2)
        ah = torch.sigmoid(self.conv_h(yh))
        aw = torch.sigmoid(self.conv_w(yw.transpose(2, 3)))
        return x * ah * aw


class SqueezeExcite(nn.Module):
    def __init__(self, channels: int, reduction: int = 4):
        super().__init__()
        mid = max(4, channels // reduction)
        self.fc1 = nn.Linear(channels, mid)
        self.fc2 = nn.Linear(mid, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = torch.sigmoid(self.fc2(F.relu(self.fc1(x.mean((2, 3))))))
        return x * s[:, :, None, None]


class ScaleSeparative(nn.Module):
    """Four kernel sizes on four channel groups, each refined by CA -> SE with a residual."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        if cin % 4 or cout % 4:
            raise ValueError(f"channels must be divisible by 4, got {cin} -> {cout}")
        g_in, g_out = cin // 4, cout // 4
        self.convs = nn.ModuleList(
            nn.Sequential(Conv(g_in, g_out, k, padding=k // 2, bias=False),
                          nn.BatchNorm2d(g_out), nn.ReLU(inplace=True))
            for k in (3, 5, 7, 9))
        self.ca = nn.ModuleList(CoordAttention(g_out) for _ in range(4))
        self.se = nn.ModuleList(SqueezeExcite(g_out) for _ in range(4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        groups = torch.chunk(x, 4, 1)
        out = []
        for g, conv, ca, se in zip(groups, self.convs, self.ca, self.se):
            y = conv(g)
            out.append(y + se(ca(y)))
        return torch.cat(out, 1)


class SSMLQNet(nn.Module):
    """Patch-pair classifier; see the module docstring.

    ``forward(a, b)``: a, b (B, 1, 64, 64) float -> logits (B, 2); class 1 = match.
    """

    def __init__(self, config: ModelConfig | None = None):
        super().__init__()
        self.config = config or ModelConfig()
        c = self.config
        side = 64 // c.first_stride // 2 ** sum(c.pool_after)
        if side != 8:
            raise ValueError(f"branch layout must reduce 64 px patches to 8x8 maps, got {side}")
        self.siamese = Branch(c)
        self.pseudo_a = Branch(c)
        self.pseudo_b = Branch(c)
        cat = 4 * c.widths[3]
        self.ssm = ScaleSeparative(cat, c.head_width)
        self.fuse_ca = CoordAttention(c.head_width)
        self.fuse_conv = nn.Sequential(
            Conv(c.head_width, c.head_width, 3, padding=1, bias=False),
            nn.BatchNorm2d(c.head_width), nn.ReLU(inplace=True))
        self.to512 = nn.Linear(2 * c.head_width, 512)
        self.fc = nn.Sequential(nn.ReLU(inplace=True), nn.Linear(512, 128), nn.ReLU(inplace=True),
                                nn.Linear(128, 2))

    def set_compute_dtype(self, dtype: torch.dtype | None) -> "SSMLQNet":
        """Let every :class:`Conv` multiply in ``dtype`` in eval mode (None: as its input);
        training is not affected. Returns the model."""
        for m in self.modules():
            if isinstance(m, Conv):
                m.compute_dtype = dtype
        return self

    @staticmethod
    def standardise(x: torch.Tensor) -> torch.Tensor:
        """Each (B, 1, H, W) patch less its mean, over its standard deviation (unbiased) plus
        1e-3. The deviation is the norm of the centred values: ``Tensor.std`` over the two
        pixel dimensions took 8x longer on the CPU (the same numbers to ~1e-6)."""
        flat = x.reshape(len(x), -1)
        d = flat - flat.mean(1, keepdim=True)
        std = torch.linalg.vector_norm(d, dim=1, keepdim=True) / (flat.shape[1] - 1) ** 0.5
        return (d / (std + 1e-3)).view_as(x)

    def embed(self, patches: torch.Tensor, side: str) -> torch.Tensor:
        """Per-patch branch features, computed once per keypoint.

        Args:
            patches: (B, 1, 64, 64) float patches.
            side: ``"fixed"`` (goes to the pseudo-Siamese branch a) or ``"moving"`` (branch b).

        Returns:
            (B, 2 * widths[3], 8, 8): Siamese features then pseudo-Siamese features.
        """
        if side not in ("fixed", "moving"):
            raise ValueError(f"side must be 'fixed' or 'moving', got {side!r}")
        x = self.standardise(patches)
        pseudo = self.pseudo_a if side == "fixed" else self.pseudo_b
        return torch.cat([self.siamese(x), pseudo(x)], 1)

    def head(self, feat_fixed: torch.Tensor, feat_moving: torch.Tensor) -> torch.Tensor:
        """Logits (B, 2) for pairs of embedded patches (rows pair up)."""
        w = self.config.widths[3]
        x = torch.cat([feat_fixed[:, :w], feat_moving[:, :w], feat_fixed[:, w:],
                       feat_moving[:, w:]], 1)
        y = self.ssm(x)
        y = self.fuse_conv(y + self.fuse_ca(y))
        pooled = torch.cat([y.mean((2, 3)), y.amax((2, 3))], 1)
        return self.fc(self.to512(pooled))

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return self.head(self.embed(a, "fixed"), self.embed(b, "moving"))


def count_flops(model: SSMLQNet) -> dict[str, float]:
    """FLOPs (2 x multiply-adds of conv and linear layers) for one pair, split into the
    per-patch part (both patches' branches) and the per-pair head. The probe pair is made on
    the model's device and in its dtype (a model on CUDA once crashed on a CPU probe)."""
    counts = {"embed": 0.0, "head": 0.0}
    current = ["embed"]

    def hook(mod, inp, out):
        if isinstance(mod, nn.Conv2d):
            k = mod.kernel_size[0] * mod.kernel_size[1] * mod.in_channels // mod.groups
            counts[current[0]] += 2.0 * k * out.numel()
        elif isinstance(mod, nn.Linear):
            counts[current[0]] += 2.0 * mod.in_features * out.numel()

    handles = [m.register_forward_hook(hook) for m in model.modules()
               if isinstance(m, (nn.Conv2d, nn.Linear))]
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            ref = next(model.parameters())  # the probe follows the model's device and dtype
            x = torch.zeros(1, 1, 64, 64, device=ref.device, dtype=ref.dtype)
            fa, fb = model.embed(x, "fixed"), model.embed(x, "moving")
            current[0] = "head"
            model.head(fa, fb)
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    counts["pair"] = counts["embed"] + counts["head"]
    return counts
