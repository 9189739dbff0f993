"""All options of the registration pipeline, grouped by the stage that reads them.

:class:`Config` holds the *user options* (what the command line sets) at its top level and the
*tuned internals* in one frozen group per stage: :class:`FramesConfig`, :class:`SearchConfig`,
:class:`MatchConfig`, :class:`EstimateConfig`, :class:`VerifyConfig` and the acceptance
:class:`~register.decide.Policy`. Each stage receives only its group. The internals were chosen
on the validation split; ``docs/policy.md`` and ``docs/results.md`` say how.

Derive a changed copy with :meth:`Config.replace`, which takes user options, whole groups, or
any internal by its name (``cfg.replace(max_keypoints=500, accept_z=0)``); build one from a
mapping with :func:`config_from_dict`, which also reads the flat configs that ``report.json``
and ``pipelines/configs`` held before the grouping, and rejects unknown keys with a message
naming them.
"""
from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from .decide import Policy

MODALITIES = ("auto", "opt-sar", "vis-nir", "vis-lwir")
TRANSFORMS = ("auto", "homography", "affine", "similarity")
DEVICES = ("auto", "cpu", "cuda")
#: the network's arithmetic (register.score.set_precision)
PRECISIONS = ("auto", "float32", "bfloat16")
SELECTIONS = ("structural", "network", "fused")
#: the probability a selected match needs under each selection, unless ``min_probability`` says
#: otherwise: none without the network; 0.3 fused and 0.5 network-only (the gates of
#: pipelines/configs/select_fused.json and select_network.json; not re-tuned for new weights)
SELECTION_GATES = {"structural": 0.0, "fused": 0.3, "network": 0.5}

#: Side of the square patches the network scores, in pixels.
PATCH_SIZE = 64
#: Keypoints closer than this to the border (or to nodata) are dropped, in pixels.
BORDER_PX = 32


@dataclass(frozen=True)
class FramesConfig:
    """Working images and the matching frame (:mod:`register.frames`)."""

    work_max_side: int = 768  # images are downscaled so their longer side is at most this
    # a footprint under match_min_side px is matched on the fixed frame enlarged up to
    # match_max_zoom (1 = off); SRIF's small images kept too few keypoints without it
    match_min_side: int = 256
    match_max_zoom: float = 2.0


@dataclass(frozen=True)
class SearchConfig:
    """Hypotheses for inputs that are not both georeferenced (:mod:`register.search`,
    :mod:`register.sift`). Chosen with ``python -m pipelines.search_sweep`` on validation pairs."""

    side: int = 160  # longer side of the images for the coarse rotation/scale search
    # longer side at which the best coarse peaks are rescored and refined; None: 2 x side
    fine_side: int | None = None
    # with modality "opt-sar" the coarse search runs at this side instead (None: side), the
    # rescoring and refinement staying at 2 x side: speckle averages out, and on validation
    # optical-SAR the right hypothesis came first 48 times of 52 against 45 (docs/results.md)
    sar_side: int | None = 80
    angle_step_deg: float = 7.5
    scales: tuple[float, ...] = (0.5, 0.59, 0.71, 0.84, 1.0, 1.19, 1.41, 1.68, 2.0)
    # hypotheses handed to the matching stage; those from Policy.late_rank on are a fallback
    # (docs/policy.md, "Late hypotheses"): 8 against 4 found 2 of 153 optical-SAR validation
    # pairs more, no other validation set moved
    top_k: int = 8
    calibrate: bool = True  # standardise peaks against the other angles at their scale
    rescore: int = 16  # distinct coarse peaks rescored at twice the resolution
    keypoint_hypothesis: bool = True  # try a SIFT similarity before the search
    keypoint_max: int = 2000  # SIFT keypoints per image
    keypoint_min_inliers: int = 15

    @property
    def fine_px(self) -> int:
        """Longer side (px) at which coarse peaks are rescored and refined: ``fine_side``, or
        twice ``side``."""
        return int(self.fine_side) if self.fine_side is not None else 2 * self.side

    def for_modality(self, modality: str) -> "SearchConfig":
        """The search settings for ``modality``: ``sar_side`` replaces ``side`` for
        "opt-sar" (with :attr:`fine_px` kept), the settings themselves otherwise."""
        if modality != "opt-sar" or self.sar_side is None:
            return self
        return dataclasses.replace(self, side=self.sar_side, fine_side=self.fine_px,
                                   sar_side=None)


@dataclass(frozen=True)
class MatchConfig:
    """Keypoints, candidate positions, scoring and refinement (:mod:`register.detect`,
    :mod:`register.match`, :mod:`register.scorers`)."""

    detector: str = "structure"  # "structure" (structure-tensor corners) | "fast" | "grid"
    nms_radius: int = 8
    # candidate window around each predicted position (px of the matching frame)
    search_radius: float = 16.0
    shortlist: int = 4  # structural-correlation peaks per keypoint
    # peaks per keypoint in the refinement passes (narrower windows); None: ``shortlist``
    refine_shortlist: int | None = None
    # how a keypoint's candidates are ranked: "structural" (no network), "network" (SSML-QNet
    # probability) or "fused" (probability x relative structural correlation; the default since
    # the distilled lite weights: best on the validation split, docs/results.md)
    selection: str = "fused"
    # a match needs at least this probability (> 0 needs the network); None: the selection's
    # own gate, SELECTION_GATES[selection]
    min_probability: float | None = None
    # the network scores matching passes whose window radius is at least this (px of the
    # matching frame); narrower refinement passes rank by the structural correlation alone
    network_min_radius: float = 0.0
    # ... and at most this (None: no limit); wider passes rank by the structural correlation
    network_max_radius: float | None = None
    ratio: float = 1.0  # the chosen candidate's score must beat ratio x the runner-up's
    refine_iterations: int = 2  # matching passes after the first, each with a halved window
    # a confirmed hypothesis that does not end the loop is refined at once, and ends it when
    # the refined transform is clearly supported (register.decide.clearly_supported): the
    # other hypotheses are then not matched (validation: same 144 results, 7 of 52
    # optical-SAR pairs stopped early, their set's time -11 %)
    early_refine: bool = True
    # patch pairs per network batch; None: the device's own (register.score.DEFAULT_BATCH)
    batch_size: int | None = None

    @property
    def gate(self) -> float:
        """The probability a match needs: ``min_probability``, or the selection's own gate."""
        if self.min_probability is not None:
            return float(self.min_probability)
        return SELECTION_GATES[self.selection]


@dataclass(frozen=True)
class EstimateConfig:
    """RANSAC (:mod:`register.estimate`)."""

    ransac_threshold: float = 3.0  # inlier reprojection threshold (px)
    # the models transform="auto" fits and compares by GRIC (register.estimate.MODEL_DOF)
    auto_models: tuple[str, ...] = ("homography", "affine")
    # ... with modality "opt-sar", first these: homographies fitted to SAR matches bent toward
    # local biases (validation optical-SAR 73 -> 79 % @5 px); when none of them is confirmed,
    # the pair is judged again with auto_models (docs/results.md, "Optical-SAR models")
    sar_auto_models: tuple[str, ...] = ("affine", "similarity")
    ransac_iterations: int = 1000  # batches of 256 minimal samples
    min_inliers: int = 12


@dataclass(frozen=True)
class VerifyConfig:
    """The global structural check (:mod:`register.verify`)."""

    side: int = 320  # longer side in px of the frame the check runs in ("check px")
    # the network's vote (register.verify.network_check): keypoints, and shifts out to
    # network_radius matching-frame px every network_step px (5 x 5 = 25 patch pairs a keypoint)
    network_keypoints: int = 64
    network_radius: int = 8
    network_step: int = 4


@dataclass(frozen=True)
class PolishConfig:
    """The final similarity polish of an accepted transform (:mod:`register.polish`)."""

    # modalities it runs for: on validation it helped optical-SAR only (docs/results.md, "Polish")
    modalities: tuple[str, ...] = ("opt-sar",)
    side: int = 320  # longer side in px of the frame the correlation is computed in
    # first steps of shift x, shift y (working fixed px), rotation (deg) and log-scale
    steps: tuple[float, ...] = (2.0, 2.0, 1.0, 0.02)
    rounds: int = 4  # step sizes, each half the one before
    # then one least-squares refit of the model to the matches the polished transform agrees
    # with (register.estimate.refit): validation optical-SAR @5 px 45/43/45 -> 46/46/46 of 52
    # over three RANSAC seeds (docs/results.md, "Optical-SAR polish")
    refit: bool = True


@dataclass(frozen=True)
class Config:
    """Options of :func:`register.register_pair`.

    Distances are in pixels of the working resolution (the image scaled so that its longer side
    is at most ``frames.work_max_side``) unless the name says otherwise.
    """

    # -- user options (the command line's flags) ------------------------------------------------
    modality: str = "auto"  # one of MODALITIES; picks SAR scaling and weights
    band_fixed: int | None = None  # 1-based band; None = luminance of RGB / first band
    band_moving: int | None = None
    sar_db: bool | None = None  # SAR input already in dB; None = guess from values
    speckle_filter: bool = False  # median-filter SAR before scaling
    transform: str = "auto"  # one of TRANSFORMS; auto keeps the model GRIC prefers
    max_keypoints: int = 300  # keypoints detected in the fixed image
    model: str = "auto"  # "auto" | path to a .pt file | "random" (plumbing tests)
    # the network's arithmetic: "auto" (bfloat16 where the device has it natively), "float32"
    # (the same numbers on every CPU) or "bfloat16" (register.score.set_precision)
    precision: str = "auto"
    seed: int = 0  # RANSAC's sampling
    make_figures: bool = True
    # -- tuned internals, one group per stage ----------------------------------------------------
    frames: FramesConfig = field(default_factory=FramesConfig)
    search: SearchConfig = field(default_factory=SearchConfig)
    match: MatchConfig = field(default_factory=MatchConfig)
    estimate: EstimateConfig = field(default_factory=EstimateConfig)
    verify: VerifyConfig = field(default_factory=VerifyConfig)
    polish: PolishConfig = field(default_factory=PolishConfig)
    policy: Policy = field(default_factory=Policy)

    def replace(self, **changes: Any) -> "Config":
        """A copy with ``changes`` applied: user options, whole groups (a group object or a
        mapping of its fields), or any internal by its field name or its pre-grouping flat
        name (``search_side``); unknown names raise ValueError naming them."""
        return config_from_dict(changes, base=self)


#: group name -> its dataclass
GROUPS = {"frames": FramesConfig, "search": SearchConfig, "match": MatchConfig,
          "estimate": EstimateConfig, "verify": VerifyConfig, "polish": PolishConfig,
          "policy": Policy}
#: flat names of the configs before the grouping whose field name changed: old -> (group, field)
RENAMED = {"search_side": ("search", "side"), "search_angle_step_deg": ("search", "angle_step_deg"),
           "search_scales": ("search", "scales"), "search_top_k": ("search", "top_k"),
           "search_calibrate": ("search", "calibrate"), "search_rescore": ("search", "rescore"),
           "verify_side": ("verify", "side")}


def _user_fields() -> set[str]:
    return {f.name for f in dataclasses.fields(Config)} - set(GROUPS)


def _locate(key: str) -> tuple[str, str] | None:
    """(group, field) of an internal's name (its field name or a pre-grouping flat name)."""
    if key in RENAMED:
        return RENAMED[key]
    for group, cls in GROUPS.items():
        if key in {f.name for f in dataclasses.fields(cls)}:
            return group, key
    return None


def _coerce(group: str, name: str, value: Any) -> Any:
    """A value read from JSON in the type of its field: lists become tuples where the field's
    default is a tuple (the search scales as floats), so configs stay hashable and equal."""
    default = getattr(GROUPS[group], name, None)
    if not isinstance(default, tuple) or isinstance(value, tuple):
        return value
    return tuple(float(v) for v in value) if (group, name) == ("search", "scales") else tuple(value)


def config_from_dict(values: Mapping[str, Any] | None = None, base: Config | None = None) -> Config:
    """Return ``base`` (default :class:`Config`) with ``values`` applied.

    ``values`` may be nested as :func:`config_to_dict` writes it (``{"match": {"shortlist":
    2}}``), flat as configs were written before the grouping (``{"shortlist": 2}``), or mixed.
    Unknown keys raise ValueError naming them.
    """
    base = base or Config()
    user, groups, unknown = {}, {g: {} for g in GROUPS}, []
    for key, value in dict(values or {}).items():
        if key in GROUPS:
            if isinstance(value, GROUPS[key]):
                value = dataclasses.asdict(value)
            if not isinstance(value, Mapping):
                unknown.append(f"{key} (expected a mapping of its fields)")
                continue
            own = {f.name for f in dataclasses.fields(GROUPS[key])}
            for name, v in value.items():
                if name in own:
                    groups[key][name] = _coerce(key, name, v)
                else:
                    unknown.append(f"{key}.{name}")
        elif key in _user_fields():
            user[key] = value
        elif (where := _locate(key)) is not None:
            groups[where[0]][where[1]] = _coerce(*where, value)
        else:
            unknown.append(key)
    if unknown:
        raise ValueError(f"unknown config keys {sorted(unknown)}; known: the user options "
                         f"{sorted(_user_fields())} and the fields of the groups {list(GROUPS)} "
                         "(see register.config)")
    for g, changes in groups.items():
        if changes:
            user[g] = dataclasses.replace(getattr(base, g), **changes)
    return dataclasses.replace(base, **user)


def config_to_dict(cfg: Config) -> dict[str, Any]:
    """Plain-JSON form of a config, nested by group (tuples become lists)."""
    out = dataclasses.asdict(cfg)
    for group in GROUPS:
        out[group] = {k: list(v) if isinstance(v, tuple) else v for k, v in out[group].items()}
    return out


def data_root() -> Path:
    """Root of the shared data sets: ``$REGISTER_DATA`` or ``../shared/data`` beside the repo."""
    env = os.environ.get("REGISTER_DATA")
    if env:
        return Path(env).expanduser().resolve()
    return (Path(__file__).resolve().parents[2] / "shared" / "data").resolve()


WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
