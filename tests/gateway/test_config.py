from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from gateway.config import DEFAULTS, load_config, parse_config
from router.config import ConfigError

GOOD = {"models": {"m": {"deployments": [{"name": "d", "provider": "mock", "model": "echo"}]}}}


def test_embedded_defaults_load_and_are_frozen() -> None:
    config = load_config(DEFAULTS)
    assert "mock-chat" in config.models
    with pytest.raises(ValueError):
        config.server.port = 1  # type: ignore[misc]


@pytest.mark.parametrize(
    ("patch", "path"),
    [
        ({"weight": 0}, "models.m.deployments.0.weight"),
        ({"name": ""}, "models.m.deployments.0.name"),
        ({"colour": "red"}, "models.m.deployments.0.colour"),
    ],
)
def test_bad_deployment_fields_are_named(patch: dict[str, object], path: str) -> None:
    deployment = {"name": "d", "provider": "mock", "model": "echo", **patch}
    with pytest.raises(ConfigError, match=path.replace(".", r"\.")):
        parse_config({"models": {"m": {"deployments": [deployment]}}})


def test_other_errors_are_named() -> None:
    with pytest.raises(ConfigError, match=r"models\.m\.deployments: .*at least 1"):
        parse_config({"models": {"m": {"deployments": []}}})
    with pytest.raises(ConfigError, match=r"server\.port"):
        parse_config({**GOOD, "server": {"port": 70000}})
    with pytest.raises(ConfigError, match=r"models\.m\.fallbacks: unknown model 'x'"):
        parse_config({"models": {"m": {**GOOD["models"]["m"], "fallbacks": ["x"]}}})
    dup = {"name": "d", "provider": "mock", "model": "echo"}
    with pytest.raises(ConfigError, match="repeated: \\['d'\\]"):
        parse_config({"models": {"m": {"deployments": [dup, dup]}}})
    with pytest.raises(ConfigError, match="top level must be a mapping"):
        parse_config(["x"])


def test_unreadable_and_malformed_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("models: [unclosed")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)


def test_serve_with_a_bad_file_fails_at_start_naming_the_field(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    deployment = "{name: d, provider: mock, model: echo, weight: -1}"
    bad.write_text(f"models:\n  m:\n    deployments:\n      - {deployment}\n")
    result = subprocess.run(
        [sys.executable, "-m", "gateway.cli", "serve", "--config", str(bad), "--port", "0"],
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert result.returncode == 2
    assert "models.m.deployments.0.weight" in result.stderr
    check = subprocess.run(
        [sys.executable, "-m", "gateway.cli", "check-config", str(DEFAULTS)],
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert check.returncode == 0, check.stderr


def test_vendor_models_are_served_only_when_their_key_is_set(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    assert {"gpt-4o-mini", "claude-haiku"}.isdisjoint(load_config(DEFAULTS).models)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    config = load_config(DEFAULTS)
    assert [d.provider for d in config.models["gpt-4o-mini"].deployments] == ["openai"]
    assert "claude-haiku" not in config.models


def test_when_env_keeps_the_other_deployments_of_a_model(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("INFERGATE_TEST_ABSENT", raising=False)
    deployments = [
        {"name": "a", "provider": "mock", "model": "echo", "when_env": "INFERGATE_TEST_ABSENT"},
        {"name": "b", "provider": "mock", "model": "echo"},
    ]
    config = parse_config({"models": {"m": {"deployments": deployments}}})
    assert [d.name for d in config.models["m"].deployments] == ["b"]
    with pytest.raises(ConfigError, match="models"):  # nothing left to serve at all
        parse_config({"models": {"m": {"deployments": deployments[:1]}}})
