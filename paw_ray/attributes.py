"""The 40 CelebA attributes, in the order of ``list_attr_celeba.txt``.

Each attribute carries the face region where it lives (docs/synthfaces.md, "Cues") and
whether it is *local* (it has a place on the face: eyes, brows, nose, mouth, lips,
chin, cheeks, ears, neck, hair line, head top) or *global* (a property of the whole
face or image). Local attributes are the ones whose FRL part centre can be scored
against a ground-truth cue box ("pointing accuracy").

``GRID_BLOCK`` assigns each attribute a block of a fixed 4x4 grid over the face
image: the paper's crude alternative to FRL part localisation (Table 5, "4x4 grid").
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "ATTRIBUTES",
    "NUM_ATTRIBUTES",
    "Attribute",
    "ATTRIBUTE_INFO",
    "LOCAL_ATTRIBUTES",
    "GLOBAL_ATTRIBUTES",
    "LOCAL_MASK",
    "GRID_BLOCK",
    "attribute_index",
]


@dataclass(frozen=True)
class Attribute:
    name: str
    region: str
    local: bool
    grid_block: tuple[int, int]  # (row, col) in a 4x4 grid over an upright face


# name, region, local, 4x4 grid block (row, col) of an upright, centred face.
_TABLE: tuple[tuple[str, str, bool, tuple[int, int]], ...] = (
    ("5_o_Clock_Shadow", "jaw", True, (3, 1)),
    ("Arched_Eyebrows", "brows", True, (1, 1)),
    ("Attractive", "face", False, (1, 2)),
    ("Bags_Under_Eyes", "under eyes", True, (2, 1)),
    ("Bald", "head top", True, (0, 1)),
    ("Bangs", "forehead", True, (0, 2)),
    ("Big_Lips", "mouth", True, (3, 2)),
    ("Big_Nose", "nose", True, (2, 2)),
    ("Black_Hair", "hair", True, (0, 1)),
    ("Blond_Hair", "hair", True, (0, 2)),
    ("Blurry", "image", False, (1, 1)),
    ("Brown_Hair", "hair", True, (0, 1)),
    ("Bushy_Eyebrows", "brows", True, (1, 2)),
    ("Chubby", "face", False, (2, 1)),
    ("Double_Chin", "chin", True, (3, 2)),
    ("Eyeglasses", "eyes", True, (1, 1)),
    ("Goatee", "chin", True, (3, 1)),
    ("Gray_Hair", "hair", True, (0, 2)),
    ("Heavy_Makeup", "eyes", True, (1, 2)),
    ("High_Cheekbones", "cheeks", True, (2, 1)),
    ("Male", "face", False, (2, 2)),
    ("Mouth_Slightly_Open", "mouth", True, (3, 1)),
    ("Mustache", "upper lip", True, (2, 2)),
    ("Narrow_Eyes", "eyes", True, (1, 1)),
    ("No_Beard", "jaw + chin", True, (3, 2)),
    ("Oval_Face", "face", False, (2, 1)),
    ("Pale_Skin", "face", False, (2, 2)),
    ("Pointy_Nose", "nose", True, (2, 1)),
    ("Receding_Hairline", "temples", True, (0, 1)),
    ("Rosy_Cheeks", "cheeks", True, (2, 2)),
    ("Sideburns", "sides", True, (2, 0)),
    ("Smiling", "mouth", True, (3, 2)),
    ("Straight_Hair", "hair", True, (0, 1)),
    ("Wavy_Hair", "hair", True, (0, 2)),
    ("Wearing_Earrings", "ears", True, (2, 3)),
    ("Wearing_Hat", "head top", True, (0, 2)),
    ("Wearing_Lipstick", "mouth", True, (3, 1)),
    ("Wearing_Necklace", "neck", True, (3, 2)),
    ("Wearing_Necktie", "below neck", True, (3, 1)),
    ("Young", "forehead, eye corners", True, (1, 2)),
)

ATTRIBUTE_INFO: tuple[Attribute, ...] = tuple(Attribute(*row) for row in _TABLE)
ATTRIBUTES: tuple[str, ...] = tuple(a.name for a in ATTRIBUTE_INFO)
NUM_ATTRIBUTES = len(ATTRIBUTES)
LOCAL_MASK: tuple[bool, ...] = tuple(a.local for a in ATTRIBUTE_INFO)
LOCAL_ATTRIBUTES: tuple[str, ...] = tuple(a.name for a in ATTRIBUTE_INFO if a.local)
GLOBAL_ATTRIBUTES: tuple[str, ...] = tuple(a.name for a in ATTRIBUTE_INFO if not a.local)
GRID_BLOCK: tuple[tuple[int, int], ...] = tuple(a.grid_block for a in ATTRIBUTE_INFO)

_INDEX = {name: i for i, name in enumerate(ATTRIBUTES)}


def attribute_index(name: str) -> int:
    """Position of ``name`` in CelebA's order; a clear error for an unknown name."""
    try:
        return _INDEX[name]
    except KeyError:
        raise KeyError(
            f"unknown attribute {name!r}; the 40 CelebA attributes are: {', '.join(ATTRIBUTES)}"
        ) from None


assert NUM_ATTRIBUTES == 40
