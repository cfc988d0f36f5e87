"""Which LLM drives the llm_* operators, decided once at start from llm.* and the environment."""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Mapping

from operators.llm import DEFAULT_MODEL

from .config import ConfigError, Provider

DEFAULT_MODELS = {
    Provider.anthropic: DEFAULT_MODEL,   # the LLM operators' own default
    Provider.openai: "openai/gpt-4o",
    Provider.local: "openai/local",
}
KEY_VARIABLES = {Provider.anthropic: "ANTHROPIC_API_KEY", Provider.openai: "OPENAI_API_KEY"}


@dataclass(frozen=True)
class LLMChoice:
    model: str
    api_base: str | None
    why: str


def choose_llm(llm_cfg, environ: Mapping[str, str] = os.environ) -> LLMChoice | None:
    """None means offline operators only. Keys are looked up by name, never read or stored here."""
    provider = Provider(llm_cfg.provider)
    if provider == Provider.none:
        return None
    if provider == Provider.auto:
        for candidate, variable in KEY_VARIABLES.items():
            if environ.get(variable):
                return LLMChoice(llm_cfg.model or DEFAULT_MODELS[candidate], None, f"{variable} is set")
        if llm_cfg.api_base:
            return LLMChoice(llm_cfg.model or DEFAULT_MODELS[Provider.local], llm_cfg.api_base,
                             "llm.api_base is set")
        return None
    if provider in KEY_VARIABLES and not environ.get(KEY_VARIABLES[provider]):
        raise ConfigError(f"llm={provider.value} needs {KEY_VARIABLES[provider]} in the environment; "
                          "set it, or choose llm=local / llm=none")
    return LLMChoice(llm_cfg.model or DEFAULT_MODELS[provider], llm_cfg.api_base, f"llm={provider.value}")


def describe(llm: LLMChoice | None) -> str:
    """The line the run starts with, saying which model proposes (or that none does)."""
    if llm is None:
        return ("llm: none (no provider key in the environment, no llm.api_base, or llm=none): "
                "offline operators only")
    return f"llm: {llm.model}{' at ' + llm.api_base if llm.api_base else ''} ({llm.why})"
