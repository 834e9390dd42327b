"""Model cards: ``MODEL_CARD.md`` beside an exported cascade (``model_card``) and the
``README.md`` of a model folder (``folder_card``, with the YAML front matter that model hubs
read). Both say what the model is, what it was trained and measured on, the data's licence
terms, how to call it, what it is for and where it fails."""

from __future__ import annotations

import yaml

from paw_ray.attributes import ATTRIBUTES
from paw_ray.models.summary import count_params
from paw_ray.train.stages.evaluate import RESULT_ROWS, pointing_scope

__all__ = ["CELEBA_TERMS_URL", "parameter_counts", "model_card", "folder_card", "front_matter",
           "trained_on_synthfaces"]

CELEBA_TERMS_URL = "https://mmlab.ie.cuhk.edu.hk/projects/CelebA.html"


def trained_on_synthfaces(run) -> bool:
    """Whether the run trained on SynthFaces (rendered for the run, or a ``paw-ray synth``
    folder). Any other prepared data set is taken to be CelebA, whose terms are the stricter."""
    return not run.cfg.data.path or "synth" in (run.data_label or "").lower()


def parameter_counts(cascade) -> dict[str, int]:
    """Parameters of each part of the exported cascade (BatchNorm buffers excluded)."""

    paw = cascade.paw
    out = {"frl_localization": count_params(cascade.frl) if cascade.frl is not None else 0,
           "whole_subnet": count_params(paw.whole), "part_subnets": count_params(paw.parts),
           "rsl": count_params(paw.rsl), "arl": count_params(paw.arl)}
    out["paw"] = count_params(paw)
    out["total"] = count_params(cascade)
    return out


def _accuracy_section(results: dict | None) -> list[str]:
    if results is None:
        return ["Not measured: the run's evaluate stage has not written results.json."]
    lines = [f"Test split of the training data, {results['n_test']} images (from `results.json`). "
             "Decision: probability > 0.5 (the fitted rule's figures are in the run's `results.md`).", "",
             "| network | mean accuracy | mean balanced accuracy |", "|---|---|---|"]
    for row in RESULT_ROWS:
        if row in results["mean_accuracy"]:
            lines.append(f"| {row} | {100 * results['mean_accuracy'][row]:.2f}% | "
                         f"{100 * results['mean_balanced_accuracy'][row]:.2f}% |")
    paw = results["accuracy"].get("paw")
    if paw:
        order = sorted(range(len(paw)), key=lambda j: paw[j])
        lines += ["", "PaW, the 5 weakest attributes: " + ", ".join(
            f"{ATTRIBUTES[j]} {100 * paw[j]:.1f}%" for j in order[:5]) + "; the 5 strongest: " + ", ".join(
            f"{ATTRIBUTES[j]} {100 * paw[j]:.1f}%" for j in order[-5:]) + "."]
    loc = results.get("localization")
    if loc:
        lines += ["", f"Localization (SynthFaces ground-truth cue boxes): the part centre falls inside the cue box "
                      f"for {100 * loc['mean']:.1f}% of test images ({pointing_scope(loc)}) on average over the "
                      f"local attributes "
                      f"(a random centre: {100 * loc['chance_mean']:.1f}%)."]
    return lines


def _meta_file(contract: dict) -> str:
    """The machine-readable file beside the model: ``config.json`` in a folder, else ``model.json``."""
    return "config.json" if contract["format"] == "folder" else "model.json"


def _decision_text(contract: dict) -> str:
    decision = contract["decision"]
    if decision["rule"] == "fixed":
        return "decision: > 0.5"
    return (f"calibrated by a temperature per attribute; decision: > the attribute's threshold, "
            f"both in `{_meta_file(contract)}` under `decision`, fitted on the validation split for "
            f"{decision['rule']}")


def _licence_section(run) -> list[str]:
    """The training data's terms, which bind the weights derived from it."""
    if trained_on_synthfaces(run):
        return ["Trained on SynthFaces, faces drawn by paw_ray itself: no third-party images or labels. "
                "The weights are under the project's licence, Apache-2.0."]
    return [f"Trained on CelebA, whose terms ({CELEBA_TERMS_URL}) allow **non-commercial research purposes "
            "only**: no part of its images or of data derived from them may be reproduced, sold or otherwise "
            "exploited for commercial purposes, and the images are not the data set authors' to license. "
            "These weights are derived from CelebA, so treat them, and what is built on them, under the same "
            "terms. paw_ray's Apache-2.0 licence covers its code, not these weights."]


def front_matter(run, contract: dict) -> str:
    """The YAML block at the top of a hub's ``README.md``: licence, data set, tags and the
    measured test accuracy (``model-index``) when the run was evaluated."""
    synth = trained_on_synthfaces(run)
    dataset = "SynthFaces" if synth else "CelebA"
    meta: dict = ({"license": "apache-2.0"} if synth else
                  {"license": "other", "license_name": "celeba-non-commercial-research",
                   "license_link": CELEBA_TERMS_URL})
    meta.update({"pipeline_tag": "image-classification",
                 "tags": ["face-attributes", "multi-label-image-classification", "paw-cascade", "paw_ray",
                          "pytorch", "safetensors", dataset.lower()],
                 "datasets": [dataset], "metrics": ["accuracy"]})
    results = run.results or {}
    if "paw" in results.get("mean_accuracy", {}):
        scope = f"over the 40 attributes, probability > 0.5, {results['n_test']} test images"
        meta["model-index"] = [{
            "name": f"paw-cascade-{run.preset}",
            "results": [{"task": {"type": "image-classification",
                                  "name": "Face attribute classification (40 binary attributes)"},
                         "dataset": {"name": dataset, "type": dataset.lower(), "split": "test"},
                         "metrics": [{"type": "accuracy", "name": f"mean accuracy {scope}",
                                      "value": round(float(results["mean_accuracy"]["paw"]), 4)},
                                     {"type": "balanced_accuracy", "name": f"mean balanced accuracy {scope}",
                                      "value": round(float(results["mean_balanced_accuracy"]["paw"]), 4)}]}]}]
    return "---\n" + yaml.safe_dump(meta, sort_keys=False, allow_unicode=True) + "---\n\n"


def model_card(run, contract: dict) -> str:
    """Markdown model card for an export of ``run`` described by ``contract`` (model.json)."""
    parity = contract["parity"]
    files = [f"- `{contract['file']}` ({contract['format']}), sha256 `{contract['sha256']}`",
             "- `model.json`: the input/output contract below, machine-readable, and the parity check."]
    verified = (f"- Verified at export: on {parity['images']} test faces the exported model's probabilities differ "
                f"from the PyTorch model's by at most {parity['max_abs_probability_diff']:.1e} (tolerance "
                f"{parity['tolerance']:g}) and its part boxes are identical.")
    trust = ("A TorchScript file is a program: `torch.jit.load` runs the code inside it. Load only exports you made "
             "or received from someone you trust, and check the sha256 above. An ONNX file is a graph executed by "
             "onnxruntime's operators. The paw_ray tools never load exported files to serve; they rebuild the "
             "networks from the run's weights with weights-only loading.")
    return _card(run, contract, files, [], verified, trust)


def folder_card(run, config: dict) -> str:
    """``README.md`` of a model folder described by ``config`` (its config.json): the front
    matter, then the card."""
    parity = config["parity"]
    files = [f"- `{config['file']}`: the weights, tensors only, sha256 `{config['sha256']}`.",
             "- `config.json`: the architecture that rebuilds the networks, the input/output contract below, "
             "the attribute order, the decision rule, the normalisation, the face-box rule and the detector "
             "settings.",
             "- `README.md`: this card."]
    use = ["- `paw-ray predict --model DIR photo.jpg` finds the faces in a photo and predicts each one, as "
           "`paw-ray predict --run-dir` does on the run; in Python, "
           "`paw_ray.serve.model_folder.open_model_folder(DIR)` rebuilds the networks (`.cascade(rule)`)."]
    verified = (f"- Verified at export: reloaded from these files, the networks give the run's probabilities "
                f"and part boxes on {parity['images']} random images (max |dp| "
                f"{parity['max_abs_probability_diff']:.1e}).")
    trust = ("`model.safetensors` holds tensors and a JSON header, nothing executable: reading it runs no code, "
             "unlike a pickle or a TorchScript file. paw_ray rebuilds the networks from `config.json` and refuses "
             "weights whose tensor names, shapes or dtypes do not match it.")
    return front_matter(run, config) + _card(run, config, files, use, verified, trust)


def _card(run, contract: dict, files: list[str], use: list[str], verified: str, trust: str) -> str:
    """The card's sections, with the format's own files, usage, verification and trust."""
    s = contract["input"]["shape"][-1]
    params = contract["parameters"]
    lines = [
        f"# Model card: PaW cascade face-attribute classifier ({run.preset} preset)",
        "",
        "The cascade of Ding et al., *A Deep Cascade Network for Unaligned Face Attribute Classification* "
        "(AAAI 2018): a face region localization network (FRL) finds one part per attribute from its "
        "class activation map, and the parts-and-whole network (PaW) — a whole-image subnet, 40 part "
        "subnets, a region switch layer and an attribute relation layer — scores the 40 CelebA attributes.",
        "",
        "## Files",
        *files,
        "",
        "## How to call it",
        *use,
        f"- Input `images`: uint8 `(batch, 3, {s}, {s})`, RGB, a **face box** cut, squared and resized to "
        f"{s}x{s} (the face-box rule of `paw_ray.data.facebox`; `paw-ray predict` does this for photos). "
        "Normalisation is inside the model.",
        f"- Outputs: `probabilities` float32 `(batch, 40)` in CelebA attribute order ({_decision_text(contract)}); "
        f"`boxes` int64 `(batch, 40, 4)`: x, y, w, h of each attribute's {contract['part_size']}x"
        f"{contract['part_size']} part window in input pixels.",
        f"- Part centres: {'FRL heatmap argmax' if contract['parts_source'] == 'frl' else 'fixed 4x4 grid'}.",
        verified,
        "",
        "## Trust",
        trust,
        "",
        "## Training",
        f"- Data: {run.data_label}. Preset: `{run.preset}` (input {s}x{s}, parts {contract['part_size']}px, "
        f"subnets `{run.cfg.student}` at width {run.cfg.student_width:g}).",
        f"- Run directory: `{contract['run_dir']}`.",
        "- Schedule (paper §3): FRL with multi-net learning; hint-based compression of the whole-image "
        "subnet; 40 part subnets trained alone on their parts; RSL+ARL fusion; end-to-end fine-tuning.",
        "",
        "## Data licence",
        *_licence_section(run),
        "",
        "## Parameters",
        "| component | parameters |", "|---|---|",
        f"| FRL localization network (MNL branch removed) | {params['frl_localization']:,} |",
        f"| whole-image subnet g_0 | {params['whole_subnet']:,} |",
        f"| 40 part subnets | {params['part_subnets']:,} |",
        f"| RSL (41x40) + ARL (40x40) | {params['rsl'] + params['arl']:,} |",
        f"| **total exported** | **{params['total']:,}** |",
        "",
        "## Measured accuracy",
        *_accuracy_section(run.results),
        "",
        "## Intended use",
        "Research and teaching: reproducing the paper's cascade, studying where attribute evidence lies on a "
        "face, and as a component of systems that describe face images in aggregate. Not for identifying "
        "people, and not for decisions about individuals (hiring, access, policing, credit, age or gender "
        "verification).",
        "",
        "## Known limits",
        *_known_limits(run, contract),
    ]
    return "\n".join(lines) + "\n"


def _known_limits(run, contract: dict) -> list[str]:
    """Where the model fails: the run's own limits (synthetic data, a tiny preset), then CelebA's."""
    lines = []
    if trained_on_synthfaces(run):
        lines.append("- **Trained on SynthFaces, a synthetic data set** of drawn faces whose attributes are visible "
                     "cues at known places. Its accuracy says nothing about real photographs; this model is for "
                     "testing the pipeline, not for use on real faces.")
    if run.preset in ("smoke", "demo"):
        lines.append(f"- The `{run.preset}` preset is deliberately tiny (small images, few epochs): its numbers "
                     "show that the pipeline works, not what the method reaches.")
    lines += [
        "- CelebA-trained attribute models inherit CelebA's **label noise**: each image was labelled once by "
        "annotators, and studies of the labels find a sizeable share of wrong or inconsistent ones, worst "
        "for subtle attributes (5_o_Clock_Shadow, Bags_Under_Eyes, Narrow_Eyes, Oval_Face).",
        "- Several attributes are **subjective** or social judgements, not facts about a face: Attractive, "
        "Young, Heavy_Makeup, Big_Nose, Big_Lips, Oval_Face, Pointy_Nose, Chubby. A prediction reproduces "
        "the annotators' judgement, with their biases.",
        "- **Demographic skew**: CelebA is celebrity photos, mostly young, light-skinned and from Western media; "
        "accuracy is lower and errors are correlated for under-represented groups (older people, darker "
        "skin), and Male / Young are binary labels that do not describe people's identities.",
        "- Attributes correlate in the training data (e.g. Heavy_Makeup with Wearing_Lipstick and not Male); "
        "the attribute relation layer learns and uses these correlations, so a prediction may follow a "
        "correlated attribute rather than visible evidence.",
        "- The input must be a face box like the training ones (one face, roughly centred, about the face's "
        "size). A whole photo, a profile view or a tiny face gives unreliable outputs. `paw-ray predict` "
        f"finds frontal faces with the {contract['face_box']['detection']['detector']} and cuts them by the "
        f"face-box rule (margin {contract['face_box']['margin']:g}; this run's training faces: "
        f"{contract['face_box']['training_faces']}); `{_meta_file(contract)}` under `face_box` says so for other "
        "consumers.",
        "- Accuracy is the mean over 40 attributes of a test split from the same source as the training "
        "data; it is not a measure of performance on other populations or cameras.",
    ]
    return lines
