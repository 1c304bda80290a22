from __future__ import annotations

from pathlib import Path

import pytest

from gate.config import RetryPolicy, load_settings
from gate.errors import ConfigError


def test_shipped_config_loads_with_defaults_relative_to_file() -> None:
    repo = Path(__file__).resolve().parent.parent
    s = load_settings(repo / "config.yaml", environ={})
    assert s.ae_title == "QGATE" and s.port == 11112
    assert s.storage_dir == repo / "var"
    assert s.db_url == f"sqlite:///{(repo / 'var' / 'gate.db').as_posix()}"
    assert s.destinations.pacs is not None and s.destinations.pacs.port == 4242
    assert s.model_dir.name == "onnx_models"


def test_environment_overrides_nested_keys(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("destinations:\n  pacs: {ae_title: PACS, host: 127.0.0.1, port: 4242}\n")
    s = load_settings(
        cfg,
        environ={
            "GATE_PORT": "11200",
            "GATE_DESTINATIONS__PACS__PORT": "4300",
            "GATE_THRESHOLDS": "{Liver: 0.7}",
        },
    )
    assert s.port == 11200
    assert s.destinations.pacs is not None and s.destinations.pacs.port == 4300
    assert s.thresholds == {"Liver": 0.7}


@pytest.mark.parametrize(
    "bad",
    ["ae_title: ''", "ae_title: THIS_TITLE_IS_WAY_TOO_LONG", "port: 70000", "ae_title: 'A\\\\B'", "- a list"],
)
def test_invalid_settings_raise_config_error(tmp_path: Path, bad: str) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text(bad + "\n")
    with pytest.raises(ConfigError):
        load_settings(cfg, environ={})


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(tmp_path / "nope.yaml", environ={})


def test_retry_backoff_is_exponential_and_capped() -> None:
    p = RetryPolicy(initial_seconds=5, factor=2, max_seconds=30, max_attempts=5)
    assert [p.delay(n) for n in range(1, 6)] == [5, 10, 20, 30, 30]
