"""register.config: user options apart from per-stage groups; old flat configs still load."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from register.config import (Config, MatchConfig, SearchConfig, config_from_dict,
                             config_to_dict)
from register.decide import Policy

CONFIGS = Path(__file__).resolve().parents[1] / "pipelines" / "configs"


def test_config_groups_hold_each_stage_part():
    cfg = Config()
    assert isinstance(cfg.search, SearchConfig) and isinstance(cfg.match, MatchConfig)
    assert isinstance(cfg.policy, Policy)
    assert cfg.policy.verify_min_z == 9.0 and cfg.search.scales[0] == 0.5


def test_replace_takes_user_options_groups_and_internal_names():
    cfg = Config().replace(modality="opt-sar", accept_z=0.0, match={"shortlist": 2},
                           search=SearchConfig(side=100))
    assert cfg.modality == "opt-sar" and cfg.policy.accept_z == 0.0
    assert cfg.match.shortlist == 2 and cfg.search.side == 100
    assert Config() == Config().replace()  # the original is untouched and frozen
    with pytest.raises(Exception):
        cfg.modality = "vis-nir"


def test_config_from_dict_reads_pre_grouping_flat_keys():
    """report.json files and saved configs written before the grouping were flat."""
    old = {"search_side": 120, "search_scales": [0.5, 1, 2], "verify_side": 256,
           "max_keypoints": 96, "min_probability": 0.3, "rescued_min_z": 0.0}
    cfg = config_from_dict(old)
    assert cfg.search.side == 120 and cfg.search.scales == (0.5, 1.0, 2.0)
    assert cfg.verify.side == 256 and cfg.max_keypoints == 96
    assert cfg.match.min_probability == 0.3 and cfg.policy.rescued_min_z == 0.0


def test_config_to_dict_round_trips_through_json():
    cfg = Config(modality="vis-nir").replace(scales=(0.7, 1.4), low_z=0.0,
                                             auto_models=("affine", "similarity"))
    assert config_from_dict(json.loads(json.dumps(config_to_dict(cfg)))) == cfg


@pytest.mark.parametrize("bad, named", [({"shortlst": 2}, "shortlst"),
                                        ({"match": {"side": 3}}, "match.side"),
                                        ({"policy": 3}, "policy")])
def test_config_from_dict_names_unknown_keys(bad, named):
    with pytest.raises(ValueError, match=named):
        config_from_dict(bad)


@pytest.mark.parametrize("path", sorted(CONFIGS.glob("*.json")), ids=lambda p: p.name)
def test_saved_configs_load_and_change_something(path):
    cfg = config_from_dict(json.loads(path.read_text()))
    assert cfg != Config()


@pytest.mark.parametrize("selection,min_probability,gate", [
    ("structural", None, 0.0),  # no network, no gate
    ("fused", None, 0.3),
    ("network", None, 0.5),
    ("structural", 0.4, 0.4),  # the network only gates
    ("fused", 0.0, 0.0),
])
def test_match_gate_is_the_selections_own_unless_set(selection, min_probability, gate):
    cfg = Config().replace(selection=selection, min_probability=min_probability)
    assert cfg.match.gate == gate
