"""The one settings object: defaults of the embedded mode and clear errors for bad values."""
from pathlib import Path

import pytest

from shared.settings import REFERENCE_DIR, Settings


def test_embedded_defaults(tmp_path):
    s = Settings.from_env({"XPVAE_HOME": str(tmp_path)})
    assert s.embedded and s.broker_url is None
    assert s.database_url == f"sqlite:///{tmp_path / 'xpvae.sqlite'}"
    assert s.device == "auto" and s.torch_threads is None and s.retry_backoff_s == 2.0 and s.read_streams == 2
    assert s.shared_dir == REFERENCE_DIR == Path(__file__).resolve().parents[2] / "reference"
    assert (s.shared_dir / "reference/scatter_vae_apogee/weight.pt").is_file()
    assert s.models_dir == tmp_path / "models" and s.checkpoints_dir == tmp_path / "checkpoints"


def test_reference_folder_can_be_moved(tmp_path):
    assert Settings.from_env({"XPVAE_SHARED": str(tmp_path / "ref")}).shared_dir == tmp_path / "ref"


def test_stack_values_are_read():
    s = Settings.from_env({"XPVAE_DATABASE_URL": "postgresql+psycopg2://u@h/db", "XPVAE_BROKER_URL": "amqp://x//",
                           "XPVAE_DEVICE": "CUDA:1", "XPVAE_TORCH_THREADS": "1", "XPVAE_RETRY_BACKOFF_S": "0.5",
                           "XPVAE_READ_STREAMS": "4"})
    assert not s.embedded and s.database_url.startswith("postgresql") and s.device == "cuda:1"
    assert s.torch_threads == 1 and s.retry_backoff_s == 0.5 and s.read_streams == 4


@pytest.mark.parametrize("env, name", [({"XPVAE_DEVICE": "tpu"}, "XPVAE_DEVICE"),
                                       ({"XPVAE_TORCH_THREADS": "0"}, "XPVAE_TORCH_THREADS"),
                                       ({"XPVAE_TORCH_THREADS": "two"}, "XPVAE_TORCH_THREADS"),
                                       ({"XPVAE_RETRY_BACKOFF_S": "-1"}, "XPVAE_RETRY_BACKOFF_S"),
                                       ({"XPVAE_READ_STREAMS": "0"}, "XPVAE_READ_STREAMS"),
                                       ({"XPVAE_READ_STREAMS": "9"}, "XPVAE_READ_STREAMS")])
def test_bad_values_name_the_variable(env, name):
    with pytest.raises(ValueError, match=name):
        Settings.from_env(env)
