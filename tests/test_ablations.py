"""The ablation switches (``frl.mnl``, ``student``, ``parts.source``) do what they claim, are
usable from ``paw-ray train`` / ``tune`` / ``ablate``, and ``paw-ray ablate`` shares every
stage two variants have in common (fast tests with fake run directories; one slow run)."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from paw_ray import cli
from paw_ray import config as C
from paw_ray import storage
from paw_ray.errors import PawRayError
from paw_ray.attributes import GRID_BLOCK
from paw_ray.models import FRL, PaW, SNet, count_params
from paw_ray.models.paw import RegionSwitch
from paw_ray.train.ablate import (
    PAPER_DESIGN,
    VARIANTS,
    ablate,
    adopt_shared_stages,
    format_ablations,
    measure,
    summarize,
)
from paw_ray.train.checkpoints import save_state
from paw_ray.train.manifest import Manifest, StageRecord, stage_fingerprints
from paw_ray.train.stage_table import STAGES, stage_inputs


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny tensors on a shared 2-core machine: one intra-op thread."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


# --------------------------------------------------------------------------- frl.mnl

def _batch(size: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return {"image": torch.randn(2, 3, size, size, generator=g),
            "labels": torch.randint(0, 2, (2, 40), generator=g).float()}


def test_mnl_branch_exists_only_when_on_and_is_dropped_after_training(tmp_path):
    from paw_ray.train.stages.frl import build_task, load_frl

    on = C.preset("smoke")
    off = C.apply_overrides(on, ["frl.mnl=false"])
    batch = _batch(on.data.image_size)
    artifacts = {}
    for cfg in (on, off):
        task = build_task("frl", cfg, {}, torch.device("cpu"), [0.3] * 40)
        model = task.model
        assert model.has_mnl == cfg.frl.mnl
        loss, logits = task.loss(model, batch)
        out = model(batch["image"])
        expected = F.binary_cross_entropy_with_logits(out.logits, batch["labels"])
        if cfg.frl.mnl:  # trained jointly: the same attribute loss on both branches
            expected = expected + F.binary_cross_entropy_with_logits(out.mnl_logits, batch["labels"])
        else:
            assert out.mnl_logits is None
        torch.testing.assert_close(loss, expected)
        torch.testing.assert_close(logits, out.logits)
        artifacts[cfg.frl.mnl] = task.artifact(model)
        assert not any(k.startswith("mnl") for k in artifacts[cfg.frl.mnl]), "the artifact keeps no MNL branch"
    assert sorted(artifacts[True]) == sorted(artifacts[False]), "the same localization network either way"
    with_mnl = FRL.from_config(on)
    assert count_params(with_mnl) - count_params(FRL.from_config(off)) == count_params(with_mnl.mnl) > 0
    # the deployed FRL loads from the artifact with no MNL weights
    save_state(str(tmp_path / "frl.pt"), artifacts[True])
    assert not load_frl(on, str(tmp_path / "frl.pt")).has_mnl


# --------------------------------------------------------------------------- student

# The layouts of paw_ray/models/students.py's docstring (SNet3: Table 3), each followed by the
# 1x1 conv of 1280 maps, GAP and the grouped head; every conv is conv(no bias)-BN-ReLU.
TABLE3_LAYOUTS = {
    "snet3": [16, "M", 32, "M", 64, "M", 128, "M"],
    "snet2": [32, 32, "M", 64, 64, "M", 128, 128, "M", 256, 256, "M", 256],
    "snet1": [32, 32, "M", 64, 64, "M", 128, 128, 128, "M", 256, 256, 256, "M", 512, 512],
}


def _layout_params(layout: list, maps: int = 1280, attributes: int = 40) -> int:
    chans = [3] + [c for c in layout if c != "M"]
    convs = sum(9 * a * b + 2 * b for a, b in zip(chans, chans[1:]))
    return convs + chans[-1] * maps + 2 * maps + maps + attributes


@pytest.mark.parametrize("student, paper", [("snet1", 6e6), ("snet2", 2e6), ("snet3", 0.27e6)])
def test_student_switch_builds_table3_subnets(student, paper):
    cfg = C.apply_overrides(C.preset("paper"), [f"student={student}"])
    n = count_params(SNet.from_config(cfg))
    assert n == _layout_params(TABLE3_LAYOUTS[student])
    assert abs(n - paper) <= 0.05 * paper
    with torch.device("meta"):  # g_0 and all 40 part subnets are that student
        paw = PaW.from_config(cfg)
    assert count_params(paw.whole) == n and count_params(paw.parts) == 40 * n


def test_student_switch_leaves_the_frl_and_its_centres_alone():
    base = C.preset("smoke")
    a = stage_fingerprints(base, "d")
    b = stage_fingerprints(C.apply_overrides(base, ["student=snet1"]), "d")
    assert [s for s in STAGES if a[s] == b[s]] == ["frl", "localize"]


# --------------------------------------------------------------------------- parts.source

def test_grid_centres_are_the_fixed_block_centres_for_every_image(tmp_path):
    from paw_ray.data.synthfaces import synthesize
    from paw_ray.train.stages.localize import load_centres, run_localize

    data_dir = str(tmp_path / "data")
    synthesize(n=30, size=32, seed=0, out=data_dir, num_tasks=1)
    cfg = C.apply_overrides(C.preset("smoke"), ["parts.source=grid", "data.image_size=32"])
    assert stage_inputs(cfg, "localize") == (), "the grid consults no FRL"
    location, metrics = run_localize(cfg, data_dir, str(tmp_path / "run"), frl_location=None)
    table = load_centres(location)
    assert metrics["source"] == "grid" and len(table.ids) == 30
    expected = np.array([[(c + 0.5) / 4, (r + 0.5) / 4] for r, c in GRID_BLOCK], dtype=np.float32)
    assert (table.centres == expected).all(), "block centres of GRID_BLOCK, identical for every image"
    # FRL, hint and g_0 are shared with the FRL variant; the centres and all after them are not
    a = stage_fingerprints(C.preset("smoke"), "d")
    b = stage_fingerprints(C.apply_overrides(C.preset("smoke"), ["parts.source=grid"]), "d")
    assert [s for s in STAGES if a[s] == b[s]] == ["frl", "hint", "whole"]


# --------------------------------------------------------------------------- command line

SWITCHES = ["--set", "frl.mnl=false", "--set", "student=snet1", "--set", "parts.source=grid"]


@pytest.mark.parametrize("command", [["train"], ["tune", "--stage", "whole"], ["ablate", "--seeds", "2"]])
def test_switches_from_the_command_line(command):
    args = cli.build_parser().parse_args(command + ["--preset", "smoke"] + SWITCHES)
    cfg = cli.train_config(args)
    assert (cfg.frl.mnl, cfg.student, cfg.parts.source) == (False, "snet1", "grid")


@pytest.mark.parametrize("item, key", [("student=snet4", "student"), ("parts.source=box", "parts.source"),
                                       ("frl.mnl=maybe", "frl.mnl")])
def test_bad_switch_values_name_the_key(item, key):
    with pytest.raises(C.ConfigError, match=key.replace(".", r"\.")):
        C.apply_overrides(C.preset("smoke"), [item])


def test_mnl_is_searchable_by_tune():
    from paw_ray.train.tune import check_space

    check_space({"mnl": {"choice": [True, False]}}, C.preset("smoke"), "frl")


# --------------------------------------------------------------------------- ablate: sharing

def test_variants_flip_one_switch_of_the_paper_design():
    user = C.apply_overrides(C.preset("smoke"), ["student=snet2", "frl.mnl=false"])  # ignored by every variant
    design = {"frl.mnl": True, "student": "snet3", "parts.source": "frl"}
    assert len(PAPER_DESIGN) == len(design)
    for v in VARIANTS.values():
        cfg = C.apply_overrides(user, v.overrides())
        got = {"frl.mnl": cfg.frl.mnl, "student": cfg.student, "parts.source": cfg.parts.source}
        flipped = {k for k in design if got[k] != design[k]}
        assert flipped == ({v.change.split("=")[0]} if v.change else set()), v.name


def test_which_stages_each_variant_shares_with_the_baseline():
    base = C.preset("smoke")
    fps = {n: stage_fingerprints(C.apply_overrides(base, v.overrides()), "d") for n, v in VARIANTS.items()}
    shared = {n: [s for s in STAGES if fps[n][s] == fps["baseline"][s]] for n in VARIANTS if n != "baseline"}
    assert shared == {"no_mnl": [], "snet1": ["frl", "localize"], "snet2": ["frl", "localize"],
                      "grid": ["frl", "hint", "whole"]}


def _fake_run(run_dir: str, cfg: C.Config, identity: str, wall: float = 10.0) -> Manifest:
    """A run directory whose every stage is complete for ``cfg`` (trained here, with placeholder
    artifacts, unless already complete, e.g. adopted)."""
    manifest = Manifest.load_or_create(run_dir)
    for stage, fp in stage_fingerprints(cfg, identity).items():
        if manifest.is_complete(stage, fp):
            continue
        ckpt = storage.join(run_dir, "stages", stage, "artifact")
        storage.write_bytes_atomic(ckpt, b"x")
        manifest.stages[stage] = StageRecord(status="complete", fingerprint=fp, artifact=ckpt, wall_time_s=wall)
    manifest.save()
    return manifest


def _variant(name: str) -> C.Config:
    return C.apply_overrides(C.preset("smoke"), VARIANTS[name].overrides())


def test_adopt_shared_stages_points_at_the_sibling_that_trained_them(tmp_path):
    base_dir, grid_dir, snet1_dir = (str(tmp_path / n) for n in ("baseline", "grid", "snet1"))
    baseline = _fake_run(base_dir, _variant("baseline"), "d")
    siblings = [base_dir, grid_dir, snet1_dir]

    reused = adopt_shared_stages(_variant("grid"), grid_dir, siblings, "d")
    assert reused == {s: base_dir for s in ("frl", "hint", "whole")}
    grid = Manifest.load_or_create(grid_dir)  # reused_from survives the round trip
    for stage in reused:
        assert grid.stages[stage].reused_from == base_dir
        assert grid.stages[stage].artifact == baseline.stages[stage].artifact, "no copy"
        assert grid.stages[stage].finished_at == baseline.stages[stage].finished_at
    assert set(grid.stages) == set(reused), "the grid's own stages are left to train()"
    assert adopt_shared_stages(_variant("grid"), grid_dir, siblings, "d") == reused, "idempotent"

    # only the grid as a sibling: its reused FRL is credited to the run that trained it
    assert adopt_shared_stages(_variant("snet1"), snet1_dir, [grid_dir], "d") == {"frl": base_dir}
    # a stage of its own (trained here, say after a crash) is not replaced
    own = _fake_run(str(tmp_path / "own"), _variant("snet1"), "d")
    assert adopt_shared_stages(_variant("snet1"), own.run_dir, siblings, "d") == {}


def _fake_results(manifest: Manifest, acc: float, rsl_whole: float) -> None:
    results = {"mean_accuracy": {"frl": acc, "whole": acc, "part": acc - 0.01, "paw": acc + 0.01, "majority": 0.8},
               "localization": {"mean": 0.5}}
    storage.write_json_atomic(manifest.stages["evaluate"].artifact, results)
    rsl = RegionSwitch()
    with torch.no_grad():
        rsl.weight[0] = rsl_whole
    save_state(manifest.stages["finetune"].artifact, {"rsl.weight": rsl.weight.detach()})


def test_measure_summary_and_table(tmp_path):
    base_dir, grid_dir = str(tmp_path / "baseline"), str(tmp_path / "grid")
    runs: dict[str, dict[int, dict]] = {"baseline": {}, "grid": {}}
    for seed in (0, 1):
        baseline = _fake_run(base_dir + str(seed), _variant("baseline"), f"d{seed}")
        adopt_shared_stages(_variant("grid"), grid_dir + str(seed), [base_dir + str(seed)], f"d{seed}")
        grid = _fake_run(grid_dir + str(seed), _variant("grid"), f"d{seed}", wall=5.0)
        _fake_results(baseline, 0.9 + seed / 100, 0.4)
        _fake_results(grid, 0.88, 0.7)
        runs["baseline"][seed] = measure(_variant("baseline"), baseline)
        runs["grid"][seed] = measure(_variant("grid"), Manifest.load_or_create(grid.run_dir))

    g = runs["grid"][0]
    assert g["accuracy"] == {"frl": 88.0, "whole": 88.0, "part": 87.0, "paw": 89.0} and g["pointing"] == 50.0
    assert set(g["reused"]) == {"frl", "hint", "whole"}
    assert g["wall_time_s"] == {"spent": 5 * 5.0, "total": 5 * 5.0 + 3 * 10.0}, "reused stages count 0 spent"
    assert g["rsl"] == {"whole": pytest.approx(0.7), "part": 0.5, "whole_heavier": 40}
    assert g["params"]["frl"] == 0 and runs["baseline"][0]["params"]["frl"] > 0, "the grid deploys no FRL"

    machine = {"platform": "test", "cpu_count": 2, "ray_cpus": 2.0, "ray_gpus": 0.0}
    summary = summarize(C.preset("smoke"), str(tmp_path), [0, 1], ["baseline", "grid"], runs,
                        {0: "data0", 1: "data1"}, machine)
    json.dumps(summary)
    assert summary["complete"] and summary["seeds"] == [0, 1]
    b = summary["variants"]["baseline"]
    assert b["mean"]["accuracy"]["frl"] == pytest.approx(90.5) and sorted(b["per_seed"]) == ["0", "1"]
    assert b["paper"]["accuracy"]["paw"] == 91.23 and b["paper"]["params"]["student"] == 270_000
    assert summary["wall_time_s"] == {"spent": 2 * (8 * 10.0 + 5 * 5.0), "without_sharing": 2 * (80 + 55)}
    table = format_ablations(summary)
    assert "| baseline | none (the paper's design) | 90.50 (91.07) |" in table
    assert "89.00 (90.95)" in table, "the grid's PaW beside the paper's 90.95"
    assert "0.700 / 0.500 (40/40)" in table and "frl ← grid0" not in table


# --------------------------------------------------------------------------- ablate: a real run

@dataclass(frozen=True)
class Ablation:
    """One real ``ablate`` of the baseline and the grid variant on a small smoke config."""

    cfg: C.Config
    out: str
    summary: dict
    logs: list[str]
    baseline: Manifest
    grid: Manifest

    @property
    def on_disk(self) -> dict:
        return json.loads(open(os.path.join(self.out, "ablations.json")).read())


@pytest.fixture(scope="module")
def ablation(ray_local, tmp_path_factory) -> Ablation:
    # 7 Ray Train fits (5 baseline, 2 grid) of ~20 s fixed overhead each dominate: one epoch each
    cfg = C.apply_overrides(C.preset("smoke"), [
        "data.synth_n=200", "frl.epochs=1", "whole.epochs=1", "parts.epochs=1", "fusion.epochs=1",
        "frl.num_workers=1"])
    out = str(tmp_path_factory.mktemp("ablate") / "ablate")
    logs: list[str] = []
    summary = ablate(cfg, out, seeds=1, variants=["baseline", "grid"], log=logs.append)
    seed_dir = os.path.join(out, "seed0")
    return Ablation(cfg, out, summary, logs, Manifest.load_or_create(os.path.join(seed_dir, "baseline")),
                    Manifest.load_or_create(os.path.join(seed_dir, "grid")))


@pytest.mark.slow
def test_ablate_renders_one_data_set_for_all_variants(ablation):
    seed_dir = os.path.join(ablation.out, "seed0")
    assert len([d for d in os.listdir(seed_dir) if d.startswith("synthfaces")]) == 1


@pytest.mark.slow
def test_ablate_trains_every_baseline_stage_itself(ablation):
    assert all(r.status == "complete" and not r.reused_from for r in ablation.baseline.stages.values())


@pytest.mark.slow
def test_the_grid_variant_reuses_the_baselines_frl_hint_and_whole(ablation):
    baseline, grid = ablation.baseline, ablation.grid
    for stage in STAGES:
        rec = grid.stages[stage]
        assert rec.status == "complete"
        if stage in ("frl", "hint", "whole"):
            assert rec.reused_from == baseline.run_dir and rec.artifact == baseline.stages[stage].artifact
        else:
            assert not rec.reused_from and rec.artifact.startswith(grid.run_dir), stage
    assert not os.path.exists(os.path.join(grid.run_dir, "stages", "frl")), "the grid trained no FRL"
    assert grid.stages["localize"].metrics["source"] == "grid"
    assert any("reusing frl from baseline, hint from baseline, whole from baseline" in line for line in ablation.logs)


@pytest.mark.slow
def test_ablations_json_is_the_returned_summary_with_both_variants(ablation):
    on_disk = ablation.on_disk
    assert on_disk == json.loads(json.dumps(ablation.summary))
    assert on_disk["complete"] and list(on_disk["variants"]) == ["baseline", "grid"]
    assert os.path.exists(os.path.join(ablation.out, "ablations.md"))


@pytest.mark.slow
def test_each_variants_measures_are_in_range(ablation):
    for v in ablation.on_disk["variants"].values():
        m = v["per_seed"]["0"]
        assert set(m["accuracy"]) == {"frl", "whole", "part", "paw"} and all(0 < a <= 100 for a in m["accuracy"].values())
        assert 0 <= m["pointing"] <= 100 and m["params"]["deployed"] > 0
        assert 0 < m["wall_time_s"]["spent"] <= m["wall_time_s"]["total"]
        assert set(m["rsl"]) == {"whole", "part", "whole_heavier"}
        assert v["mean"]["accuracy"] == m["accuracy"]


@pytest.mark.slow
def test_the_grid_variants_total_time_counts_the_stages_it_reused(ablation):
    g = ablation.on_disk["variants"]["grid"]["per_seed"]["0"]
    assert g["wall_time_s"]["total"] - g["wall_time_s"]["spent"] == pytest.approx(
        sum(ablation.baseline.stages[s].wall_time_s for s in ("frl", "hint", "whole")), abs=0.2)


@pytest.mark.slow
def test_an_ablate_rerun_continues_and_trains_nothing(ablation):
    runs = {"baseline": ablation.baseline, "grid": ablation.grid}
    before = {n: {s: r.finished_at for s, r in m.stages.items()} for n, m in runs.items()}
    ablate(ablation.cfg, ablation.out, seeds=1, variants=["baseline", "grid"], log=lambda s: None)
    for n, m in runs.items():
        after = Manifest.load_or_create(m.run_dir)
        assert {s: r.finished_at for s, r in after.stages.items()} == before[n]


@pytest.mark.slow
def test_an_ablation_reusing_a_finished_run_trains_none_of_its_stages(ablation, tmp_path):
    other = ablate(ablation.cfg, str(tmp_path / "other"), seeds=1, variants=["baseline"],
                   reuse=[ablation.baseline.run_dir], log=lambda s: None)
    adopted = Manifest.load_or_create(os.path.join(str(tmp_path / "other"), "seed0", "baseline"))
    assert {s: r.reused_from for s, r in adopted.stages.items()} == {s: ablation.baseline.run_dir for s in STAGES}
    assert other["variants"]["baseline"]["mean"]["accuracy"] == \
        ablation.summary["variants"]["baseline"]["mean"]["accuracy"]


@pytest.mark.slow
def test_ablate_refuses_to_reuse_a_run_that_does_not_exist(ablation, tmp_path):
    with pytest.raises(PawRayError, match="--reuse"):
        ablate(ablation.cfg, str(tmp_path / "third"), reuse=[str(tmp_path / "nothing")], log=lambda s: None)
