"""``benchmarks/bench_eeg2meg_seeds.py``: a variant with changed generator settings is read
into the ablation it starts from and the changes, checked before any fit."""

import pytest


@pytest.fixture(scope="module")
def seeds(benchmark_script):
    return benchmark_script("bench_eeg2meg_seeds")


ABLATIONS = {"generator": {}, "no_bsc": {"bsc": False}}


def test_a_variant_is_an_ablation_and_its_changes(seeds):
    assert seeds._variant("no_bsc", ABLATIONS) == ("no_bsc", {}, {})
    assert seeds._variant("generator+band_pad=constant+lambda_spec=0.5", ABLATIONS) == (
        "generator", {"band_pad": "constant", "lambda_spec": 0.5}, {})  # JSON, else text
    # training settings go to the train section
    assert seeds._variant("no_bsc+monitor=val_rec+band_pad=constant", ABLATIONS) == (
        "no_bsc", {"band_pad": "constant"}, {"monitor": "val_rec"})


@pytest.mark.parametrize("text, match", [
    ("full+band_pad=constant", r"must start with one of \['generator', 'no_bsc'\], got 'full'"),
    ("generator+band_pad", r"'band_pad' in .* must be FIELD=VALUE"),
    ("generator+padding=constant", r"'padding=constant' in .* must be FIELD=VALUE"),
    ("no_bsc+bsc=true", r"changes \['bsc'\], which 'no_bsc' itself sets"),
    ("generator+seed=3", r"'seed=3' in .* \(not seed or epochs: --seeds, --epochs\)"),
])
def test_a_bad_variant_is_refused_naming_what_to_write(seeds, text, match):
    with pytest.raises(SystemExit, match=match):
        seeds._variant(text, ABLATIONS)


def test_a_bad_value_is_refused_before_any_fit(seeds):
    with pytest.raises(ValueError, match=r"'GeneratorConfig\.band_pad'.*got 'zeros'"):
        seeds._variant("generator+band_pad=zeros", ABLATIONS)
    with pytest.raises(ValueError, match=r"'TrainConfig\.monitor'.*got 'val_vq'"):
        seeds._variant("generator+monitor=val_vq", ABLATIONS)


def test_each_variant_is_compared_with_the_full_model_it_differs_from_in_one_thing(seeds):
    variants = ["generator", "no_sfm", "generator+band_pad=constant",
                "no_sfm+band_pad=constant", "no_bsc+lambda_spec=0"]
    assert seeds._baseline("generator", variants) is None
    assert seeds._baseline("no_sfm", variants) == "generator"
    assert seeds._baseline("generator+band_pad=constant", variants) == "generator"
    assert seeds._baseline("no_sfm+band_pad=constant", variants) == \
        "generator+band_pad=constant"
    assert seeds._baseline("no_bsc+lambda_spec=0", variants) is None  # not among them
