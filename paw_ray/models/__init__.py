"""The networks of the paper (Ding et al., AAAI 2018): the FRL teacher with multi-net
learning, the SNet students and hint loss, part boxes and crops, and PaW with its region
switch and attribute relation layers."""

from paw_ray.models.blocks import ConvBNReLU, GroupedAttributeHead, GroupedBatchNorm2d, make_layers
from paw_ray.models.frl import FRL, FRLOutput, MNLBranch, TNET_LAYOUT, frl_loss
from paw_ray.models.hint import HintObjective, HintTerms, hint_loss
from paw_ray.models.windows import crop_windows, grid_centres, part_centres, part_windows
from paw_ray.models.paw import AttributeRelation, PartSubnets, PaW, PaWOutput, RegionSwitch, paw_loss
from paw_ray.models.students import STUDENT_LAYOUTS, SNet, StudentOutput
from paw_ray.models.summary import PAPER_PARAMS, count_params, format_model_summary, model_summary

__all__ = [
    "ConvBNReLU", "GroupedAttributeHead", "GroupedBatchNorm2d", "make_layers",
    "FRL", "FRLOutput", "MNLBranch", "TNET_LAYOUT", "frl_loss",
    "HintObjective", "HintTerms", "hint_loss",
    "crop_windows", "grid_centres", "part_centres", "part_windows",
    "AttributeRelation", "PartSubnets", "PaW", "PaWOutput", "RegionSwitch", "paw_loss",
    "STUDENT_LAYOUTS", "SNet", "StudentOutput",
    "PAPER_PARAMS", "count_params", "format_model_summary", "model_summary",
]
