"""Weight initialisations that a model builder can choose by name (`init=`), one home for all families.

"pytorch" keeps PyTorch's defaults (what most reference codes ship). "kaiming" is He normal (fan_in, ReLU gain)
for every conv with zero biases and the convs that end a residual or output branch scaled by `end_scale`
(BasicSR's `default_init_weights(scale=0.1)` convention), so the model starts near the identity (or its skip)
with a gradient that reaches the first layer. PyTorch's default (gain 1/sqrt(3) per conv) shrinks the signal
over a plain stack of ~17-30 convs; under Adam with coupled weight decay such a stack can collapse to zero
before it learns (measured: models/mbn.py's text, and the SHDD baselines in docs/BENCHMARKS.md).
"""

from __future__ import annotations

from collections.abc import Iterable

from torch import nn

INITS = ("pytorch", "kaiming")


def kaiming_init(model: nn.Module, ends: Iterable[nn.Conv2d] = (), end_scale: float = 0.1) -> None:
    """He normal for every conv of `model`, zero biases, and each conv in `ends` scaled by `end_scale`."""
    for layer in model.modules():
        if isinstance(layer, nn.Conv2d):
            nn.init.kaiming_normal_(layer.weight, nonlinearity="relu")
            if layer.bias is not None:
                nn.init.zeros_(layer.bias)
    for end in ends:
        end.weight.data.mul_(end_scale)


def apply_init(model: nn.Module, init: str, ends: Iterable[nn.Conv2d] = ()) -> None:
    """Apply the named initialisation (one of INITS); "pytorch" leaves the module as constructed."""
    if init not in INITS:
        raise ValueError(f"init is one of {', '.join(INITS)}, not {init!r}")
    if init == "kaiming":
        kaiming_init(model, ends)
