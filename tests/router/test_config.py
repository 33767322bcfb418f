"""The router's config file: deployments served only with their key variable,
errors that name each offending field by its path, and loading from YAML.
Also the small value types the router speaks."""

from __future__ import annotations

from pathlib import Path

import pytest

from router.config import (
    ConfigError,
    Frozen,
    RetryConfig,
    RouterConfig,
    load_config,
    parse_config,
)
from router.errors import AllProvidersFailed, ErrorKind, ProviderError
from router.types import ContentPart, Message
from tests.router.scripted import dep


def paths(error: ConfigError) -> list[str]:
    """The field paths an invalid-config error names, one per line after the first."""
    _, *lines = str(error).split("\n")
    assert all(line.startswith("  ") for line in lines), lines
    return [line[2:].split(": ", 1)[0] for line in lines]


# --- deployments present only with their key ------------------------------------------------


def test_deployments_whose_variable_is_unset_or_empty_are_left_out(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("IG_TEST_KEY_SET", "sk-1")
    monkeypatch.setenv("IG_TEST_KEY_EMPTY", "")
    monkeypatch.delenv("IG_TEST_KEY_UNSET", raising=False)
    config = parse_config(
        {
            "models": {
                "m": {
                    "deployments": [
                        dep("always"),
                        dep("keyed", when_env="IG_TEST_KEY_SET"),
                        dep("unkeyed", when_env="IG_TEST_KEY_UNSET"),
                        dep("blank", when_env="IG_TEST_KEY_EMPTY"),
                    ]
                },
                "vendor": {"deployments": [dep("x", when_env="IG_TEST_KEY_UNSET")]},
            }
        }
    )
    assert list(config.models) == ["m"]  # a model left with no deployment goes too
    assert [d.name for d in config.models["m"].deployments] == ["always", "keyed"]
    assert config.models["m"].deployments[1].when_env == "IG_TEST_KEY_SET"


def test_a_blank_variable_name_or_a_deployment_that_is_no_mapping_is_an_error() -> None:
    with pytest.raises(ConfigError) as refused:
        parse_config({"models": {"m": {"deployments": ["oops", dep("a", when_env="")]}}})
    assert paths(refused.value) == [
        "models.m.deployments.0",
        "models.m.deployments.1.when_env",
        "models.m.deployments",
    ]


# --- error messages -------------------------------------------------------------------------


def test_the_top_level_must_be_a_mapping() -> None:
    with pytest.raises(ConfigError) as refused:
        parse_config(["models"])
    assert str(refused.value) == "<config>: the top level must be a mapping"
    with pytest.raises(ConfigError, match=r"^gateway\.yaml: the top level must be a mapping$"):
        parse_config("models", "gateway.yaml")


def test_each_invalid_field_gets_a_line_naming_its_path() -> None:
    data = {
        "models": {"m": {"deployments": [dep("a", weight=0)]}},
        "routing": {"exploration": 0.9},
    }
    with pytest.raises(ConfigError) as refused:
        parse_config(data)
    assert str(refused.value).startswith("<config>: invalid config\n  models.m.deployments.0")
    assert paths(refused.value) == [
        "models.m.deployments.0.weight",
        "models.m.deployments",
        "routing.exploration",
    ]


def test_a_whole_file_rule_is_reported_at_the_root() -> None:
    data = {"models": {"m": {"deployments": [dep("a")], "fallbacks": ["x"]}}}
    with pytest.raises(ConfigError) as refused:
        parse_config(data, "g.yaml")
    head, line = str(refused.value).split("\n")
    assert head == "g.yaml: invalid config"
    assert line.startswith("  <root>: ") and line.endswith("models.m.fallbacks: unknown model 'x'")


# --- loading a file -------------------------------------------------------------------------


def test_load_config_reads_yaml_into_the_kind_asked_for(tmp_path: Path) -> None:
    path = tmp_path / "router.yaml"
    path.write_text("models:\n  m:\n    deployments:\n      - {name: a, provider: p, model: x}\n")
    config = load_config(path)
    assert isinstance(config, RouterConfig)
    assert [d.name for d in config.models["m"].deployments] == ["a"]

    class Retry(Frozen):
        retry: RetryConfig

    path.write_text("retry: {retries: 3}\n")
    assert load_config(str(path), Retry) == Retry(retry=RetryConfig(retries=3))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (None, "{path}: cannot read: No such file or directory"),
        ("models: [unclosed\n", "{path}: not valid YAML: "),
        ("- a list\n", "{path}: the top level must be a mapping"),
        ("models: {}\n", "{path}: invalid config\n  models: "),
    ],
)
def test_load_config_errors_start_with_the_path(
    tmp_path: Path, text: str | None, message: str
) -> None:
    path = tmp_path / "router.yaml"
    if text is not None:
        path.write_text(text)
    with pytest.raises(ConfigError) as refused:
        load_config(path)
    assert str(refused.value).startswith(message.format(path=path))


# --- value types and errors -------------------------------------------------------------


def test_a_messages_text_is_its_content_else_its_text_parts() -> None:
    parts = (ContentPart(text="a"), ContentPart(image_url="http://x/y.png"), ContentPart(text="b"))
    assert Message("user", parts=parts).text() == "ab"
    assert Message("user", "given", parts=parts).text() == "given"
    assert Message("user", "plain").text() == "plain"
    assert Message("user").text() == ""


def test_all_failed_names_each_attempt_and_each_skipped_deployment() -> None:
    attempts: list[tuple[str, ProviderError]] = [
        ("a", ProviderError(ErrorKind.TIMEOUT, "read timed out")),
        ("b", ProviderError(ErrorKind.RATE_LIMITED, "429", retry_after=3)),
    ]
    error = AllProvidersFailed("chat", attempts, [("c", "circuit open")])
    assert str(error) == (
        "all deployments of 'chat' failed (a: timeout: read timed out; "
        "b: rate_limited: 429; c skipped: circuit open)"
    )
    assert (error.model, error.attempts) == ("chat", attempts)
    assert error.skipped == [("c", "circuit open")]
    assert (error.kind, error.retry_after) == (ErrorKind.UNAVAILABLE, 3)
    nothing = AllProvidersFailed("chat", [], [("c", "circuit open")])
    assert str(nothing) == "no deployment of 'chat' is available (c skipped: circuit open)"
    assert (nothing.kind, nothing.retry_after) == (ErrorKind.UNAVAILABLE, None)
