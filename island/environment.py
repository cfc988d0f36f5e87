"""The environment a fitness run sees: the parent's, minus anything that looks like a secret.

train.py is code an LLM wrote. It must not be able to read API keys, tokens or provider settings
that the engine holds (litellm, cloud credentials, hub tokens), so the child environment is built
by subtraction: every variable whose *name* looks secret or belongs to an LLM/cloud provider is
dropped, as is any variable whose *value* carries credentials in a URL (``scheme://user:pass@``).
What a training run legitimately needs stays: PATH, HOME, LANG/LC_*, TMPDIR, CUDA_VISIBLE_DEVICES,
the venv, and so on.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping

# What makes a variable's NAME secret is defined once, with the keys it protects.
from operators.keys import SECRET_NAME_PARTS  # noqa: E402

# Prefixes of LLM-provider, cloud and hub settings (compared upper-case). Non-secret settings under
# these prefixes (base URLs, org ids, regions, project ids) are dropped too: train.py has no use for
# them, and they say where the engine's keys are valid.
PROVIDER_PREFIXES: tuple[str, ...] = (
    "LITELLM_",
    "OPENAI_",
    "ANTHROPIC_",
    "CLAUDE_",
    "AZURE_",
    "AWS_",
    "BEDROCK_",
    "SAGEMAKER_",
    "GEMINI_",
    "GOOGLE_",
    "GCLOUD_",
    "CLOUDSDK_",
    "VERTEX",
    "HF_",
    "HUGGING",
    "COHERE_",
    "CO_API_",
    "MISTRAL_",
    "CODESTRAL_",
    "GROQ_",
    "TOGETHER_",
    "TOGETHERAI_",
    "OPENROUTER_",
    "DEEPSEEK_",
    "XAI_",
    "GROK_",
    "OLLAMA_",
    "REPLICATE_",
    "FIREWORKS_",
    "PERPLEXITY",
    "PPLX_",
    "VOYAGE_",
    "AI21_",
    "ANYSCALE_",
    "CEREBRAS_",
    "SAMBANOVA_",
    "NVIDIA_NIM",
    "NIM_",
    "WATSONX_",
    "DATABRICKS_",
    "CLOUDFLARE_",
    "DEEPINFRA_",
    "NOVITA_",
    "NEBIUS_",
    "LAMBDA_API",
    "MOONSHOT_",
    "DASHSCOPE_",
    "ZHIPU",
    "VLLM_API",
    "LANGFUSE_",
    "LANGSMITH_",
    "LANGCHAIN_",
    "HELICONE_",
    "WANDB_",
    "GITHUB_",
    "GH_",
    "GITLAB_",
)

# Python settings that would change how the child interpreter behaves in ways a fitness run must
# not depend on (PYTHONINSPECT would even leave it waiting at a prompt until the deadline).
DROPPED_PYTHON_VARS: frozenset[str] = frozenset({"PYTHONINSPECT", "PYTHONSTARTUP", "PYTHONBREAKPOINT"})

# Names that are kept whatever the rules above say.
ALWAYS_KEEP: frozenset[str] = frozenset({"CUDA_VISIBLE_DEVICES"})

_URL_CREDENTIALS = re.compile(r"[a-zA-Z][a-zA-Z0-9+.-]*://[^/\s:@]+:[^/\s@]+@")


def is_secret_name(name: str) -> bool:
    """True when a variable of this name must not reach train.py."""
    if name in ALWAYS_KEEP:
        return False
    upper = name.upper()
    if any(part in upper for part in SECRET_NAME_PARTS):
        return True
    if upper.startswith(PROVIDER_PREFIXES):
        return True
    return name in DROPPED_PYTHON_VARS


def has_secret_value(value: str) -> bool:
    """True for values that carry credentials, such as ``https://user:pass@host/``."""
    return bool(_URL_CREDENTIALS.search(value))


def _fmt_number(x: float | int) -> str:
    if isinstance(x, float) and x.is_integer():
        return str(int(x))
    return str(x)


def scrubbed_env(
    base: Mapping[str, str] | None = None,
    extra: Mapping[str, str] | None = None,
    *,
    budget_s: float | None = None,
    seed: int | None = None,
    num_threads: int | None = None,
) -> dict[str, str]:
    """The environment for a fitness run.

    ``base`` (default ``os.environ``) minus secret-looking names and provider settings, plus
    PYTHONUNBUFFERED=1 and PYTHONDONTWRITEBYTECODE=1, plus EVOLVE_BUDGET_S / EVOLVE_SEED when given,
    plus OMP_NUM_THREADS / MKL_NUM_THREADS / OPENBLAS_NUM_THREADS / EVOLVE_NUM_THREADS when
    ``num_threads`` is given, then ``extra`` on top. ``extra`` may override anything but may not
    bring in a secret-looking name (ValueError).

    Note: when ``num_threads`` is None the thread variables of ``base`` pass through unchanged;
    inside a Ray worker that means Ray's OMP_NUM_THREADS=1.
    """
    if base is None:
        base = os.environ
    if extra:
        bad = sorted(k for k in extra if is_secret_name(k))
        if bad:
            raise ValueError(f"extra_env may not carry secret-looking variables: {', '.join(bad)}")
        bad = sorted(k for k, v in extra.items() if has_secret_value(str(v)))
        if bad:
            raise ValueError(f"extra_env values carry URL credentials: {', '.join(bad)}")

    env = {k: v for k, v in base.items() if not is_secret_name(k) and not has_secret_value(v)}
    env["PYTHONUNBUFFERED"] = "1"
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    if budget_s is not None:
        env["EVOLVE_BUDGET_S"] = _fmt_number(budget_s)
    if seed is not None:
        env["EVOLVE_SEED"] = str(int(seed))
    if num_threads is not None:
        n = str(int(num_threads))
        for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "EVOLVE_NUM_THREADS"):
            env[name] = n
    if extra:
        env.update({str(k): str(v) for k, v in extra.items()})
    return env
