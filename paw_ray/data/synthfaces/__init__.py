"""SynthFaces: the embedded default data set. Unaligned synthetic faces whose 40 CelebA
attributes are drawn as visible cues at known places, with the ground-truth box of
every local cue (``docs/synthfaces.md`` describes the cues, the geometry and the
determinism contract).

The modules, one concept each: ``geometry`` (the face frame, the pose, polygon shapes),
``colours``, ``canvas`` (drawing and cue boxes), ``looks`` (a face's sampled appearance
and its per-component generators), the region painters ``background``, ``body``,
``hair``, ``skin``, ``eyes``, ``mouth`` and ``accessories``, ``photo`` (lighting, blur,
noise), ``render`` (:func:`render_face`, which calls the painters in order),
``examples`` (image ``i`` of seed ``s``) and ``dataset`` (shards, Ray tasks). The names
below are the public API; the modules' other names are this package's own.
"""

from paw_ray.data.synthfaces.dataset import DEFAULT_CHUNK, split_sizes, synthesize
from paw_ray.data.synthfaces.examples import GENERATOR_VERSION, clean_labels, encode_png, image_id, render_example
from paw_ray.data.synthfaces.geometry import Pose, sample_pose
from paw_ray.data.synthfaces.render import SynthError, render_face

__all__ = [
    "GENERATOR_VERSION",
    "DEFAULT_CHUNK",
    "SynthError",
    "Pose",
    "sample_pose",
    "render_face",
    "render_example",
    "clean_labels",
    "image_id",
    "encode_png",
    "synthesize",
    "split_sizes",
]
