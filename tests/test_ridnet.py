"""RIDNet, the SHDD baseline of thesis Table 7.1 (restorekit/models/ridnet.py)."""

from __future__ import annotations

import torch

from restorekit.models import create_model


def test_the_released_configuration_has_the_papers_parameter_count():
    """64 channels, 4 EAMs, squeeze 16: 1.49M in the RIDNet paper (1,499,347 here, no MeanShift parameters)."""
    assert sum(p.numel() for p in create_model("ridnet").parameters()) == 1_499_347


def test_the_merge_and_run_branches_see_dilations_1_2_and_3_4():
    model = create_model("ridnet", features=8, blocks=1, squeeze=2)
    merge = model.body[0].merge
    assert [c.dilation[0] for c in merge.near] == [1, 2] and [c.dilation[0] for c in merge.far] == [3, 4]
    image = torch.rand(1, 3, 20, 20)
    assert model(image).shape == image.shape  # any size: padding keeps it
