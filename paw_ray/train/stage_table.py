"""The pipeline's eight stages, declared once (docs/architecture.md, "Stages").

Each entry names a stage and says what it reads, how it runs, where its code lives and
which part of the config its result depends on. Its config section is ``cfg.<name>``.
The manifest (order, fingerprints), the runner (dispatch), the CLI (stage choices),
tune (which stages it searches), the report (training curves) and the placement check
all read this table: adding a stage, or changing what one reads, touches this table and
the stage's own module.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from types import ModuleType
from typing import Any, Callable

from paw_ray.config import Config, semantic_dict

__all__ = ["Stage", "StageRun", "STAGE_TABLE", "STAGES", "TRAIN_STAGES", "stage", "stage_inputs",
           "RAY_TRAIN", "ACTOR_POOL", "TASK_FANOUT", "DATA_PASS"]

# How a stage runs.
RAY_TRAIN = "ray_train"  # a TorchTrainer over the shared epoch loop; its module has ``build_task``
ACTOR_POOL = "actor_pool"  # a Ray Data pass over a pool of model actors; its module has ``run_stage``
TASK_FANOUT = "task_fanout"  # one Ray task per part; its module has ``run_stage``
DATA_PASS = "data_pass"  # a Ray Data pass scored in the driver; its module has ``run_stage``


@dataclass(frozen=True)
class Stage:
    name: str
    paper: str  # what it is, and where the paper describes it
    runs_as: str  # RAY_TRAIN | ACTOR_POOL | TASK_FANOUT | DATA_PASS
    module: str  # the module with its code
    inputs: Callable[[Config], tuple[str, ...]]  # the stages whose results it reads, under a config
    own_config: Callable[[Config], dict[str, Any]]  # what its result depends on beyond the shared fields
    crops_at_centres: bool = False  # its input stream cuts the part crops at localize's centres

    @property
    def trains(self) -> bool:
        """Whether it is a Ray Train stage."""
        return self.runs_as == RAY_TRAIN

    def code(self) -> ModuleType:
        """The stage's module (imported on first use, by name: the table sits below the stages)."""
        return importlib.import_module(self.module)


@dataclass(frozen=True)
class StageRun:
    """What the runner hands a stage that is not a Ray Train stage (its module's ``run_stage``,
    which returns ``(artifact location, metrics)``)."""

    cfg: Config
    data_dir: str
    data_label: str  # how the results name the data set
    run_dir: str
    fingerprint: str
    inputs: dict[str, str]  # input stage -> its artifact's location
    log: Callable[[str], None]


def _reads(*names: str) -> Callable[[Config], tuple[str, ...]]:
    return lambda cfg: names


def _student(cfg: Config) -> dict[str, Any]:
    """The fields that shape every student subnet (Table 3)."""
    return {"student": cfg.student, "student_width": cfg.student_width,
            "maps_per_attribute": cfg.frl.maps_per_attribute}


STAGE_TABLE: tuple[Stage, ...] = (
    Stage("frl", "the face region localization network, weakly supervised by the labels (§3.1-3.2)", RAY_TRAIN,
          "paw_ray.train.stages.frl", _reads(), lambda cfg: semantic_dict(cfg.frl)),
    # fixed grid centres (parts.source=grid) consult no FRL
    Stage("localize", "each attribute's part centre on each image, from the FRL's heatmaps (§3.2, Fig. 3)", ACTOR_POOL,
          "paw_ray.train.stages.localize", lambda cfg: () if cfg.parts.source == "grid" else ("frl",),
          lambda cfg: {"source": cfg.parts.source}),
    Stage("hint", "hint training of the whole-image subnet g_0 from the frozen FRL (§3.3, Eq. 3-4)", RAY_TRAIN,
          "paw_ray.train.stages.student", _reads("frl"), lambda cfg: {**semantic_dict(cfg.hint), **_student(cfg)}),
    # with a hint term in stage b too (whole.lambda1 > 0) the FRL is its teacher as well
    Stage("whole", "g_0 trained on the attribute loss (§3.3)", RAY_TRAIN, "paw_ray.train.stages.student",
          lambda cfg: ("hint", "frl") if cfg.whole.lambda1 > 0 else ("hint",), lambda cfg: semantic_dict(cfg.whole)),
    Stage("parts", "the 40 part subnets g_1..g_40, one per attribute's window (§3.4)", TASK_FANOUT,
          "paw_ray.train.stages.parts", _reads("whole", "localize"),
          lambda cfg: {**semantic_dict(cfg.parts), "part_size": cfg.data.part_size}),
    Stage("fusion", "the region switch (Eq. 5) and attribute relation layers on the frozen subnets (§3.4)",
          RAY_TRAIN, "paw_ray.train.stages.paw", _reads("whole", "parts", "localize"),
          lambda cfg: {**semantic_dict(cfg.fusion), "part_size": cfg.data.part_size}, crops_at_centres=True),
    Stage("finetune", "the whole PaW network fine-tuned end to end (§3.4)", RAY_TRAIN, "paw_ray.train.stages.paw",
          _reads("fusion", "localize"), lambda cfg: semantic_dict(cfg.finetune), crops_at_centres=True),
    Stage("evaluate", "Table 5's rows and the pointing game on the test split", DATA_PASS,
          "paw_ray.train.stages.evaluate", _reads("frl", "localize", "whole", "parts", "finetune"),
          lambda cfg: {}),
)

STAGES: tuple[str, ...] = tuple(s.name for s in STAGE_TABLE)  # in pipeline order
TRAIN_STAGES: tuple[str, ...] = tuple(s.name for s in STAGE_TABLE if s.trains)
_BY_NAME = {s.name: s for s in STAGE_TABLE}


def stage(name: str) -> Stage:
    """The table's entry for ``name``."""
    try:
        return _BY_NAME[name]
    except KeyError:
        raise ValueError(f"unknown stage {name!r}; stages are {', '.join(STAGES)}") from None


def stage_inputs(cfg: Config, name: str) -> tuple[str, ...]:
    """The stages whose results ``name`` reads under ``cfg``."""
    return stage(name).inputs(cfg)
