"""What an operator hands to an island: a new train.py and where it came from."""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Parent:
    """One evaluated train.py an operator may build on."""

    commit: str          # full hash of the commit holding this train.py
    source: str          # the train.py text at that commit
    val_bpb: float
    island: int
    description: str = ""        # the change that made this train.py (its experiment's description)
    metrics: dict = field(default_factory=dict)   # its run's summary lines (num_steps, peak_vram_mb, ...)


@dataclass(frozen=True)
class Cost:
    """What producing a candidate cost (zeros for offline operators)."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    usd: float = 0.0
    seconds: float = 0.0


@dataclass(frozen=True)
class Candidate:
    """A train.py variant waiting to be measured."""

    source: str                  # the full new train.py text
    description: str             # one line, e.g. "LR 0.003 -> 0.0045"
    parents: tuple[str, ...]     # parent commit hash(es); crossover has two
    operator: str                # name of the operator that produced it
    cost: Cost = field(default_factory=Cost)
    transcript: dict = field(default_factory=dict)   # LLM operators: every message and request, redacted


class NoCandidate(Exception):
    """The operator could not produce a candidate from these parents; the message says why. LLM
    operators attach `cost` and `transcript` once the model was called."""


class ProposalControl:
    """Shared between the engine and one LLM proposal running on a worker thread: the engine may
    cancel it (checked before each request; a request in flight, attached here, is aborted), and
    the proposal publishes what it has cost so far."""

    def __init__(self) -> None:
        self.cancelled = threading.Event()
        self.why = ""
        self.cost = Cost()
        self.started = time.monotonic()
        self.aborted = 0                 # requests cancelled while at the server
        self._lock = threading.Lock()
        self._requests: set = set()      # concurrent.futures.Future of each request in flight

    def cost_so_far(self) -> Cost:
        """What the proposal has cost until now: the calls it finished, and the time since it began."""
        return Cost(self.cost.prompt_tokens, self.cost.completion_tokens, self.cost.usd,
                    time.monotonic() - self.started)

    @property
    def in_request(self) -> bool:
        """Whether a request of the proposal is at the server now."""
        with self._lock:
            return bool(self._requests)

    def attach(self, request) -> None:
        """A request went out (a Future whose cancel() aborts it); cancelled at once if the proposal is."""
        with self._lock:
            self._requests.add(request)
            if self.cancelled.is_set() and request.cancel():
                self.aborted += 1

    def detach(self, request) -> None:
        with self._lock:
            self._requests.discard(request)

    def cancel(self, why: str) -> None:
        with self._lock:
            self.why = why
            self.cancelled.set()
            self.aborted += sum(request.cancel() for request in self._requests)


@dataclass(frozen=True)
class Attempt:
    """One past experiment of the island, as an LLM operator shows it to the model."""

    description: str
    status: str                  # keep / discard / crash
    outcome: str                 # ok / crash / timeout / oom / nan / rejected
    val_bpb: float | None
    delta: float | None          # val_bpb - parent's val_bpb
    reason: str = ""             # why it failed, one line
    log_tail: str = ""           # end of the fitness log, for failures
    tried_on: str = ""           # commit it was tried on when that is an ancestor, not the parent itself
    island: int | None = None    # the island that ran it


@dataclass(frozen=True)
class LineageStep:
    """One kept change on the way from the base train.py to a parent, oldest first."""

    commit: str
    description: str
    delta: float | None          # val_bpb change against the train.py it was made from
    island: int


@dataclass(frozen=True)
class Peer:
    """Another train.py the model should know of: one of the island's best, or one training now."""

    island: int
    description: str
    commit: str = ""
    val_bpb: float | None = None
    operator: str = ""


@dataclass(frozen=True)
class ProposalContext:
    """What the engine knows when a proposal starts; offline operators ignore it."""

    island: int
    program: str = ""                        # the research brief (program.md)
    history: tuple[Attempt, ...] = ()        # experiments on the parent's lineage (it and its ancestors), oldest first
    sigma: float = 0.0                       # noise floor of val_bpb
    noise_k: float = 0.0                     # a keep needs a gain > noise_k * sigma
    budget_s: float = 0.0
    common_ancestor_source: str | None = None   # crossover: the parents' merge-base train.py
    temperature: float = 0.0                 # the island's, in sigma units: > 0 = it explores (evolve/tempering.py)
    bet_max_credit: int = 0                  # > 0: a hot island's LLM may open a bet of up to this many experiments
    bets: tuple[str, ...] = ()               # the island's bets so far, in words (evolve/bets.py story)
    base_source: str | None = None           # the run's unmodified train.py (the parent's diff is against it)
    lineage: tuple[LineageStep, ...] = ()    # kept changes from the base to the (first) parent, oldest first
    best: tuple[Peer, ...] = ()              # the island's best members other than the parent
    in_flight: tuple[Peer, ...] = ()         # candidates training now, on this island and others
    lessons: str = ""                        # lessons.md: what the run has learned so far
    focus: str = ""                          # the island's research focus (llm.islands.<k>.focus)
    control: ProposalControl | None = field(default=None, compare=False)   # cancel it, read its cost so far
