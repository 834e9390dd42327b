"""Networks of paw_ray.models: counts against the paper, vectorised parts against 40
separate students, RSL grouping, CAM, part boxes and crops, hint loss, summary."""

from __future__ import annotations

import json

import pytest
import torch
from torch.nn import functional as F

from paw_ray import config as C
from paw_ray.attributes import GRID_BLOCK
from paw_ray.models import (
    FRL,
    AttributeRelation,
    HintObjective,
    PartSubnets,
    PaW,
    RegionSwitch,
    SNet,
    count_params,
    crop_windows,
    format_model_summary,
    frl_loss,
    grid_centres,
    hint_loss,
    model_summary,
    part_centres,
    part_windows,
    paw_loss,
)

A = 40


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """One intra-op thread: these tensors are tiny, and on a shared 2-core machine two
    OpenMP threads contending with other work slow these tests down 100x."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _within(value: float, target: float, tol: float) -> bool:
    return abs(value - target) <= tol * target


# --------------------------------------------------------------------------- parameter counts


def test_student_counts_match_table3():
    n = count_params(SNet("snet3"))
    assert n == 265_400 and _within(n, 0.27e6, 0.05)
    assert _within(count_params(SNet("snet2")), 2e6, 0.15)
    assert _within(count_params(SNet("snet1")), 6e6, 0.15)


def test_tnet_count_is_table3_layout():
    """The localization net is exactly Table 3's convs (+ BN + grouped head): 13.71M; the
    MNL branch brings it to 18.5M (paper: 19M)."""
    chans = [3, 32, 32, 64, 64, 128, 128, 128, 256, 256, 256, 512, 512, 512]
    convs = sum(9 * a * b for a, b in zip(chans, chans[1:])) + 9 * 512 * 1280
    bn = 2 * (sum(chans[1:]) + 1280)
    head = 1280 + 40
    frl = FRL()
    assert count_params(frl) == convs + bn + head + (512 * 9 * 1024 + 1024 + 1024 * 40 + 40)
    assert _within(count_params(frl), 19e6, 0.05)
    assert count_params(frl.drop_mnl()) == convs + bn + head == 13_714_696


def test_paw_count_at_paper_preset():
    paw = PaW.from_config(C.preset("paper"))
    n = count_params(paw)
    assert n == 41 * 265_400 + (41 * 40 + 40) + (40 * 40 + 40)
    assert _within(n, 11e6, 0.05)


# --------------------------------------------------------------------------- FRL


def test_frl_outputs_cam_and_drop_mnl():
    torch.manual_seed(0)
    n = 4
    frl = FRL(width=0.125, maps_per_attribute=n, mnl_hidden=16, input_size=48).eval()
    x = torch.randn(2, 3, 48, 48)
    out = frl(x)
    assert out.logits.shape == (2, A) and out.mnl_logits.shape == (2, A)
    assert out.maps.shape == (2, A * n, 3, 3)
    with torch.no_grad():
        frl.head.weight.normal_()
        frl.head.bias.normal_()
    out = frl(x)
    h = frl.heatmaps(x)
    assert h.shape == (2, A, 3, 3)
    # H_j = sum_i w_{j,i} F_{j,i}, written out per attribute
    expected = torch.stack([
        sum(frl.head.weight[j, i] * out.maps[:, j * n + i] for i in range(n)) for j in range(A)
    ], dim=1)
    torch.testing.assert_close(h, expected, rtol=1e-5, atol=1e-5)
    # CAM property: the score is the heatmap's mean plus the bias
    torch.testing.assert_close(out.logits, h.mean((2, 3)) + frl.head.bias, rtol=1e-5, atol=1e-5)
    labels = torch.randint(0, 2, (2, A))
    assert frl_loss(out, labels) > F.binary_cross_entropy_with_logits(out.logits, labels.float())

    frl.drop_mnl()
    assert not any(k.startswith("mnl") for k in frl.state_dict())
    out2 = frl(x)
    assert out2.mnl_logits is None
    torch.testing.assert_close(out2.logits, out.logits)
    assert not any(k.startswith("mnl") for k in FRL(width=0.125, maps_per_attribute=n, mnl=False).state_dict())


@pytest.mark.parametrize("name", ["smoke", "demo", "paper"])
def test_student_maps_match_teacher_maps(name):
    """Same maps per attribute; the teacher's grid is as fine as its pools leave it (the
    paper's 4 pools: the student's grid exactly), and the hint averages it to the student's."""
    cfg = C.preset(name)
    s = cfg.data.image_size
    x = torch.zeros(2, 3, s, s)
    t = FRL.from_config(cfg).eval()(x).maps
    assert t.shape == (2, 40 * cfg.frl.maps_per_attribute, s // 2**cfg.frl.pools, s // 2**cfg.frl.pools)
    for kind in ("snet1", "snet2", "snet3"):
        cfg.student = kind
        student = SNet.from_config(cfg).eval()(x).maps
        assert student.shape == (2, 40 * cfg.frl.maps_per_attribute, s // 16, s // 16)
        assert HintObjective(1.0, 0.0).terms(student, t, torch.zeros(2, A), torch.ones(2, A)).hint.isfinite()


# --------------------------------------------------------------------------- hint loss


def test_hint_loss_scale_and_objective():
    t = torch.randn(3, 8, 2, 2)
    assert hint_loss(t, t.clone()).item() == 0.0
    s = t + 1.0
    assert hint_loss(s, t).item() == pytest.approx(0.5 * 8 * 2 * 2)  # Caffe EuclideanLoss scale
    with pytest.raises(ValueError):
        hint_loss(s, t[:, :4])
    logits, labels = torch.zeros(3, A), torch.ones(3, A)
    obj = HintObjective(lambda1=2.0, lambda2=3.0)
    terms = obj.terms(s, t, logits, labels)
    assert terms.loss.item() == pytest.approx(2.0 * 16 + 3.0 * torch.log(torch.tensor(2.0)).item(), rel=1e-6)
    assert HintObjective(0.0, 1.0)(s, None, logits, labels).item() == pytest.approx(0.6931, rel=1e-4)


def test_frl_with_fewer_pools_keeps_a_finer_grid_and_hints_a_coarser_student():
    frl = FRL(width=0.125, maps_per_attribute=4, mnl=False, input_size=96, pools=3)
    x = torch.randn(2, 3, 96, 96)
    out = frl(x)
    assert frl.feature_size == 12 and out.maps.shape[-2:] == (12, 12)
    assert frl.heatmaps(x).shape == (2, A, 12, 12)
    assert sum(1 for m in frl.features if isinstance(m, torch.nn.MaxPool2d)) == 3
    # the student's 6x6 maps learn the teacher's maps averaged over each 2x2 block
    student = F.avg_pool2d(out.maps, 2).detach() + 1.0
    terms = HintObjective(1.0, 0.0).terms(student, out.maps, torch.zeros(2, A), torch.ones(2, A))
    assert terms.hint.item() == pytest.approx(0.5 * out.maps.shape[1] * 36, rel=1e-5)
    with pytest.raises(ValueError):
        FRL(input_size=96, pools=0)


def test_hint_training_decreases_on_fixed_batch():
    torch.manual_seed(0)
    n, s = 4, 32
    teacher = FRL(width=0.125, maps_per_attribute=n, mnl=False, input_size=s).eval()
    student = SNet("snet3", 0.5, n)
    x = torch.randn(8, 3, s, s)
    with torch.no_grad():
        t = teacher(x).maps
    obj = HintObjective(1.0, 0.0)
    opt = torch.optim.SGD(student.parameters(), lr=1e-3, momentum=0.9)
    labels = torch.zeros(8, A)
    losses = []
    for _ in range(8):
        out = student(x)
        loss = obj(out.maps, t, out.logits, labels)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.7 * losses[0], losses


# --------------------------------------------------------------------------- part subnets


def _parts_and_students(num_parts=40, width=0.5, n=2):
    torch.manual_seed(0)
    nets = [SNet("snet3", width, n).double() for _ in range(num_parts)]
    for net in nets:  # non-trivial BN and head parameters
        with torch.no_grad():
            for name, p in net.named_parameters():
                if "1.weight" in name or "1.bias" in name or name.startswith("head"):
                    p.normal_(1.0 if name.endswith("1.weight") else 0.0, 0.3)
    parts = PartSubnets(num_parts, "snet3", width, n).double()
    for i, net in enumerate(nets):
        parts.load_part_state_dict(i, net.state_dict())
    return parts, nets


@pytest.mark.parametrize("train", [True, False])
@pytest.mark.parametrize("block", [None, 40, 7])  # None: CPU default blocks; 40: one grouped pass; 7: uneven
def test_vectorised_parts_equal_separate_students(train, block):
    parts, nets = _parts_and_students()
    parts.parts_per_block = block
    parts.train(train)
    for net in nets:
        net.train(train)
    crops = torch.randn(4, 40, 3, 16, 16, dtype=torch.float64)
    x1 = crops.clone().requires_grad_()
    x2 = crops.clone().requires_grad_()
    w = torch.randn(4, 40, 40, dtype=torch.float64)
    out = parts(x1)
    ref = torch.stack([net(x2[:, i]).logits for i, net in enumerate(nets)], dim=1)
    assert out.shape == (4, 40, 40)
    torch.testing.assert_close(out, ref, rtol=1e-10, atol=1e-10)
    (out * w).sum().backward()
    (ref * w).sum().backward()
    torch.testing.assert_close(x1.grad, x2.grad, rtol=1e-10, atol=1e-10)
    for i, net in enumerate(nets):
        stacked = dict(parts.named_parameters())
        for name, p in net.named_parameters():
            g = stacked[name].grad.unflatten(0, (40, -1))[i].reshape(p.shape)
            torch.testing.assert_close(g, p.grad, rtol=1e-10, atol=1e-10)
        # BatchNorm running statistics evolve exactly as in the separate students
        for k, v in parts.part_state_dict(i).items():
            torch.testing.assert_close(v, net.state_dict()[k], rtol=1e-10, atol=1e-10)


def test_part_state_dict_round_trip_exact():
    parts, nets = _parts_and_students(num_parts=5)
    parts.train()
    parts(torch.randn(3, 5, 3, 16, 16, dtype=torch.float64))  # running stats, batches tracked
    before = [parts.part_state_dict(i) for i in range(5)]
    student = SNet("snet3", 0.5, 2).double()
    student.load_state_dict(before[2])  # a part is a standalone SNet, strict keys
    assert set(before[2]) == set(student.state_dict())
    new = {k: v + 1 if v.is_floating_point() else v + 7 for k, v in student.state_dict().items()}
    parts.load_part_state_dict(2, new)
    after = parts.part_state_dict(2)
    assert set(after) == set(new)
    for k in new:
        assert after[k].shape == new[k].shape and after[k].dtype == new[k].dtype
        assert torch.equal(after[k], new[k])
    for i in (0, 1, 3, 4):  # other parts untouched
        for k, v in parts.part_state_dict(i).items():
            assert torch.equal(v, before[i][k])
    with pytest.raises(KeyError):
        parts.load_part_state_dict(0, {k: v for k, v in new.items() if k != "head.bias"})
    with pytest.raises(IndexError):
        parts.part_state_dict(5)


# --------------------------------------------------------------------------- RSL / ARL / PaW


def test_rsl_output_depends_only_on_its_attribute():
    rsl = RegionSwitch(41, 40)
    with torch.no_grad():
        rsl.weight.normal_()
        rsl.bias.normal_()
    scores = torch.randn(1, 41, 40)
    jac = torch.autograd.functional.jacobian(rsl, scores)[0, :, 0]  # (40 outputs, 41, 40)
    for j in range(40):
        others = torch.ones(40, dtype=torch.bool)
        others[j] = False
        assert torch.count_nonzero(jac[j][:, others]) == 0
        torch.testing.assert_close(jac[j][:, j], rsl.weight[:, j])
    fresh = RegionSwitch()
    assert torch.equal(fresh.weight[0], torch.full((40,), 0.5))
    assert torch.equal(fresh.weight[1:], 0.5 * torch.eye(40))
    arl = AttributeRelation(40)
    r = torch.randn(3, 40)
    assert torch.equal(arl(r), r)


def test_paw_forward_scores_and_freeze():
    torch.manual_seed(0)
    cfg = C.preset("smoke")
    paw = PaW.from_config(cfg).eval()
    s, p = cfg.data.image_size, cfg.data.part_size
    images = torch.randn(3, 3, s, s)
    centres = torch.rand(3, 40, 2)
    out = paw(images, centres)
    assert out.logits.shape == (3, 40) and out.rsl.shape == (3, 40) and out.scores.shape == (3, 41, 40)
    torch.testing.assert_close(out.scores[:, 0], paw.whole(images).logits)
    corners = part_windows(centres, s, p)
    k = 7
    part_k = SNet.from_config(cfg).eval()
    part_k.load_state_dict(paw.parts.part_state_dict(k))
    crop_k = torch.stack([images[b, :, corners[b, k, 1]:corners[b, k, 1] + p, corners[b, k, 0]:corners[b, k, 0] + p]
                          for b in range(3)])
    torch.testing.assert_close(out.scores[:, 1 + k], part_k(crop_k).logits, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(out.logits, out.rsl)  # ARL starts at the identity
    paw_loss(out, torch.ones(3, 40)).backward()

    paw.zero_grad(set_to_none=True)
    paw.freeze_subnets().train()
    assert not paw.whole.training and not paw.parts.training and paw.rsl.training
    paw_loss(paw(images, centres), torch.ones(3, 40)).backward()
    assert all(q.grad is None for q in paw.whole.parameters())
    assert all(q.grad is None for q in paw.parts.parameters())
    assert paw.rsl.weight.grad is not None and paw.arl.weight.grad is not None
    paw.unfreeze_subnets()
    assert paw.parts.training and all(q.requires_grad for q in paw.parameters())


# --------------------------------------------------------------------------- part boxes and crops


def test_part_centres_land_on_planted_peaks():
    torch.manual_seed(0)
    b, h, s = 3, 14, 224
    heat = torch.rand(b, A, h, h) * 0.1
    rows = torch.randint(0, h, (b, A))
    cols = torch.randint(0, h, (b, A))
    rows[0, :4] = torch.tensor([0, 0, h - 1, h - 1])  # corners too
    cols[0, :4] = torch.tensor([0, h - 1, 0, h - 1])
    heat[torch.arange(b)[:, None], torch.arange(A)[None], rows, cols] = 5.0
    c = part_centres(heat, s)
    assert c.shape == (b, A, 2) and c.dtype == torch.float32
    expected = torch.stack(((cols + 0.5) / h, (rows + 0.5) / h), dim=-1)
    # after bilinear upsampling the argmax lies within one input cell's half-width of the peak
    assert (c - expected).abs().max() <= 0.5 / h + 1e-6
    # without upsampling the argmax pixel is the peak itself
    torch.testing.assert_close(part_centres(heat, h), expected)
    # chunked processing gives the same result
    torch.testing.assert_close(part_centres(heat, s, max_chunk_elements=A * s * s), c)


def test_part_windows_stay_inside_at_every_border():
    s, p = 96, 28
    vals = torch.tensor([0.0, 0.001, 0.1, 0.145, 0.5, 0.855, 0.9, 0.999, 1.0])
    xs, ys = torch.meshgrid(vals, vals, indexing="ij")
    centres = torch.stack((xs.flatten(), ys.flatten()), -1).unsqueeze(0)  # (1, 81, 2)
    corners = part_windows(centres, s, p)
    assert corners.dtype == torch.long
    assert corners.min() >= 0 and corners.max() <= s - p
    # away from the borders the window is centred on the centre's pixel
    c = part_windows(torch.tensor([[[0.5, 0.25]]]), s, p)
    assert c.tolist() == [[[48 - 14, 24 - 14]]]
    assert part_windows(torch.tensor([[[0.0, 1.0]]]), s, p).tolist() == [[[0, s - p]]]


def test_batched_crop_equals_naive_crop_and_is_differentiable():
    torch.manual_seed(0)
    b, s, p, k = 4, 48, 16, 40
    images = torch.randn(b, 3, s, s, requires_grad=True)
    corners = part_windows(torch.rand(b, k, 2), s, p)
    corners[0, 0] = torch.tensor([0, 0])
    corners[-1, -1] = torch.tensor([s - p, s - p])  # the very last window of the batch
    crops = crop_windows(images, corners, p)
    assert crops.shape == (b, k, 3, p, p)
    naive = torch.stack([
        torch.stack([images[i, :, y:y + p, x:x + p] for x, y in corners[i].tolist()]) for i in range(b)
    ])
    assert torch.equal(crops, naive)
    assert torch.equal(crop_windows(images.detach().contiguous(memory_format=torch.channels_last), corners, p), naive)
    assert torch.equal(crop_windows(images.detach().to(torch.uint8), corners, p), naive.detach().to(torch.uint8))
    assert crop_windows(images[:0], corners[:0], p).shape == (0, k, 3, p, p)
    crops.sum().backward()
    counts = torch.zeros(b, 3, s, s)
    for i in range(b):
        for x, y in corners[i].tolist():
            counts[i, :, y:y + p, x:x + p] += 1
    assert torch.equal(images.grad, counts)


def test_grid_centres_are_block_centres():
    g = grid_centres(5)
    assert g.shape == (5, 40, 2)
    assert torch.equal(g, g[:1].expand_as(g))
    for j, (r, c) in enumerate(GRID_BLOCK):
        assert g[0, j].tolist() == [(c + 0.5) / 4, (r + 0.5) / 4]
    # the window cut there is the block's centre window
    corners = part_windows(g, 224, 64)
    r, c = GRID_BLOCK[1]  # (1, 1): not at a border, so not clamped
    assert corners[0, 1].tolist() == [56 * c + 28 - 32, 56 * r + 28 - 32]


# --------------------------------------------------------------------------- summary


def test_model_summary_smoke_and_cli(capsys):
    cfg = C.preset("smoke")
    summ = model_summary(cfg)
    assert {"tnet", "snet1", "snet2", "snet3", "paw", "rsl", "arl"} <= set(summ)
    for v in summ.values():
        assert isinstance(v["params"], int) and isinstance(v["output_shapes"], dict)
    assert summ["tnet"]["params_with_mnl"] > summ["tnet"]["params_without_mnl"]
    assert summ["paw"]["output_shapes"]["scores"] == [1, 41, 40]
    assert summ["snet3"]["output_shapes"]["maps"][:2] == summ["tnet"]["output_shapes"]["maps"][:2]
    assert C.preset("paper").frl.pools == 4  # at the paper's size the student's maps are the teacher's shape
    text = format_model_summary(summ)
    assert "snet3" in text and f"{summ['paw']['params']:,}" in text

    from paw_ray.cli import main

    assert main(["models", "--preset", "smoke", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["paw"]["params"] == summ["paw"]["params"]


# --------------------------------------------------------------------------- on a GPU, where there is one


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_vectorised_parts_and_paw():
    """On CUDA the parts run as one grouped pass; same results as 40 separate students
    (float64: no TF32), and the PaW forward/backward with crops cut on the device."""
    dev = torch.device("cuda")
    parts, nets = _parts_and_students()
    parts, nets = parts.to(dev).train(), [n.to(dev).train() for n in nets]
    crops = torch.randn(4, 40, 3, 16, 16, dtype=torch.float64, device=dev)
    out = parts(crops)
    ref = torch.stack([net(crops[:, i]).logits for i, net in enumerate(nets)], dim=1)
    torch.testing.assert_close(out, ref, rtol=1e-9, atol=1e-9)
    out.sum().backward()
    ref.sum().backward()
    g = dict(parts.named_parameters())["features.0.0.weight"].grad.unflatten(0, (40, -1))
    torch.testing.assert_close(g[3], nets[3].features[0][0].weight.grad, rtol=1e-9, atol=1e-9)

    cfg = C.preset("smoke")
    paw = PaW.from_config(cfg).to(dev)
    s = cfg.data.image_size
    images = torch.randn(2, 3, s, s, device=dev, requires_grad=True)
    o = paw(images, torch.rand(2, 40, 2, device=dev))
    paw_loss(o, torch.ones(2, 40, device=dev)).backward()
    assert o.scores.shape == (2, 41, 40) and images.grad is not None
    heat = torch.zeros(2, 40, 3, 3, device=dev)
    heat[:, :, 1, 2] = 1.0
    assert torch.allclose(part_centres(heat, 3), torch.tensor([2.5 / 3, 1.5 / 3], device=dev).expand(2, 40, 2))
