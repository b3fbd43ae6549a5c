"""StepConfig: bad values fail at construction, lists become tuples, retry delays are exact."""

from __future__ import annotations

from typing import Any

import pytest

from flujo import ConfigurationError, Step, StepConfig, UsageLimits, step
from flujo.domain.policies import ValidationResult


def _identity(x: Any) -> Any:
    return x


def _check(x: Any) -> bool:
    return True


# --- bad input is a ConfigurationError at construction -----------------------------------


@pytest.mark.parametrize(
    ("options", "names"),
    [
        ({"cache_ttl_s": 0}, "cache_ttl_s"),
        ({"cache_ttl_s": -5.0}, "cache_ttl_s"),
        ({"cache_ttl_s": float("nan")}, "cache_ttl_s"),
        ({"max_retries": -1}, "max_retries"),
        ({"max_retries": 1.5}, "max_retries"),
        ({"max_retries": True}, "max_retries"),
        ({"timeout_s": 0}, "timeout_s"),
        ({"backoff_factor": 0.5}, "backoff_factor"),
        ({"backoff_s": -0.1}, "backoff_s"),
        ({"backoff_s": float("inf")}, "backoff_s"),
        ({"max_backoff_s": -1}, "max_backoff_s"),
        ({"cache": "yes"}, "cache"),
        ({"validators": [_check, "not callable"]}, "validators"),
        ({"input_processors": [42]}, "input_processors"),
        ({"output_processors": [None]}, "output_processors"),
        ({"cache_key_fn": "name"}, "cache_key_fn"),
        ({"cache_key_fields": "name"}, "cache_key_fields"),
        ({"usage_limits": {"total_tokens_limit": 5}}, "usage_limits"),
    ],
)
def test_bad_step_config_values_are_configuration_errors(
    options: dict[str, Any], names: str
) -> None:
    with pytest.raises(ConfigurationError, match=names):
        StepConfig(**options)
    # The same options given to a step fail the same way, when the step is built.
    with pytest.raises(ConfigurationError, match=names):
        Step.from_callable(_identity, name="s", **options)


@pytest.mark.parametrize(
    "options",
    [
        {"cache_ttl_s": "10"},
        {"timeout_s": "5"},
        {"backoff_factor": "2"},
    ],
)
def test_wrongly_typed_numbers_are_configuration_errors(options: dict[str, Any]) -> None:
    # A number given as a string (say, read from an env var) must get flujo's clear error
    # naming the option, not a TypeError from a comparison inside StepConfig.
    (name,) = options
    with pytest.raises(ConfigurationError, match=name):
        StepConfig(**options)


def test_a_single_validator_instead_of_a_list_is_a_configuration_error() -> None:
    # `validators=check` (forgetting the brackets) is the likely slip; it deserves flujo's
    # error, not "TypeError: 'function' object is not iterable".
    with pytest.raises(ConfigurationError, match="validators"):
        StepConfig(validators=_check)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "limits",
    [
        {"total_cost_usd_limit": 0},
        {"total_cost_usd_limit": -1.0},
        {"total_tokens_limit": 0},
        {"total_tokens_limit": -10},
        {"total_tokens_limit": True},
    ],
)
def test_usage_limits_must_be_positive(limits: dict[str, Any]) -> None:
    (name,) = limits
    with pytest.raises(ConfigurationError, match=name):
        UsageLimits(**limits)


def test_usage_limit_given_as_a_string_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match="total_cost_usd_limit"):
        UsageLimits(total_cost_usd_limit="1.5")  # type: ignore[arg-type]


def test_usage_limits_none_means_unbounded() -> None:
    limits = UsageLimits()
    assert limits.exceeded_by(1e9, 10**12) is None
    assert UsageLimits(total_tokens_limit=10).exceeded_by(0.0, 10) is None  # at the limit: fine
    assert UsageLimits(total_tokens_limit=10).exceeded_by(0.0, 11) is not None


def test_unknown_option_keyword_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match="max_retris"):
        Step.from_callable(_identity, name="s", max_retris=2)  # type: ignore[call-overload]
    with pytest.raises(ConfigurationError, match="max_retris"):
        step(max_retris=2)(_identity)  # type: ignore[call-overload]
    with pytest.raises(ConfigurationError, match="cache_tll_s"):
        Step("s", cache_tll_s=3)  # type: ignore[call-arg]


def test_config_and_options_together_are_rejected() -> None:
    with pytest.raises(ConfigurationError, match="not both"):
        Step.from_callable(_identity, config=StepConfig(max_retries=1), max_retries=2)


# --- what a valid config holds -----------------------------------------------------------


def test_lists_become_tuples() -> None:
    # The fields are annotated as tuples, though lists are accepted at run time.
    config = StepConfig(
        validators=[_check],  # type: ignore[arg-type]
        input_processors=[_identity],  # type: ignore[arg-type]
        output_processors=[_identity, _identity],  # type: ignore[arg-type]
        cache_key_fields=["user", "lang"],  # type: ignore[arg-type]
    )
    assert config.validators == (_check,)
    assert config.input_processors == (_identity,)
    assert config.output_processors == (_identity, _identity)
    assert config.cache_key_fields == ("user", "lang")
    # A tuple cannot be changed behind the frozen config's back.
    assert isinstance(config.cache_key_fields, tuple)


def test_a_list_given_to_a_step_is_not_shared_with_its_config() -> None:
    validators: list[Any] = [_check]
    s = Step.from_callable(_identity, validators=validators)
    validators.append(lambda out: ValidationResult(False, "added later"))
    assert s.config.validators == (_check,)


def test_step_config_is_frozen() -> None:
    config = StepConfig(max_retries=1)
    with pytest.raises(AttributeError):
        config.max_retries = 5  # type: ignore[misc]


@pytest.mark.parametrize(
    ("options", "plain"),
    [
        ({}, True),
        ({"max_retries": 3, "backoff_s": 1.0}, True),
        ({"cache": True}, False),
        ({"validators": [_check]}, False),
        ({"input_processors": [_identity]}, False),
        ({"output_processors": [_identity]}, False),
        ({"timeout_s": 1.0}, False),
        ({"run_in_thread": True}, False),
        ({"usage_limits": UsageLimits(total_tokens_limit=1)}, False),
    ],
)
def test_plain_is_true_only_without_policies(options: dict[str, Any], plain: bool) -> None:
    assert StepConfig(**options).plain is plain


# --- retry_delay -------------------------------------------------------------------------


def _never_called() -> float:
    raise AssertionError("jitter is off: the random source must not be used")


def test_retry_delay_without_jitter_is_exponential() -> None:
    config = StepConfig(backoff_s=0.5, backoff_factor=3, jitter=False)
    delays = [config.retry_delay(retry, _never_called) for retry in (1, 2, 3, 4)]
    assert delays == [0.5, 1.5, 4.5, 13.5]


def test_retry_delay_is_capped_by_max_backoff() -> None:
    config = StepConfig(backoff_s=1.0, backoff_factor=2, max_backoff_s=5.0, jitter=False)
    assert [config.retry_delay(r, _never_called) for r in range(1, 6)] == [1, 2, 4, 5, 5]


def test_retry_delay_with_jitter_scales_the_capped_delay_by_the_random_source() -> None:
    config = StepConfig(backoff_s=1.0, backoff_factor=2, max_backoff_s=5.0, jitter=True)
    assert config.jitter is True  # jitter is on by default
    assert config.retry_delay(1, lambda: 0.5) == 0.5
    assert config.retry_delay(3, lambda: 0.25) == 1.0
    assert config.retry_delay(10, lambda: 0.5) == 2.5  # capped at 5, then jittered
    assert config.retry_delay(2, lambda: 0.0) == 0.0


def test_no_backoff_means_no_delay_and_no_random_draw() -> None:
    config = StepConfig(max_retries=5)
    assert config.backoff_s == 0
    assert [config.retry_delay(r, _never_called) for r in (1, 2, 3)] == [0.0, 0.0, 0.0]


def test_backoff_factor_one_gives_a_constant_delay() -> None:
    config = StepConfig(backoff_s=0.2, backoff_factor=1, jitter=False)
    assert [config.retry_delay(r, _never_called) for r in (1, 2, 7)] == [0.2, 0.2, 0.2]
