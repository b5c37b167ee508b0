"""No TensorFlow/absl/CUDA line on stderr unless asked for; one line on the device; display names everywhere."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

import fedsim as fs
from fedsim import _tf

FEDSIM = Path(sys.executable).with_name("fedsim")
TF_LINES = ("E0000", "I0000", "W0000", "absl::InitializeLog", "cuInit", "oneDNN")


def _env(**extra) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("FEDSIM_TF_LOG", "TF_CPP_MIN_LOG_LEVEL")}
    return {**env, **extra}


def test_importing_and_training_print_one_device_line_and_nothing_on_stderr(tmp_path):
    code = ("import fedsim as fs; fed = fs.synthetic_federation('icu_mortality', n_hospitals=2, n_patients=200, "
            "seed=0); fs.Experiment(federation=fed, rounds=1, privacy=fs.privacy.DPSGD(1.0)).run(); "
            "fs.baselines.local_only(fed, epochs=1)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path,
                          env=_env(FEDSIM_RESULTS=str(tmp_path), TQDM_DISABLE="1"), timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    assert done.stdout == _tf.device_note() + "\n"  # one line about the device, where training starts


def test_tensorflow_log_lines_come_back_when_asked_for(tmp_path):
    done = subprocess.run([sys.executable, "-c", "import fedsim"], capture_output=True, text=True, cwd=tmp_path,
                          env=_env(FEDSIM_TF_LOG="0"), timeout=300)
    assert done.returncode == 0, done.stderr
    if not _tf.GPUS:  # no GPU: TensorFlow's native code says so, in its own format
        assert any(marker in done.stderr for marker in TF_LINES), done.stderr


@pytest.mark.skipif(not FEDSIM.exists(), reason="the fedsim console script is not installed next to python")
@pytest.mark.parametrize("args", [["data", "list"], ["report", "no-such-folder"]])
def test_cli_commands_print_no_tensorflow_line(args, tmp_path):
    done = subprocess.run([str(FEDSIM), *args], capture_output=True, text=True, cwd=tmp_path, env=_env(),
                          timeout=300)
    assert not any(marker in done.stderr + done.stdout for marker in TF_LINES), done.stderr


@pytest.mark.skipif(not FEDSIM.exists(), reason="the fedsim console script is not installed next to python")
def test_cli_verbose_shows_tensorflow_lines_and_is_accepted_after_the_command(tmp_path):
    done = subprocess.run([str(FEDSIM), "data", "list", "--verbose"], capture_output=True, text=True, cwd=tmp_path,
                          env=_env(), timeout=300)
    assert done.returncode == 0, done.stderr
    assert "icu_mortality" in done.stdout
    if not _tf.GPUS:
        assert any(marker in done.stderr for marker in TF_LINES), done.stderr


def test_one_display_name_per_strategy_and_baseline(small_fed):
    assert fs.strategies.title("fedavg") == "FedAvg" and fs.strategies.title("FedMedian") == "median"
    assert set(fs.strategies.TITLES) == set(fs.STRATEGIES)
    assert fs.Experiment(federation=small_fed, strategy="fedtrimmedavg").label == "trimmed mean"
    assert fs.baselines.TITLES == {"centralized": "centralized", "local_only": "local only"}
