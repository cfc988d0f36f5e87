"""LLM operators: mutation (one parent) and crossover (two parents) through litellm.

    op = LLMMutation(model="anthropic/claude-sonnet-4-5")            # key from ANTHROPIC_API_KEY
    op = LLMMutation(model="openai/qwen", api_base="http://127.0.0.1:8000/v1")   # vLLM, llama.cpp, ollama
    candidate = op.propose([parent], rng, context=ProposalContext(island=0, program=..., ...))

One proposal is a short conversation (operators/prompts.py says what is asked, operators/edits.py
reads the reply):

1. The model gets the brief, the budget, the noise floor, the island's recent experiments and the
   parent's train.py (crossover: both lineages' diffs and the first parent's file), and answers
   with `DESCRIPTION: ...` and SEARCH/REPLACE blocks (or a unified diff, or a whole file in one
   ```python / ~~~python block); <think> sections are dropped before the reply is read.
2. A reply cut off at max_tokens (finish_reason "length") is never applied as it stands: the model
   is asked to continue it, up to CONTINUATION_ROUNDS times.
3. Blocks (or diff hunks) whose SEARCH part matches nowhere (exactly, then ignoring trailing
   whitespace and tabs against spaces, then with a uniform indentation shift), or matches more
   than one place, are sent back with the nearest lines of the file or the matching line numbers,
   up to `max_fix_rounds` times; the blocks that matched stay applied.
4. A result that does not compile gets one round with the SyntaxError and the lines around it.
5. The result must differ from the parent as a program (not only in comments or formatting).

Refusals (NoCandidate, the message starting with the operator's name): a reply that edits any
file other than train.py is refused as a whole ("edit to prepare.py refused"): its other blocks
may depend on the refused one, and silently dropping part of an idea would measure something the
model did not propose. A reply whose only block repeats the prompt's format example is refused at
once (no fix round). Likewise an empty reply, a reply without any edit, blocks that still miss
after the fix rounds, a result that still does not compile, "no change", and every remote-side
failure ("llm error: <Type>: <message>", keys redacted). Nothing else is raised for remote-side
problems; a wrong number of parents is a programming error (ValueError), as for the offline
operators.

Retries and time: `timeout_s` bounds each HTTP request. Retries are ours (litellm's wrapper
retried every error, a context-length 400 included, so it and the OpenAI SDK's are off): a
timeout, a dropped connection, 408/409/429 or a 5xx is sent again up to `num_retries` times after
0.5 s doubling (at most 8 s); anything else fails at once. At most num_retries + 1 requests per
model call. `context_tokens` (None: asked once from the server or litellm's model map) lets the
first prompt's history be trimmed until the reply has room, and lowers each request's max_tokens
to what the context has left.

Transcripts and cancellation: Candidate.transcript (and NoCandidate.transcript) holds every message
and each request's outcome, redacted; the engine keeps it under the run dir. A ProposalControl in
the context lets the engine cancel a proposal and read its cost so far: it stops before its next
request, and a request already at the server is aborted. Each request is `litellm.acompletion`
run on one background event loop (`io_loop`) while the proposal's thread waits for it, so that
cancelling it cancels its asyncio task, and the HTTP client then closes the connection (llama.cpp
and vLLM stop generating for a closed connection); a blocking `litellm.completion` could not be
interrupted from another thread.

Cost: Candidate.cost sums the usage tokens of every round, the dollars litellm.completion_cost
prices them at (0.0 for models it does not know, e.g. a local server) and the proposal's wall
time. A NoCandidate raised after the model was called carries the same in its `cost` attribute,
so failed proposals can be accounted for too.

Keys are never passed in, stored or logged: each call looks up the provider's key by name
(ANTHROPIC_API_KEY, OPENAI_API_KEY, ...; `api_key_env` names another variable) among the keys the
driver withdrew from its environment at start, else in the environment (operators/keys.py), and
hands it to litellm explicitly. litellm is imported on first use (it takes seconds), with
LITELLM_LOCAL_MODEL_COST_MAP=True unless set otherwise, so nothing is fetched at import.
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import json
import logging
import os
import random
import re
import threading
import time
import urllib.request
from typing import Any, Callable

from operators import keys, prompts
from operators.candidate import Candidate, Cost, NoCandidate, Parent, ProposalContext
from operators.constant_edits import apply_constants, constants_table, find_constants, parse_constant_lines
from operators.perturb import DEFAULT_EXCLUDE
from operators.tokens import count_messages
from operators.edits import (FORMAT_SEARCH_PLACEHOLDER, ApplyResult, apply_edits, edits_to_other_files, is_target,
                             nearest_lines, parse_description, parse_reply, same_program, strip_thinking,
                             syntax_error)

# Defaults of the knobs below; evolve/config.py's llm.* and evolve/llm_choice.py read these.
DEFAULT_MODEL = "anthropic/claude-sonnet-4-5"
DEFAULT_TEMPERATURE = 0.7
DEFAULT_MAX_TOKENS = 8192
DEFAULT_TIMEOUT_S = 120.0
DEFAULT_NUM_RETRIES = 2
DEFAULT_MAX_FIX_ROUNDS = 2
SYNTAX_FIX_ROUNDS = 1
CONTINUATION_ROUNDS = 2   # times a reply cut off at max_tokens is asked to continue
MAX_REASON_CHARS = 300
MIN_REPLY_TOKENS = 512    # a first request must leave at least this much of the context for the reply
CONTEXT_MARGIN = 0.15     # our token counts are o200k's; a model's tokenizer may count this much more
RETRY_STATUSES = (408, 409, 429)   # and every 5xx
# What the model edits: SEARCH/REPLACE blocks (or a diff, or a whole file) against train.py, or,
# for small models, `NAME = value` lines for train.py's constants (operators/constant_edits.py).
EDIT_FORMATS = ("search_replace", "constants")

_litellm = None
_litellm_lock = threading.Lock()
_io_loop: asyncio.AbstractEventLoop | None = None


def io_loop() -> asyncio.AbstractEventLoop:
    """The event loop every LLM request runs on (one daemon thread for the process, started on first
    use): proposals' threads hand it their requests and wait, so a request can be cancelled."""
    global _io_loop
    with _litellm_lock:
        if _io_loop is None or _io_loop.is_closed():
            loop = asyncio.new_event_loop()
            threading.Thread(target=loop.run_forever, name="llm-io", daemon=True).start()
            _io_loop = loop
    return _io_loop


def load_litellm():
    """Import litellm once (a few seconds), offline-safe and quiet."""
    global _litellm
    with _litellm_lock:
        if _litellm is None:
            os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
            import litellm

            litellm.suppress_debug_info = True
            # litellm logs every call at INFO, through its own handler and again through the root
            # logger (Hydra configures one): keep only its warnings
            logging.getLogger("LiteLLM").setLevel(logging.WARNING)
            _litellm = litellm
    return _litellm


# ---------------------------------------------------------------------------------------------
# Secrets never leave in a message

_SECRET_PATTERNS = [
    re.compile(r"(?<![A-Za-z0-9])sk-[A-Za-z0-9_\-]{6,}"),
    re.compile(r"(?i)\bbearer\s+[A-Za-z0-9._~+/=\-]{6,}"),
    re.compile(r"(?i)((?:api[_-]?key|x-api-key|authorization|access[_-]?token|secret)['\"]?\s*[:=]\s*['\"]?)"
               r"[^\s'\",;}]{6,}"),
    re.compile(r"AIza[0-9A-Za-z_\-]{20,}"),
    re.compile(r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b"),
    re.compile(r"\bgh[pousr]_[A-Za-z0-9]{20,}"),
    re.compile(r"\bhf_[A-Za-z0-9]{20,}"),
]


def redact(text: str) -> str:
    """`text` with anything that looks like a key, and the value of any environment variable whose
    name looks secret (operators.keys.looks_secret: *KEY*, *TOKEN*, *SECRET*, ...), replaced by
    [redacted]."""
    values = [v for name, v in os.environ.items() if keys.looks_secret(name)]
    for value in values + keys.held_values():
        if len(value) >= 6 and value in text:
            text = text.replace(value, "[redacted]")
    for pattern in _SECRET_PATTERNS:
        if pattern.groups:
            text = pattern.sub(lambda m: m.group(1) + "[redacted]", text)
        else:
            text = pattern.sub("[redacted]", text)
    return text


def describe_error(error: BaseException) -> str:
    """`<Type>: <first line of the message>`, redacted and short. litellm turns a failure into
    "tenacity import failed" when its retry helper is missing: the real error is its context."""
    seen: set[int] = set()
    while "tenacity" in str(error) and error.__context__ is not None and id(error) not in seen:
        seen.add(id(error))
        error = error.__context__
    message = str(error).strip().splitlines()[0] if str(error).strip() else ""
    message = re.sub(r"^litellm\.\w+:\s*", "", message)
    while message.startswith(f"{type(error).__name__}: "):
        message = message[len(type(error).__name__) + 2:]
    message = redact(message)
    if len(message) > MAX_REASON_CHARS:
        message = message[:MAX_REASON_CHARS - 3] + "..."
    return f"{type(error).__name__}: {message}" if message else type(error).__name__


def status_of(error: BaseException) -> int | None:
    for holder in (error, getattr(error, "response", None)):
        code = getattr(holder, "status_code", None)
        if isinstance(code, int):
            return code
    return None


def is_context_error(error: BaseException) -> bool:
    """A request longer than the model's context (litellm's ContextWindowExceededError, or a 400
    saying so in the words of OpenAI, vLLM or llama.cpp)."""
    if type(error).__name__ == "ContextWindowExceededError":
        return True
    text = str(error).lower()
    return any(words in text for words in ("maximum context length", "context length", "context window",
                                           "exceeds the available context", "context size"))


def retryable(error: BaseException) -> bool:
    """Whether a failed request is worth sending again: timeouts, dropped connections, 408, 409,
    429 and 5xx; never a context-length error or another 4xx."""
    if is_context_error(error):
        return False
    if type(error).__name__ in ("Timeout", "APIConnectionError", "APITimeoutError", "ServiceUnavailableError",
                                "InternalServerError", "RateLimitError", "BadGatewayError"):
        return True
    code = status_of(error)
    return code is not None and (code in RETRY_STATUSES or code >= 500)


def ask_context_window(model: str, api_base: str | None, timeout_s: float, api_key: str | None = None) -> int | None:
    """The model's context size in tokens as its server or litellm's model map says, else None.
    Servers: vLLM's GET /v1/models (max_model_len), llama.cpp's GET /props
    (default_generation_settings.n_ctx) and its /v1/models (meta.n_ctx_train); ollama and
    llama-cpp-python say nothing (set llm.context_tokens)."""
    if api_base:
        base = api_base.rstrip("/")
        root = base[:-3] if base.endswith("/v1") else base
        for url, read in ((base + "/models", _models_context), (root + "/props", _props_context)):
            try:
                request = urllib.request.Request(url, headers={"Authorization": f"Bearer {api_key}"} if api_key else {})
                with urllib.request.urlopen(request, timeout=min(timeout_s, 10.0)) as response:
                    found = read(json.loads(response.read() or b"{}"))
            except Exception:  # noqa: BLE001 - a server that does not say leaves the size unknown
                found = None
            if found:
                return found
        return None
    try:
        info = load_litellm().get_model_info(model)
        size = info.get("max_input_tokens") or info.get("max_tokens")
        return int(size) if size else None
    except Exception:  # noqa: BLE001 - a model litellm does not know
        return None


def _models_context(data: dict) -> int | None:
    for model in data.get("data") or []:
        for value in (model.get("max_model_len"), (model.get("meta") or {}).get("n_ctx"),
                      (model.get("meta") or {}).get("n_ctx_train")):
            if isinstance(value, int) and value > 0:
                return value
    return None


def _props_context(data: dict) -> int | None:
    value = (data.get("default_generation_settings") or {}).get("n_ctx")
    return value if isinstance(value, int) and value > 0 else None


# ---------------------------------------------------------------------------------------------
# One proposal's conversation

class _Conversation:
    """The messages of one proposal, what its model calls cost so far, and a record of each call
    (the transcript the engine keeps under the run dir)."""

    def __init__(self, operator: "_LLMOperator", messages: list[dict], control: Any = None):
        self.operator = operator
        self.messages = list(messages)
        self.prompt_tokens = 0
        self.completion_tokens = 0
        self.usd = 0.0
        self.calls = 0
        self.started = time.monotonic()
        self.records: list[dict] = []      # per request: max_tokens, finish reason, usage, seconds, error
        self.control = control             # operators.candidate.ProposalControl or None

    def cost(self) -> Cost:
        return Cost(prompt_tokens=self.prompt_tokens, completion_tokens=self.completion_tokens,
                    usd=self.usd, seconds=time.monotonic() - self.started)

    def transcript(self) -> dict:
        """Every message sent and received and every request's outcome, redacted."""
        return {"model": self.operator.model, "api_base": self.operator.api_base or "",
                "messages": [{"role": m["role"], "content": redact(str(m.get("content") or ""))}
                             for m in self.messages],
                "requests": list(self.records)}

    def fail(self, reason: str) -> NoCandidate:
        error = NoCandidate(f"{self.operator.name}: {reason}")
        error.cost = self.cost()
        error.transcript = self.transcript()
        return error

    def _publish(self) -> None:
        if self.control is not None:
            self.control.cost = self.cost()

    def _cancelled(self) -> None:
        if self.control is not None and self.control.cancelled.is_set():
            raise self.fail(f"cancelled: {self.control.why or 'the run no longer needs it'}")

    def ask(self, follow_up: str | None = None) -> tuple[str, str]:
        """Send the conversation (plus `follow_up` as a user message); returns (reply text,
        finish reason) and keeps the reply in the conversation. Transient failures (408, 409, 429,
        5xx, timeouts, dropped connections) are retried num_retries times with backoff; anything
        else, a context-length error above all, fails at once."""
        if follow_up is not None:
            self.messages.append({"role": "user", "content": follow_up})
        op = self.operator
        try:
            litellm = load_litellm()
        except Exception as error:  # litellm missing or broken: not a remote problem, but no candidate
            raise self.fail(f"llm error: cannot import litellm: {describe_error(error)}") from None
        if self.calls == 0:
            self.started = time.monotonic()  # litellm's one-off import is not this proposal's time
        max_tokens = op.reply_budget(self.messages)
        if max_tokens < 1:
            raise self.fail(f"the conversation ({count_messages(self.messages)} tokens) no longer fits the model's "
                            f"context of {op.context_window()} tokens (llm.context_tokens)")
        for attempt in range(op.num_retries + 1):
            self._cancelled()
            self.calls += 1
            began = time.monotonic()
            try:
                response = self._request(litellm, op.completion_kwargs(self.messages, max_tokens))
                break
            except concurrent.futures.CancelledError:   # the engine cancelled the proposal meanwhile
                self.records.append({"max_tokens": max_tokens, "seconds": round(time.monotonic() - began, 3),
                                     "error": "aborted: the proposal was cancelled (connection closed)"})
                raise self.fail(f"cancelled: {self.control.why or 'the run no longer needs it'} (its request "
                                f"was aborted after {time.monotonic() - began:.1f} s: the connection to the "
                                f"server was closed)") from None
            except Exception as error:  # every litellm / provider / transport error
                why = describe_error(error)
                self.records.append({"max_tokens": max_tokens, "seconds": round(time.monotonic() - began, 3),
                                     "error": why})
                if attempt >= op.num_retries or not retryable(error):
                    if is_context_error(error):
                        why += (f" (not retried; the prompt was about {count_messages(self.messages)} tokens and "
                                f"max_tokens {max_tokens}: set llm.context_tokens to the server's context size, or "
                                f"lower llm.max_tokens)")
                    raise self.fail(f"llm error: {why}") from None
                self._publish()
                time.sleep(min(8.0, 0.5 * 2 ** attempt))
        self._account(litellm, response)
        try:
            choice = response.choices[0]
            text = choice.message.content or ""
            finish = str(getattr(choice, "finish_reason", "") or "")
        except (AttributeError, IndexError, TypeError):
            raise self.fail("llm error: reply has no message") from None
        if not isinstance(text, str):  # some providers return content parts
            text = "".join(part.get("text", "") if isinstance(part, dict) else str(part) for part in text)
        usage = getattr(response, "usage", None)
        self.records.append({"max_tokens": max_tokens, "seconds": round(time.monotonic() - began, 3),
                             "finish_reason": finish, "prompt_tokens": int(getattr(usage, "prompt_tokens", 0) or 0),
                             "completion_tokens": int(getattr(usage, "completion_tokens", 0) or 0)})
        self.messages.append({"role": "assistant", "content": text})
        self._publish()
        return text, finish

    def _request(self, litellm, kwargs: dict) -> Any:
        """One litellm request, on the shared event loop; the proposal's ProposalControl may cancel it
        (concurrent.futures.CancelledError here, and the connection closed)."""
        future = asyncio.run_coroutine_threadsafe(litellm.acompletion(**kwargs), io_loop())
        if self.control is None:
            return future.result()
        self.control.attach(future)
        try:
            return future.result()
        finally:
            self.control.detach(future)

    def _account(self, litellm, response: Any) -> None:
        usage = getattr(response, "usage", None)
        prompt_tokens = int(getattr(usage, "prompt_tokens", 0) or 0)
        completion_tokens = int(getattr(usage, "completion_tokens", 0) or 0)
        self.prompt_tokens += prompt_tokens
        self.completion_tokens += completion_tokens
        try:
            usd = float(litellm.completion_cost(completion_response=response) or 0.0)
        except Exception:  # unknown model (a local server): no price
            usd = 0.0
        self.usd += usd if usd == usd and usd >= 0 else 0.0


def control_of(context: ProposalContext | None):
    return context.control if context is not None else None


# ---------------------------------------------------------------------------------------------
# The operators

class _LLMOperator:
    """Shared knobs and the edit loop; subclasses build the first prompt."""

    name = "llm"
    arity = 1

    def __init__(
        self,
        model: str = DEFAULT_MODEL,
        api_base: str | None = None,
        temperature: float = DEFAULT_TEMPERATURE,
        max_tokens: int = DEFAULT_MAX_TOKENS,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        num_retries: int = DEFAULT_NUM_RETRIES,
        max_fix_rounds: int = DEFAULT_MAX_FIX_ROUNDS,
        api_key_env: str | None = None,
        max_history: int = prompts.MAX_HISTORY,
        log_tail_lines: int = prompts.LOG_TAIL_LINES,
        context_tokens: int | None = None,
        edit_format: str = "search_replace",
        exclude: tuple[str, ...] | list[str] = DEFAULT_EXCLUDE,
    ):
        if not model or not isinstance(model, str):
            raise ValueError(f"{self.name}: model must be a litellm model string, got {model!r}")
        if float(timeout_s) <= 0:
            raise ValueError(f"{self.name}: timeout_s must be positive, got {timeout_s!r}")
        if int(max_tokens) < 1:
            raise ValueError(f"{self.name}: max_tokens must be at least 1, got {max_tokens!r}")
        self.model = model
        self.api_base = api_base or None
        self.temperature = float(temperature)
        self.max_tokens = int(max_tokens)
        self.timeout_s = float(timeout_s)
        self.num_retries = max(0, int(num_retries))
        self.max_fix_rounds = max(0, int(max_fix_rounds))
        self.api_key_env = api_key_env or None
        self.max_history = max(0, int(max_history))
        self.log_tail_lines = max(0, int(log_tail_lines))
        if context_tokens is not None and int(context_tokens) < 0:
            raise ValueError(f"{self.name}: context_tokens must be >= 0 (0 = unknown), got {context_tokens!r}")
        # None: ask the server (or litellm's model map) once; 0: unknown, nothing is trimmed
        self.context_tokens = None if context_tokens is None else int(context_tokens)
        self._window_lock = threading.Lock()
        if edit_format not in EDIT_FORMATS:
            raise ValueError(f"{self.name}: edit_format must be one of {', '.join(EDIT_FORMATS)}, got {edit_format!r}")
        self.edit_format = edit_format
        self.exclude = tuple(exclude)   # constants the constants format never shows or changes

    def __repr__(self) -> str:
        base = f", api_base={self.api_base!r}" if self.api_base else ""
        return (f"{type(self).__name__}(model={self.model!r}{base}, temperature={self.temperature}, "
                f"max_tokens={self.max_tokens}, timeout_s={self.timeout_s}, num_retries={self.num_retries}, "
                f"max_fix_rounds={self.max_fix_rounds})")

    def context_window(self) -> int | None:
        """The model's context size in tokens: llm.context_tokens, else asked once, else None."""
        with self._window_lock:
            if self.context_tokens is None:
                self.context_tokens = ask_context_window(self.model, self.api_base, self.timeout_s,
                                                         keys.api_key_for(self.model, self.api_key_env)) or 0
            return self.context_tokens or None

    def reply_budget(self, messages: list[dict]) -> int:
        """max_tokens for a request with these messages: llm.max_tokens, less when the context
        would not hold it (the prompt counted with a margin); < 1 when nothing is left."""
        window = self.context_window()
        if window is None:
            return self.max_tokens
        used = int(count_messages(messages) * (1 + CONTEXT_MARGIN)) + 16
        return min(self.max_tokens, window - used)

    def fit(self, build: Callable[[int, int], list[dict]]) -> list[dict]:
        """The first request's messages from build(history items, log lines), with history (then the
        failures' log tails) trimmed until the context leaves MIN_REPLY_TOKENS (or max_tokens, if
        smaller) for the reply; NoCandidate when even the shortest prompt does not fit."""
        shown, logs = self.max_history, self.log_tail_lines
        messages = build(shown, logs)
        need = min(MIN_REPLY_TOKENS, self.max_tokens)
        while self.context_window() is not None and self.reply_budget(messages) < need:
            if shown > 0:
                shown //= 2
            elif logs > 0:
                logs = 0
            else:
                error = NoCandidate(
                    f"{self.name}: the prompt ({count_messages(messages)} tokens with no history) leaves less than "
                    f"{need} tokens for the reply in the model's context of {self.context_window()} tokens: serve "
                    f"the model with a larger context, or use llm.edit_format=constants (a short prompt)")
                error.cost = Cost()
                raise error
            messages = build(shown, logs)
        return messages

    def completion_kwargs(self, messages: list[dict], max_tokens: int | None = None) -> dict:
        """The arguments of litellm.completion for these messages, the provider's key included.
        Retries are ours (_Conversation.ask): litellm's and the SDK's are off."""
        kwargs = dict(model=self.model, messages=messages, temperature=self.temperature,
                      max_tokens=max_tokens or self.max_tokens, timeout=self.timeout_s, num_retries=0,
                      max_retries=0, drop_params=True)
        if self.api_base:
            kwargs["api_base"] = self.api_base
        key = keys.api_key_for(self.model, self.api_key_env)
        if key:
            kwargs["api_key"] = key   # explicit: the driver's environment holds no keys (operators/keys.py)
        elif self.api_base and self.model.startswith("openai/") and not self.api_key_env:
            kwargs["api_key"] = "no-key"  # local OpenAI-compatible servers accept any; the SDK needs one
        return kwargs

    def _check(self, parents: list[Parent]) -> None:
        if len(parents) != self.arity:
            raise ValueError(f"{self.name} takes exactly {self.arity} parent(s), got {len(parents)}")

    def _ask_whole(self, conversation: _Conversation, follow_up: str | None = None) -> str:
        """One reply, made whole: a reply cut off at max_tokens is never used as it stands; the
        model is asked to continue it up to CONTINUATION_ROUNDS times, then NoCandidate."""
        reply, finish = conversation.ask(follow_up)
        rounds = 0
        while finish == "length":
            if not reply.strip():
                raise conversation.fail("empty reply (the reply was cut off at max_tokens)")
            if rounds >= CONTINUATION_ROUNDS:
                raise conversation.fail(f"reply cut off at max_tokens ({self.max_tokens}), still cut off after "
                                        f"{rounds} request(s) to continue")
            rounds += 1
            more, finish = conversation.ask(prompts.CONTINUE_REQUEST)
            # a model that starts over (a new DESCRIPTION line) replaces the cut reply
            reply = more if parse_description(more) and parse_description(reply) else reply + more
        return reply

    def _edit(self, conversation: _Conversation, base: str) -> tuple[str, str]:
        """Run the conversation until its edits apply and compile: (new source, description)."""
        reply = self._ask_whole(conversation)
        source = base
        description = ""
        match_rounds = syntax_rounds = 0
        first = True
        while True:
            if not reply.strip():
                raise conversation.fail(f"empty reply{' to a fix request' if not first else ''}")
            parsed = parse_reply(reply, source)
            description = description or parsed.description
            others = edits_to_other_files(parsed.edits)
            if parsed.whole_file is not None and parsed.whole_file_name and not is_target(parsed.whole_file_name):
                others.append(parsed.whole_file_name)
            if others:
                raise conversation.fail(f"edit to {', '.join(others)} refused (only train.py may change)")
            if parsed.echoed_example and not parsed.edits:
                raise conversation.fail("the reply repeats the prompt's format example "
                                        f"({FORMAT_SEARCH_PLACEHOLDER[:40]}...) instead of lines of train.py")
            if parsed.edits:
                result = apply_edits(source, parsed.edits)
                source = result.source
                if result.failed or result.ambiguous:
                    if match_rounds >= self.max_fix_rounds:
                        raise conversation.fail(self._unapplied_reason(result, match_rounds))
                    match_rounds += 1
                    failures = [(edit, nearest_lines(source, edit.search)) for edit in result.failed]
                    reply = self._ask_whole(conversation, prompts.mismatch_feedback(
                        failures, result.applied, result.ambiguous, parsed.from_diff))
                    first = False
                    continue
            elif parsed.whole_file is not None:
                source = parsed.whole_file
            else:
                why = "; ".join(parsed.problems) or "no SEARCH/REPLACE block and no whole-file code block"
                raise conversation.fail(f"no edit in {'reply' if first else 'fix reply'}: {why}")
            error = syntax_error(source)
            if error is not None:
                if syntax_rounds >= SYNTAX_FIX_ROUNDS:
                    raise conversation.fail(f"result does not compile: SyntaxError: {error.msg} (line {error.lineno})")
                syntax_rounds += 1
                reply = self._ask_whole(conversation, prompts.syntax_feedback(error, source))
                first = False
                continue
            break
        if same_program(source, base):
            raise conversation.fail("no change" + ("" if source == base else " (only comments or formatting differ)"))
        return source, description

    def _edit_constants(self, conversation: _Conversation, base: str) -> tuple[str, str]:
        """The constants format: NAME = value lines applied with the AST rewriter; lines that name
        no constant or give a value of the wrong type go back to the model (max_fix_rounds)."""
        table = constants_table(base, self.exclude)
        reply = self._ask_whole(conversation)
        rounds = 0
        while True:
            text = strip_thinking(reply)
            parsed = parse_constant_lines(text, base, self.exclude)
            if parsed.values:
                break
            if parsed.unknown and set(parsed.unknown) == {prompts.CONSTANTS_EXAMPLE_NAME}:
                raise conversation.fail(f"the reply repeats the prompt's format example "
                                        f"({prompts.CONSTANTS_EXAMPLE_NAME} = ...) instead of a constant of train.py")
            problems = parsed.unknown or parsed.invalid or parsed.refused
            if not problems:
                raise conversation.fail("no change (the values given are the current ones: "
                                        f"{', '.join(parsed.unchanged)})" if parsed.unchanged else
                                        "no edit in reply: no NAME = value line")
            if rounds >= self.max_fix_rounds:
                what = "; ".join([*(f"not a constant: {n}" for n in parsed.unknown), *parsed.invalid,
                                  *(f"excluded: {n}" for n in parsed.refused)])
                raise conversation.fail(f"no usable NAME = value line after {rounds} fix round(s) ({what[:200]})")
            rounds += 1
            reply = self._ask_whole(conversation, prompts.constants_feedback(
                parsed.unknown, parsed.invalid, parsed.refused, table))
        source = apply_constants(base, parsed.values)
        if same_program(source, base):
            raise conversation.fail("no change")
        old = find_constants(base)
        description = ", ".join(f"{name} {old[name].text} -> {find_constants(source)[name].text}"
                                for name in parsed.values)
        return source, description

    def _constants_crossover(self, first: Parent, second: Parent, context: ProposalContext | None) -> Candidate:
        a, b = find_constants(first.source), find_constants(second.source)
        shown = constants_table(first.source, self.exclude).splitlines()
        names = [line.split(" = ")[0] for line in shown]
        differences = [f"{n} = {a[n].text} | {b[n].text}" for n in names if n in b and a[n].value != b[n].value]
        conversation = _Conversation(self, prompts.constants_crossover_messages(
            first, second, "\n".join(differences), context), control_of(context))
        if not differences:
            raise conversation.fail(f"parents {first.commit[:7]} and {second.commit[:7]} have the same constants "
                                    f"(edit_format=constants)")
        source, description = self._edit_constants(conversation, first.source)
        return Candidate(source=source, description=f"cross {first.commit[:7]} x {second.commit[:7]}: {description}",
                         parents=(first.commit, second.commit), operator=self.name, cost=conversation.cost(),
                         transcript=conversation.transcript())

    @staticmethod
    def _unapplied_reason(result: ApplyResult, rounds: int) -> str:
        """Why the blocks still left unapplied after the fix rounds end the proposal."""
        parts = []
        if result.failed:
            first_line = next((line.strip() for line in result.failed[0].search.splitlines() if line.strip()), "")
            parts.append(f"{len(result.failed)} SEARCH block(s) did not match train.py after {rounds} fix round(s) "
                         f"(first: {first_line[:80]!r})")
        if result.ambiguous:
            item = result.ambiguous[0]
            first_line = next((line.strip() for line in item.edit.search.splitlines() if line.strip()), "")
            places = ", ".join(str(line) for line in item.lines)
            parts.append(f"{len(result.ambiguous)} SEARCH block(s) matched train.py in more than one place after "
                         f"{rounds} fix round(s) (first: {first_line[:80]!r} at lines {places})")
        return "; ".join(parts)


class LLMMutation(_LLMOperator):
    """Ask a model for one focused change to one parent's train.py.

    model: any litellm model string ("anthropic/claude-sonnet-4-5", "gpt-4o", "openai/<name>"
        with api_base for an OpenAI-compatible server, "ollama_chat/<name>", ...).
    api_base: endpoint of a self-hosted server (vLLM, llama.cpp, ollama), None for the provider's.
    temperature, max_tokens: sampling settings per call (max_tokens bounds each reply).
    timeout_s: limit of each HTTP request; num_retries: litellm's retries (see the module doc).
    max_fix_rounds: how often unmatched SEARCH blocks go back to the model with the nearest lines.
    api_key_env: name of an environment variable holding the key, when not the provider's usual one.
    max_history, log_tail_lines: how many recent experiments, and log lines of each failure, to show.
    """

    name = "llm_mutation"
    arity = 1

    def propose(self, parents: list[Parent], rng: random.Random,
                context: ProposalContext | None = None) -> Candidate:
        self._check(parents)
        parent = parents[0]
        if self.edit_format == "constants":
            table = constants_table(parent.source, self.exclude)
            messages = self.fit(lambda shown, logs: prompts.constants_messages(
                parent, table, context, max_history=min(shown, prompts.CONSTANTS_HISTORY)))
            conversation = _Conversation(self, messages, control_of(context))
            source, description = self._edit_constants(conversation, parent.source)
        else:
            messages = self.fit(lambda shown, logs: prompts.mutation_messages(parent, context, max_history=shown,
                                                                              log_lines=logs))
            conversation = _Conversation(self, messages, control_of(context))
            source, description = self._edit(conversation, parent.source)
        return Candidate(source=source, description=description or "llm edit (no description given)",
                         parents=(parent.commit,), operator=self.name, cost=conversation.cost(),
                         transcript=conversation.transcript())


class LLMCrossover(_LLMOperator):
    """Ask a model to combine two parents (from different islands) into one train.py, editing the
    first parent's file. Shown: each parent's changes since their common ancestor
    (context.common_ancestor_source) as unified diffs, or, without an ancestor, the diff between
    the two parents. Parents with the same train.py, or an ancestor equal to either parent (one
    side brings nothing), give NoCandidate without calling the model. Knobs as LLMMutation's.
    """

    name = "llm_crossover"
    arity = 2

    def propose(self, parents: list[Parent], rng: random.Random,
                context: ProposalContext | None = None) -> Candidate:
        self._check(parents)
        first, second = parents
        if self.edit_format == "constants":
            return self._constants_crossover(first, second, context)
        conversation = _Conversation(self, self.fit(lambda shown, logs: prompts.crossover_messages(
            first, second, context)), control_of(context))
        if same_program(first.source, second.source):
            raise conversation.fail(f"parents {first.commit[:7]} and {second.commit[:7]} have the same train.py")
        ancestor = context.common_ancestor_source if context is not None else None
        if ancestor is not None:
            for parent in (first, second):
                if same_program(parent.source, ancestor):
                    raise conversation.fail(
                        f"parent {parent.commit[:7]} has no change since the common ancestor: nothing to combine")
        source, description = self._edit(conversation, first.source)
        description = f"cross {first.commit[:7]} x {second.commit[:7]}: {description or 'llm merge'}"
        return Candidate(source=source, description=description, parents=(first.commit, second.commit),
                         operator=self.name, cost=conversation.cost(), transcript=conversation.transcript())


class LLMSummary(_LLMOperator):
    """Not a candidate operator: asks the model for a short text (lessons.md's summary) with the
    same knobs, retries and key handling as the operators. `summarise(messages)` returns (text,
    Cost) or raises NoCandidate (with `.cost`)."""

    name = "llm_summary"
    arity = 0

    def summarise(self, messages: list[dict]) -> tuple[str, Cost]:
        conversation = _Conversation(self, messages)
        text = strip_thinking(self._ask_whole(conversation)).strip()
        if not text:
            raise conversation.fail("empty summary")
        return text, conversation.cost()
