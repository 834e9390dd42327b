"""The deployable cascade on small untrained networks (no run, no Ray): it computes what
the training code computes, and its TorchScript and ONNX exports match it."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from paw_ray import config as C
from paw_ray.attributes import ATTRIBUTES
from paw_ray.data.batches import model_batch
from paw_ray.models.cascade import Cascade, gather_windows
from paw_ray.models.frl import FRL
from paw_ray.models.windows import crop_windows, grid_centres, part_centres, part_windows
from paw_ray.models.paw import PaW


@pytest.fixture(scope="module")
def smoke_cfg():
    return C.preset("smoke")


def _cascade(cfg, source="frl", seed=0) -> Cascade:
    torch.manual_seed(seed)
    paw = PaW.from_config(cfg)
    frl = FRL.from_config(cfg).drop_mnl()
    for m in (paw, frl):  # non-trivial BatchNorm statistics, as after training
        for bn in (x for x in m.modules() if isinstance(x, torch.nn.BatchNorm2d)):
            bn.running_mean.uniform_(-0.2, 0.2)
            bn.running_var.uniform_(0.5, 1.5)
    return Cascade(paw, frl, source).eval()


def _images(n: int, size: int, seed: int = 1) -> torch.Tensor:
    return torch.randint(0, 256, (n, 3, size, size), dtype=torch.uint8, generator=torch.Generator().manual_seed(seed))


def test_gather_windows_cuts_the_same_pixels_as_crop_windows():
    g = torch.Generator().manual_seed(0)
    images = torch.randn(3, 3, 48, 48, generator=g)
    corners = torch.randint(0, 48 - 16 + 1, (3, 40, 2), generator=g)
    assert torch.equal(gather_windows(images, corners, 16), crop_windows(images, corners, 16))


def test_cascade_equals_the_training_path(smoke_cfg):
    """normalise -> FRL heatmaps -> part_centres -> PaW.forward, exactly."""
    cascade = _cascade(smoke_cfg)
    images = _images(5, smoke_cfg.data.image_size)
    x = model_batch({"image_id": np.arange(5), "image": images.numpy(), "labels": np.zeros((5, 40)),
                     "ok": np.ones(5, bool)}, "cpu")["image"].contiguous()  # the values; training's layout is channels_last
    with torch.no_grad():
        out = cascade.run(images)
        heat = cascade.frl.heatmaps(x)
        centres = part_centres(heat, smoke_cfg.data.image_size)
        ref = cascade.paw(x, centres)
    assert torch.equal(cascade.normalise(images), x)
    assert torch.equal(out.heatmaps, heat) and torch.equal(out.centres, centres)
    assert torch.equal(out.logits, ref.logits)
    corners = part_windows(centres, smoke_cfg.data.image_size, smoke_cfg.data.part_size)
    assert torch.equal(out.boxes[..., :2], corners) and (out.boxes[..., 2:] == smoke_cfg.data.part_size).all()
    assert out.probabilities.shape == (5, len(ATTRIBUTES))
    assert torch.equal(out.probabilities, torch.sigmoid(ref.logits))


def test_a_calibrated_cascade_divides_its_scores_by_the_temperature(smoke_cfg):
    cascade = _cascade(smoke_cfg)
    images = _images(3, smoke_cfg.data.image_size)
    temperature = torch.linspace(0.5, 4.0, len(ATTRIBUTES))
    with torch.no_grad():
        plain = cascade.run(images)
        calibrated = cascade.calibrate(temperature.numpy()).run(images)
    assert torch.equal(plain.probabilities, torch.sigmoid(plain.logits))
    assert torch.equal(calibrated.logits, plain.logits) and torch.equal(calibrated.boxes, plain.boxes)
    torch.testing.assert_close(calibrated.probabilities, torch.sigmoid(plain.logits / temperature))


def test_grid_cascade_uses_the_fixed_grid(smoke_cfg):
    cascade = _cascade(smoke_cfg, source="grid")
    assert cascade.frl is None
    images = _images(2, smoke_cfg.data.image_size)
    with torch.no_grad():
        out = cascade.run(images)
    assert torch.equal(out.centres, grid_centres(2)) and out.heatmaps is None


def test_cascade_refuses_images_of_the_wrong_size(smoke_cfg):
    with pytest.raises(ValueError, match="expected"):
        _cascade(smoke_cfg)(_images(1, smoke_cfg.data.image_size + 8))


@pytest.mark.parametrize("fmt", ["torchscript", "onnx"])
@pytest.mark.parametrize("source", ["frl", "grid"])
def test_export_matches_pytorch_at_another_batch_size(smoke_cfg, tmp_path, fmt, source):
    """Traced with a batch of 2, run with 7: same probabilities (tight) and identical boxes."""
    from paw_ray.serve.export import FORMATS, PARITY_ATOL, write_model, run_exported

    cascade = _cascade(smoke_cfg, source)
    cascade.one_pass = True
    cascade.paw.parts.parts_per_block = 40
    path = str(tmp_path / FORMATS[fmt])
    write_model(cascade, fmt, path)
    images = _images(7, smoke_cfg.data.image_size, seed=3).numpy()
    with torch.no_grad():
        ref_p, ref_b = (t.numpy() for t in cascade(torch.from_numpy(images)))
    probs, boxes = run_exported(path, fmt, images)
    assert probs.shape == (7, 40) and boxes.shape == (7, 40, 4)
    np.testing.assert_allclose(probs, ref_p, rtol=0, atol=PARITY_ATOL)
    np.testing.assert_array_equal(boxes, ref_b)
