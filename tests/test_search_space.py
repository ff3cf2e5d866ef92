"""Search space files: validation with file:line errors, and suggest() never proposing
what the cluster cannot run."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest

from tuner.cluster_info import ClusterInfo
from tuner.errors import TunerError
from tuner.search.suggest import enumerate_configs, params_for, suggest
from tuner.spec.load import load_space, resolve_space_path

TWO_CPUS = ClusterInfo(total_cpus=2, max_node_cpus=2, fpga_devices={"aws-f1": 2})


def write(tmp_path: Path, text: str) -> str:
    p = tmp_path / "space.yaml"
    p.write_text(text)
    return str(p)


def test_default_space_is_found_by_name_from_the_installed_package() -> None:
    path = resolve_space_path("default")
    assert path.name == "default.yaml" and path.is_file()
    space = load_space("default")
    assert space.enabled_platforms() == ["cpu", "gpu", "fpga"]
    assert space.platforms.cpu.batch_size.values() == [1, 2, 4, 8, 16, 32, 64, 128, 256]
    assert space.constraints.accuracy_min_ratio == 0.99


def test_unknown_key_is_reported_with_file_line_and_fix(tmp_path: Path) -> None:
    f = write(tmp_path, "platforms:\n  cpu:\n    precision: {type: categorical, choices: [fp32]}\n"
                        "    batch_size: {type: int, low: 1, high: 4, pow2: true}\n"
                        "    replicas: {type: int, low: 1, high: 2}\n"
                        "    threads_per_replica: {type: int, low: 1, high: 2}\n"
                        "    thread: 3\n")
    with pytest.raises(TunerError) as exc:
        load_space(f)
    msg = str(exc.value)
    assert f"{f}:7" in msg and "platforms.cpu.thread" in msg and "unknown key" in msg


def test_wrong_type_names_field_and_echoes_value(tmp_path: Path) -> None:
    f = write(tmp_path, "platforms:\n  fpga:\n    device: {type: categorical, choices: [aws-f1]}\n"
                        "    precision: {type: categorical, choices: [int8]}\n"
                        "    batch_size: {type: int, low: one, high: 4}\n"
                        "    replicas: {type: int, low: 1, high: 2}\n")
    with pytest.raises(TunerError) as exc:
        load_space(f)
    assert f"{f}:5" in str(exc.value) and "batch_size.low" in str(exc.value) and "'one'" in str(exc.value)


def test_precision_not_available_on_platform_is_refused(tmp_path: Path) -> None:
    f = write(tmp_path, "platforms:\n  fpga:\n    device: {type: categorical, choices: [aws-f1]}\n"
                        "    precision: {type: categorical, choices: [fp32, int8]}\n"
                        "    batch_size: {type: int, low: 1, high: 4}\n"
                        "    replicas: {type: int, low: 1, high: 2}\n")
    with pytest.raises(TunerError, match=r"precision \['fp32'\] is not available on fpga"):
        load_space(f)


def test_pow2_bounds_must_be_powers_of_two(tmp_path: Path) -> None:
    f = write(tmp_path, "platforms:\n  cpu:\n    precision: {type: categorical, choices: [fp32]}\n"
                        "    batch_size: {type: int, low: 1, high: 100, pow2: true}\n"
                        "    replicas: {type: int, low: 1, high: 2}\n"
                        "    threads_per_replica: {type: int, low: 1, high: 2}\n")
    with pytest.raises(TunerError, match="high is 100 but pow2 needs powers of two"):
        load_space(f)


def test_python_tags_are_refused_by_safe_loading(tmp_path: Path) -> None:
    f = write(tmp_path, "platforms: !!python/object/apply:os.system ['echo hacked']\n")
    with pytest.raises(TunerError, match="safe loading"):
        load_space(f)


def test_malformed_yaml_gives_the_line(tmp_path: Path) -> None:
    f = write(tmp_path, "platforms:\n  cpu:\n    precision: [fp32\n    batch_size: 3\n")
    with pytest.raises(TunerError, match=r"space.yaml:\d+: not valid YAML"):
        load_space(f)


def test_space_with_no_platform_is_refused(tmp_path: Path) -> None:
    with pytest.raises(TunerError, match="enables no platform"):
        load_space(write(tmp_path, "platforms: {}\n"))


def test_unknown_shipped_name_lists_the_shipped_spaces() -> None:
    with pytest.raises(TunerError, match="default"):
        resolve_space_path("no-such-space")


@pytest.mark.parametrize("cpus", [1, 2, 3, 16])
def test_suggest_never_exceeds_the_cluster_cpus(cpus: int) -> None:
    space = load_space("default")
    cluster = ClusterInfo(total_cpus=cpus, max_node_cpus=cpus, fpga_devices={"aws-f1": 2})
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1), directions=["maximize"])
    seen = set()
    for _ in range(300):
        trial = study.ask()
        cfg = suggest(space, trial, cluster)
        study.tell(trial, 1.0)
        seen.add(cfg.platform)
        assert cfg.platform != "gpu"  # no GPU in this cluster
        if cfg.platform == "cpu":
            assert cfg.replicas * cfg.threads_per_replica <= cpus
            assert cfg.precision in ("fp32", "fp16", "int8")
        else:
            assert cfg.precision == "int8" and cfg.replicas <= 2 and cfg.device == "aws-f1"
        assert cfg.batch_size in (1, 2, 4, 8, 16, 32, 64, 128, 256)
    assert seen == {"cpu", "fpga"}


def test_gpu_is_left_out_with_a_note_when_the_cluster_has_none() -> None:
    space = load_space("default")
    assert space.available_platforms(TWO_CPUS) == ["cpu", "fpga"]
    notes = space.platform_notes(TWO_CPUS)
    assert len(notes) == 1 and "gpu" in notes[0] and "no GPUs" in notes[0]


def test_fixed_trial_rebuilds_the_same_config() -> None:
    space = load_space("default")
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=3))
    for _ in range(20):
        trial = study.ask()
        cfg = suggest(space, trial, TWO_CPUS)
        study.tell(trial, 0.0)
        again = suggest(space, optuna.trial.FixedTrial(trial.params), TWO_CPUS)
        assert again == cfg


@pytest.mark.parametrize("cpus", [1, 2, 4])
def test_enumerate_is_exactly_what_suggest_can_return(cpus: int) -> None:
    space = load_space("default")
    cluster = ClusterInfo(total_cpus=cpus, max_node_cpus=cpus, fpga_devices={"aws-f1": 2})
    grid = enumerate_configs(space, cluster)
    assert len(grid) == len(set(grid))
    layouts = {(r, t) for r in range(1, cpus + 1) for t in range(1, cpus + 1) if r * t <= cpus}
    assert len(grid) == 3 * 9 * len(layouts) + 9 * 2  # cpu precisions x batches x layouts + fpga
    study = optuna.create_study(sampler=optuna.samplers.BruteForceSampler(seed=0))
    seen = []
    study.optimize(lambda trial: seen.append(suggest(space, trial, cluster)) or 0.0, n_trials=len(grid) + 10)
    assert len(seen) == len(grid) and set(seen) == set(grid)  # brute force over suggest() visits the grid, nothing else
    for config in grid:
        assert suggest(space, optuna.trial.FixedTrial(params_for(space, config)), cluster) == config


@pytest.mark.parametrize("name", ["default", "cpu-only", "latency-slo"])
def test_shipped_spaces_load(name: str) -> None:
    space = load_space(name)
    assert enumerate_configs(space, TWO_CPUS)


def test_latency_slo_space_sets_a_p95_constraint_and_server_load() -> None:
    space = load_space("latency-slo")
    assert space.constraints.latency_p95_ms_max == 20 and space.load.mode == "server" and space.load.target_rps == 500


def test_server_load_without_a_rate_is_refused(tmp_path: Path) -> None:
    f = write(tmp_path, "platforms:\n  cpu:\n    precision: {type: categorical, choices: [fp32]}\n"
                        "    batch_size: {type: int, low: 1, high: 4, pow2: true}\n"
                        "    replicas: {type: int, low: 1, high: 2}\n"
                        "    threads_per_replica: {type: int, low: 1, high: 2}\n"
                        "load: {mode: server}\n")
    with pytest.raises(TunerError, match="server mode needs target_rps"):
        load_space(f)


def test_objectives_are_validated(tmp_path: Path) -> None:
    base = ("platforms:\n  cpu:\n    precision: {type: categorical, choices: [fp32]}\n"
            "    batch_size: {type: int, low: 1, high: 4, pow2: true}\n"
            "    replicas: {type: int, low: 1, high: 2}\n    threads_per_replica: {type: int, low: 1, high: 2}\n")
    assert load_space(write(tmp_path, "objectives: [cost_usd_per_million]\n" + base)).objectives == ["cost_usd_per_million"]
    with pytest.raises(TunerError, match="objectives"):
        load_space(write(tmp_path, "objectives: [accuracy]\n" + base))
