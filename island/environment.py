"""The environment a fitness run sees: the parent's configuration, without its secrets.

train.py is code an LLM wrote. It must not be able to read API keys, tokens or provider settings
that the engine holds (litellm, cloud credentials, hub tokens), yet a training run needs its
configuration: an offline Hugging Face cache, wandb's mode, NCCL and CUDA settings. A variable is
decided by its NAME, in this order (``is_secret_name``):

1. kept: ``ALWAYS_KEEP`` (CUDA_VISIBLE_DEVICES);
2. dropped: the name looks secret (``looks_secret``): it contains KEY, TOKEN, SECRET, PASSWORD,
   CREDENTIAL, AUTH, ... (``SECRET_NAME_PARTS``) once words such as TOKENIZERS are set aside
   (``BENIGN_WORDS``), so *_API_KEY, HF_TOKEN, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN and
   DB_PASSWORD never arrive; nor do Python settings that change how the interpreter runs
   (PYTHONINSPECT, PYTHONSTARTUP, PYTHONBREAKPOINT);
3. dropped: it points at credentials (``CREDENTIAL_NAMES``: GOOGLE_APPLICATION_CREDENTIALS,
   AWS_SHARED_CREDENTIALS_FILE, KUBECONFIG, NETRC, ...) or belongs to a cloud account
   (``CLOUD_PREFIXES``: AZURE_*, AWS_*, GOOGLE_*, GCLOUD_*, CLOUDSDK_*), whatever else it says;
4. kept: configuration (``CONFIG_PATTERNS``: *_HOME, *_CACHE, *_CACHE_DIR, *_OFFLINE, NCCL_*,
   CUDA_*, TORCH_*, WANDB_MODE, WANDB_DIR, TOKENIZERS_PARALLELISM, ...), even under a provider
   prefix, so HF_HOME, HF_HUB_OFFLINE, HF_DATASETS_CACHE and WANDB_MODE arrive;
5. dropped: any other setting of an LLM provider, cloud or hub (``PROVIDER_PREFIXES``: OPENAI_*,
   ANTHROPIC_*, HF_*, WANDB_*, GITHUB_*, ...): base URLs, org and project ids say where the
   engine's keys are valid and train.py has no use for them;
6. kept: everything else (PATH, HOME, LANG, TMPDIR, VIRTUAL_ENV, OMP_NUM_THREADS, ...).

A variable whose VALUE carries credentials in a URL (``scheme://user:pass@``) is dropped whatever
its name. ``task.env`` adds variables (``task_env`` checks them the same way). Files are another
matter: a token file under HF_HOME, or ~/.netrc, is as readable to train.py as to any program of
the same user (docs/safety.md).
"""

from __future__ import annotations

import fnmatch
import os
import re
from collections.abc import Mapping

# What makes a variable's NAME secret is defined once, with the keys it protects (SECRET_NAME_PARTS,
# BENIGN_WORDS, looks_secret): the key withdrawal, this scrub and the LLM error redaction share it.
from operators.keys import SECRET_NAME_PARTS, looks_secret  # noqa: F401 (re-exported)

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

# Variables that point at credentials (files, agents, helpers): never passed on.
CREDENTIAL_NAMES: frozenset[str] = frozenset({
    "GOOGLE_APPLICATION_CREDENTIALS", "AWS_SHARED_CREDENTIALS_FILE", "AWS_CONFIG_FILE",
    "AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "CLOUDSDK_CONFIG", "BOTO_CONFIG", "KUBECONFIG",
    "DOCKER_CONFIG", "NETRC", "GIT_ASKPASS", "SSH_ASKPASS", "SSH_AUTH_SOCK", "OCI_CLI_CONFIG_FILE",
})

# Cloud accounts: nothing under these prefixes is passed on, not even names that look like
# configuration (AZURE_CONFIG_DIR holds tokens, CLOUDSDK_* points at gcloud's credentials).
CLOUD_PREFIXES: tuple[str, ...] = ("AZURE_", "AWS_", "GOOGLE_", "GCLOUD_", "CLOUDSDK_")

# Configuration a training run may need; kept even under a provider prefix (HF_HOME, WANDB_MODE)
# unless the name looks secret or belongs to a cloud account (fnmatch patterns, upper case).
CONFIG_PATTERNS: tuple[str, ...] = (
    "*_HOME",
    "*_CACHE",
    "*_CACHE_DIR",
    "*_CACHE_HOME",
    "*_OFFLINE",
    "NCCL_*",
    "CUDA_*",
    "TORCH_*",
    "TORCHINDUCTOR_*",
    "TRITON_*",
    "PYTORCH_*",
    "HF_HUB_DISABLE_*",
    "WANDB_MODE",
    "WANDB_DIR",
    "WANDB_SILENT",
    "WANDB_DISABLED",
    "TOKENIZERS_PARALLELISM",
)

# Python settings that would change how the child interpreter behaves in ways a fitness run must
# not depend on (PYTHONINSPECT would even leave it waiting at a prompt until the deadline).
DROPPED_PYTHON_VARS: frozenset[str] = frozenset({"PYTHONINSPECT", "PYTHONSTARTUP", "PYTHONBREAKPOINT"})

# Names that are kept whatever the rules above say.
ALWAYS_KEEP: frozenset[str] = frozenset({"CUDA_VISIBLE_DEVICES"})

SEED_ENV = "EVOLVE_SEED"   # the variable that carries a run's seed by default (task.seed_env)

_URL_CREDENTIALS = re.compile(r"[a-zA-Z][a-zA-Z0-9+.-]*://[^/\s:@]+:[^/\s@]+@")


def is_config_name(name: str) -> bool:
    """True for configuration a training run may need (CONFIG_PATTERNS)."""
    upper = name.upper()
    return any(fnmatch.fnmatchcase(upper, pattern) for pattern in CONFIG_PATTERNS)


def is_secret_name(name: str) -> bool:
    """True when a variable of this name must not reach train.py (rules in the module docstring)."""
    if name in ALWAYS_KEEP:
        return False
    upper = name.upper()
    if looks_secret(name) or name in DROPPED_PYTHON_VARS:
        return True
    if upper in CREDENTIAL_NAMES or upper.startswith(CLOUD_PREFIXES):
        return True
    if is_config_name(name):
        return False
    return upper.startswith(PROVIDER_PREFIXES)


def has_secret_value(value: str) -> bool:
    """True for values that carry credentials, such as ``https://user:pass@host/``."""
    return bool(_URL_CREDENTIALS.search(value))


def task_env(variables: Mapping[str, object] | None) -> dict[str, str]:
    """``task.env`` as strings, or ValueError naming the first variable train.py may not receive."""
    env = {}
    for name, value in (variables or {}).items():
        name, value = str(name), "" if value is None else str(value)
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
            raise ValueError(f"task.env.{name}: not a valid environment variable name")
        if is_secret_name(name):
            raise ValueError(f"task.env.{name}: train.py never receives secret-looking or provider variables "
                             f"(names with {', '.join(SECRET_NAME_PARTS)}, credential files, cloud and LLM "
                             "provider settings); allowed are any other names, e.g. HF_HOME, HF_HUB_OFFLINE, "
                             "WANDB_MODE, NCCL_*, CUDA_*")
        if has_secret_value(value):
            raise ValueError(f"task.env.{name}: its value carries credentials in a URL (scheme://user:pass@)")
        env[name] = value
    return env


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
    seed_env: str = SEED_ENV,
) -> dict[str, str]:
    """The environment for a fitness run.

    ``base`` (default ``os.environ``) minus secret-looking names and provider settings, plus
    PYTHONUNBUFFERED=1 and PYTHONDONTWRITEBYTECODE=1, plus EVOLVE_BUDGET_S and the seed (in
    ``seed_env``, EVOLVE_SEED unless the task names another variable) when given,
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
        env[seed_env] = str(int(seed))
    if num_threads is not None:
        n = str(int(num_threads))
        for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "EVOLVE_NUM_THREADS"):
            env[name] = n
    if extra:
        env.update({str(k): str(v) for k, v in extra.items()})
    return env
