"""The structured config: every knob, its type and its default, in one place.

conf/config.yaml and its groups (task/, selection/) only choose presets; the schema and the
documentation of each knob live here. `validate()` checks what types alone cannot (ranges,
cross-field rules) and names the key and the allowed values when something is off.
"""
from __future__ import annotations

import re
import os
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Optional

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING

from operators import llm as llm_defaults
from operators import perturb as perturb_defaults
from island import budget as budget_defaults
from island.curve import CurvePatternError, compile_pattern
from island.environment import SEED_ENV, task_env
from operators.perturb import DEFAULT_EXCLUDE
from operators.registry import allowed_names

from .brief import brief_path


class Topology(str, Enum):
    ring = "ring"      # island k sends to k+1
    random = "random"  # island k sends to one other island drawn at random
    full = "full"      # island k sends to every other island


class Provider(str, Enum):
    auto = "auto"            # a provider key in the environment, else llm.api_base, else none
    none = "none"            # offline operators only
    anthropic = "anthropic"  # ANTHROPIC_API_KEY
    openai = "openai"        # OPENAI_API_KEY
    local = "local"          # any OpenAI-compatible server at llm.api_base (vLLM, llama.cpp, ollama)


class Checkouts(str, Enum):
    auto = "auto"    # a worktree of the lab on the driver's node, a node-local clone on any other
    clone = "clone"  # node-local clones everywhere (what every node of a cluster without a shared disk gets)


class OnNodeLoss(str, Enum):
    restart = "restart"  # Ray starts the lost islands wherever there is room; their experiments re-run
    retire = "retire"    # the run goes on with fewer islands


class Sandbox(str, Enum):
    auto = "auto"    # bwrap when it works on the node; otherwise a notice at start says what is not isolated
    bwrap = "bwrap"  # always; an error (and a retired island on a node) where bwrap cannot run
    none = "none"    # never: train.py runs with the user's full access (docs/safety.md)


class EditFormat(str, Enum):
    auto = "auto"                      # constants for a model marked small (llm.small_model), else search_replace
    search_replace = "search_replace"  # SEARCH/REPLACE blocks (or a diff, or a whole file) against train.py
    constants = "constants"            # NAME = value lines for train.py's constants only: a short prompt


class OnMaxCost(str, Enum):
    offline = "offline"  # islands go on with the offline operators
    stop = "stop"        # the run stops starting experiments


@dataclass
class RunConfig:
    # Where the run lives (lab repo, worktrees, records, logs). Rerunning with the same dir resumes.
    dir: str = "runs/${now:%Y%m%d-%H%M%S}"
    # Stop after this many evaluated experiments in total over all islands (baselines included;
    # confirmation runs of an experiment are not counted, see selection.confirm_sigmas).
    max_experiments: int = 50
    # Stop starting new experiments once the run has run this many hours, summed over all its
    # starts (time between a stop and a resume does not count; 0 = no time limit).
    hours: float = 0.0
    # Live terminal view (rich); off when stdout is not a terminal.
    live: bool = True
    # Stop cleanly (resumable) when the run dir's disk has less than this many MB free.
    min_free_mb: int = 500
    # The run's name in git: branches evolve/<name>/island-<k>, refs refs/evolve/<name>/...
    # null = the run dir's base name. Pinned: a resume keeps the name it was created with.
    name: Optional[str] = None
    # A resume whose pinned settings (evolve/workspace.py PINNED: task, budget, selection, seed, ...)
    # differ from the run's stops and runs nothing; true resumes anyway with the new values
    # (run.json keeps the history of such changes).
    accept_changed_settings: bool = False


@dataclass
class TaskConfig:
    # Preset name, set by the task/ group: tiny (CPU, ~20 s), h100 (5 min, anchor-sized), custom.
    preset: str = "tiny"
    # A directory following the autoresearch convention (train.py, prepare.py, program.md).
    # null = the default task shipped with the package.
    dir: Optional[str] = None
    # Counted training seconds per experiment (passed to train.py as EVOLVE_BUDGET_S).
    budget_s: float = 20.0
    # Extra wall seconds for start-up, compilation and evaluation before a run is killed.
    grace_s: float = 60.0
    # Top-level constants rewritten in train.py / prepare.py when the lab is created (presets).
    train_constants: dict[str, Any] = field(default_factory=dict)
    prepare_constants: dict[str, Any] = field(default_factory=dict)
    # Data cache for the task (tokenizer, tokens); null = ~/.cache/evolve.
    cache_dir: Optional[str] = None
    # Per-process memory limit of a fitness run in MB (RLIMIT_DATA; null = none). CPU only: on a
    # GPU an out-of-memory error is classified instead (RLIMIT breaks CUDA's address space).
    max_memory_mb: Optional[int] = None
    # prepare.py's evaluation function whose returned value must equal the printed val_bpb
    # ("auto" = evaluate_bpb when the task defines it; null = no check; see docs/safety.md).
    evaluator: Optional[str] = "auto"
    # Interpreter for the fitness runs, e.g. an autoresearch checkout's .venv/bin/python;
    # null = the interpreter running evolve.
    python: Optional[str] = None
    # Extra environment variables for the fitness runs and prepare.py, e.g.
    # '+task.env={HF_HUB_OFFLINE: 1, HF_HOME: /data/hf}'. Secret-looking names are refused
    # (island/environment.py says which variables of your own environment arrive and which not).
    env: dict[str, str] = field(default_factory=dict)
    # The variable that carries each run's seed to train.py (baselines and confirmation runs
    # differ only by it). A train.py that reads none gets a warning at start (docs/task.md).
    seed_env: str = SEED_ENV                                            # EVOLVE_SEED
    # The research brief the LLM operators read: a file (absolute, or relative to task.dir);
    # null = the task's program.md, else the project's. A brief written for an interactive agent
    # (set-up, git, results.tsv, "LOOP FOREVER") is framed as such in the prompt.
    brief: Optional[str] = None
    # Budget enforcement (island/budget.py): a candidate that rebinds the budget it imports from
    # prepare.py, or whose training_seconds exceed budget_s x (1 + budget_tolerance) +
    # budget_tolerance_s, or whose uncounted time (wall - training_seconds) exceeds its island's
    # baseline uncounted time x (1 + uncounted_margin) + uncounted_margin_s, is over-budget.
    enforce_budget: bool = True
    budget_tolerance: float = budget_defaults.DEFAULT_TOLERANCE          # 0.05
    budget_tolerance_s: float = budget_defaults.DEFAULT_TOLERANCE_S      # 5
    uncounted_margin: float = budget_defaults.DEFAULT_MARGIN             # 1.0
    uncounted_margin_s: float = budget_defaults.DEFAULT_MARGIN_S         # 30
    # Every fitness run (baselines included) runs in a bubblewrap sandbox: read-only system and
    # interpreter, writable checkout and compile caches, read-only data cache, private HOME and /tmp,
    # own PID namespace, no network (docs/safety.md). auto: where bwrap works (else a notice at start);
    # bwrap: always (an error where it cannot run); none: never.
    sandbox: Sandbox = Sandbox.auto
    # Keep the network in the sandbox, for a task whose train.py must download something. It also
    # reaches local services (Ray's ports among them): leave it off unless the task needs it.
    network: bool = False
    # More paths a sandboxed run may read, e.g. a custom task's data cache under HOME:
    # 'task.sandbox_read_only=[$HOME/.cache/autoresearch]'. The packaged task's cache is always readable.
    sandbox_read_only: list[str] = field(default_factory=list)
    # The regular expression that reads training-curve points from train.py's step log, with the
    # named groups step, loss and percent (or fraction); null = the default, which reads our tiny
    # task's and the anchor's `step 00012 (4.0%) | loss: 3.45 | ...` lines (island/curve.py).
    curve_pattern: Optional[str] = None


@dataclass
class SelectionConfig:
    # Preset name, set by the selection/ group: islands (default) or ratchet (the anchor's loop).
    name: str = "islands"
    # Members kept per island; the worst is dropped when a keep overflows it (the best never is).
    population_size: int = 4
    # DEAP tournament size for drawing a parent from the island's population (1 = uniform).
    tournament_size: int = 2
    # A child is kept only if it beats its parent by more than noise_k * sigma (0 = any gain).
    noise_k: float = 1.0
    # Baseline runs in generation 0 (different seeds); their spread is sigma. 0 = one per island, at
    # least 2 when noise_k > 0 and at least min_baselines, rounded up to fill the last round of the
    # islands (4 islands: 8, in the time of 6; none idles while the others finish generation 0).
    baseline_runs: int = 0
    # Successful baselines needed before anything is judged: a failed baseline is re-run with a new
    # seed (up to twice the planned number of runs), and the run stops if fewer succeed. 6 (was 4):
    # power 78% -> 87% (seeded) and 65% -> 75% (jitter) at precision 93% -> 90% and 89% -> 88% on 48
    # seeds of scripts/bench_acceptance.py (docs/benchmarks.md, "Six baselines on 48 seeds"; on 24
    # fresh seeds: precision 89% / 78%, power 89% / 84%, "The new default on 24 fresh seeds").
    min_baselines: int = 6
    # A would-be keep whose gain over its parent is at most confirm_sigmas standard errors of the
    # difference runs again, and so does its parent, on one fresh seed, before it is kept (so before
    # it can become a champion or a migrant): the runs of both decide. 0 = never. Chosen with
    # scripts/bench_acceptance.py (docs/benchmarks.md).
    confirm_sigmas: float = 5.0
    # A gain larger than implausible_sigmas * sigma is re-run the same way before it is kept. 0 = never.
    implausible_sigmas: float = 20.0
    # Extra runs, each with a new seed, that a candidate under confirmation gets at most. Above 1 the
    # confirmation is a sequential test: after each paired re-run (candidate and parent on one fresh
    # seed) it runs again while its mean still clears noise_k and its mean paired gain is positive
    # but not yet beyond paired_sigmas * sigma / sqrt(pairs); then the runs decide. 5 (was 3): power
    # 52% -> 72% at 97% -> 89% precision on scripts/bench_acceptance.py (docs/benchmarks.md, 2026-12-03).
    confirm_runs: int = 5
    # A candidate under confirmation is kept only if, on each fresh seed it shares with its parent,
    # it beats the parent by more than paired_sigmas * sigma (what a seed fixes cancels in that
    # difference). 0 = any gain on the shared seed.
    paired_sigmas: float = 3.0
    # The sequential test's futility bound: a candidate under confirmation runs again only while its
    # mean paired gain is beyond continue_sigmas * sigma / sqrt(pairs) (and short of the paired
    # margin); at or below it, the runs so far decide (a discard). 0 = any positive paired gain runs
    # on. A null that cleared the first-run screen by luck then spends fewer runs and has fewer looks at
    # the margin. 0.7 (was 0): on 48 seeds of scripts/bench_acceptance.py, precision 91% -> 97% (seeded)
    # and 80% -> 85% (jitter), power 87% -> 89% and 79% -> 82%, runs per candidate 1.57 -> 1.50 and
    # 1.55 -> 1.51 (docs/benchmarks.md, "A futility bound, and close calls cut short by migrants").
    # Ignored when paired_sigmas is 0 (any positive paired gain is then a keep).
    continue_sigmas: float = 0.7
    # Judge with sigma widened by t_0.975(dof) / z_0.975 (evolve/noise.py judging_sigma) while it
    # rests on few degrees of freedom: x1.62 on 3, x1.14 on 10, x1.04 on 30 (x6.5 on 1). false = the
    # pooled estimate as it is.
    widen_sigma: bool = True
    # The seed of a candidate's first run. fresh (the default): one no run of this run has used, so
    # that what a seed fixes is independent noise in every comparison with the parent's mean (its
    # runs are on other seeds). island: seed + island on every first run of an island, the anchor's
    # fixed seed (the ratchet preset): on a task whose score depends on the seed, every first run of
    # an island then shares one offset that a parent measured on several seeds does not, a bias
    # fixed for the whole island (docs/benchmarks.md, "Fresh first-run seeds and a longer sequential test").
    first_seed: str = "fresh"
    # The run's champion (the best commit alive, by the mean of its runs), unless it is the unmodified
    # train.py, runs again at the search's budget, each time on a fresh seed, until it has
    # champion_runs successful runs: its number is then the mean of enough runs that the lucky draws
    # that made it champion weigh little (the winner's curse; evolve/remeasure.py). Counted apart
    # from run.max_experiments; the last champion is re-measured after that limit too. 0 or 1 = never.
    champion_runs: int = 6
    # Temperature of the hottest island, in units of sigma (evolve/tempering.py): island 0 is greedy
    # (T = 0), island k of n runs at t_max ** (k / (n - 1)) and takes a child worse than its head by
    # delta as its new head with probability exp(-delta / (T sigma)) (status `explore`). 0 = no
    # ladder: every island keeps only improvements. Must be 0 or > 1. The default, 100, was chosen on
    # scripts/bench_search.py's frozen landscapes (docs/benchmarks.md, "Temperaments").
    t_max: float = 100.0
    # Descend first (evolve/tempering.py, `descending`): with a ladder and descend_window > 0, while
    # the run's best kept score improved by at least descend_sigmas * sigma over the last
    # descend_window x islands experiments, every island builds greedily on the run's champion (the
    # whole budget descends, as the ratchet's does); when that stalls, the hot islands restart from
    # the unmodified train.py and explore at their temperatures, until a gain that large comes
    # again. The greedy island 0 then always builds on the run's champion. 0 = off (the default):
    # measured on scripts/bench_search.py's landscapes (docs/benchmarks.md, "Descend first",
    # 2026-12-03), window 6 reached the smooth optimum in 52 evaluations (median) instead of the
    # ladder's 97, but found the ridge's well in 1 of 16 runs against the ladder's 6 of 32: exploring
    # late loses the multimodal case the ladder exists for. Its restart also sends hot islands back to
    # the unmodified train.py, costly on a real task. Try 6 (and 2 sigma) where gains come steadily.
    descend_window: int = 0
    descend_sigmas: float = 2.0
    # Most experiments an LLM on a hot island may stake on a multi-step bet (evolve/bets.py): it opens
    # one by starting its description with [bet NAME N]; the bet's lineage is exempt from the keep
    # rule for N experiments, then kept if its best beat the champion, else abandoned. 0 = no bets.
    bet_max_credit: int = 4


@dataclass
class ExchangeConfig:
    # Every `interval` experiments (run-wide), neighbours on the temperature ladder may swap their
    # states (replica exchange; evolve/tempering.py). 0 = never. Without a ladder (selection.t_max=0)
    # a swap happens when the higher island holds the better state: it moves down to island 0.
    interval: int = 0


@dataclass
class EarlyStopConfig:
    # Stop a candidate's first run when its training curve is worse than its parent's, at equal
    # fraction of the budget, by more than k times the noise there (the baselines' spread), once
    # min_fraction of the budget has passed. Recorded as outcome early-stopped (results.tsv:
    # discard), never kept. Baselines, confirmation runs and selection=ratchet never stop early.
    # Off by default: on the default task it stopped candidates that would have been kept (5 of 11
    # re-run stops, scripts/bench_fidelity.py, docs/benchmarks.md); turn it on where curves predict.
    enabled: bool = False
    k: float = 3.0
    min_fraction: float = 0.3


@dataclass
class PromoteConfig:
    # Once at least `every` experiments were recorded since the last promotion, the best island
    # champion never promoted trains at `factor` times task.budget_s next to the base commit at the
    # same budget and seed; the record says whether its gain held (events.tsv, report). Counted
    # apart from run.max_experiments. 0 = never. Needs a task whose budget follows EVOLVE_BUDGET_S
    # (the packaged tiny task does; the anchor's fixed TIME_BUDGET does not, and promotions then stop).
    every: int = 50
    factor: float = 4.0


@dataclass
class MigrationConfig:
    # Each island sends migrants after every `interval` of its own experiments (0 = never).
    interval: int = 5
    # How many of the island's best members travel each time.
    size: int = 1
    topology: Topology = Topology.ring


@dataclass
class ResetConfig:
    # Every `interval` experiments per island (interval x islands in total), the weakest islands
    # restart from the champion of a randomly chosen survivor (0 = never).
    interval: int = 20
    # Fraction of islands reset each time (at least one when > 0 and there are 2+ islands).
    fraction: float = 0.5


@dataclass
class LLMConfig:
    # Set by the llm/ group; `auto` prints what it chose at start.
    provider: Provider = Provider.auto
    # Any litellm model string; null = the provider's default (DEFAULT_MODELS in evolve/llm_choice.py).
    model: Optional[str] = None
    # Base URL of an OpenAI-compatible server, e.g. http://127.0.0.1:8000/v1.
    api_base: Optional[str] = None
    temperature: float = llm_defaults.DEFAULT_TEMPERATURE          # 0.7
    max_tokens: int = llm_defaults.DEFAULT_MAX_TOKENS              # 8192
    # Per request. A timeout, a dropped connection, 408 / 409 / 429 or a 5xx is sent again num_retries
    # times with backoff (operators/llm.py; never a context-length error); litellm's own retries are off.
    timeout_s: float = llm_defaults.DEFAULT_TIMEOUT_S              # 120
    num_retries: int = llm_defaults.DEFAULT_NUM_RETRIES            # 2
    # Times an unmatched SEARCH block is shown back to the model with the nearest lines.
    max_fix_rounds: int = llm_defaults.DEFAULT_MAX_FIX_ROUNDS      # 2
    # What the model is asked for (operators/constant_edits.py for `constants`, docs/llm.md).
    edit_format: EditFormat = EditFormat.auto
    # The model is small (a few billion parameters or less): `auto` then picks the constants format.
    small_model: bool = False
    # The model's context size in tokens; null = ask the server (vLLM, llama.cpp) or litellm's model
    # map once, 0 = unknown. When known, history is trimmed until the prompt leaves room for the
    # reply, and max_tokens is lowered to what is left.
    context_tokens: Optional[int] = None
    # Propose an island's next LLM candidate while its current experiment trains.
    prefetch: bool = True
    # With prefetch, an island that frees up waits at most this long for its LLM proposal, then
    # trains an offline candidate meanwhile (recorded with stand_in_for); the proposal stays in flight.
    max_wait_s: float = 30.0
    # Stop using the LLM once the run's LLM spend reaches this many dollars (0 = no cap).
    max_cost_usd: float = 0.0
    on_max_cost: OnMaxCost = OnMaxCost.offline
    # Per-island temperament, e.g. '+llm.islands={1: {temperature: 1.1}, 2: {model: openai/gpt-4o-mini}}';
    # each island may set model, temperature, api_base, max_tokens and focus (free text).
    islands: dict[int, Any] = field(default_factory=dict)
    # Research focus per island, appended to the brief of its LLM prompts: island k takes
    # focuses[k % len(focuses)]; `llm.islands.<k>.focus` overrides one island. The focus/ group
    # sets it (focus=areas: architecture, optimizer, schedule, efficiency, data pipeline).
    focuses: list[str] = field(default_factory=list)
    # Write <run.dir>/lessons.md from the journal every this many experiments (0 = never); every
    # LLM prompt includes it (evolve/lessons.py).
    lessons_every: int = 10
    # Also ask the LLM for a short summary of lessons.md each time it is written (costs one call).
    lessons: bool = False


@dataclass
class PerturbConfig:
    # Constants changed per candidate (1..max_changes) and the step size (see operators/perturb.py).
    max_changes: int = perturb_defaults.DEFAULT_MAX_CHANGES      # 2
    scale: float = perturb_defaults.DEFAULT_SCALE                # 0.5
    # Constants the offline operators (perturb and crossover) never change: fnmatch patterns on
    # the constant's name. The defaults leave the seed, the budget, the evaluation and facts about
    # the hardware alone (H100_BF16_PEAK_FLOPS only feeds the MFU printout). Setting this replaces
    # the list: keep the defaults you still want.
    exclude: list[str] = field(default_factory=lambda: list(DEFAULT_EXCLUDE))
    # perturb's step size on the hottest island is scale x hot_scale; islands in between grow
    # with their temperature, scale x (1 + (hot_scale - 1) x T / selection.t_max). 1 = the same everywhere.
    hot_scale: float = 1.0


@dataclass
class OperatorsConfig:
    # Relative weights of the operators; an operator with weight 0 is never used. Without an LLM
    # the llm_* operators are left out (and perturb is used if nothing else is left).
    weights: dict[str, float] = field(default_factory=lambda: {
        "llm_mutation": 0.6, "llm_crossover": 0.15, "perturb": 0.2, "crossover": 0.05})
    perturb: PerturbConfig = field(default_factory=PerturbConfig)
    # Crossover draws its second parent from another island when there is one.
    crossover_other_island: bool = True


@dataclass
class RayConfig:
    # null = start a private local cluster; "auto" or "ray://host:port" = join an existing one.
    address: Optional[str] = None
    # GPUs per island when GPUs exist (1 = one island per GPU).
    gpus_per_island: float = 1.0
    # Object store size of a private local cluster.
    object_store_mb: int = 256
    # Node-local directory (on every node) for the clones, logs and caches of islands that do not
    # run on the driver's node; the run directory is only ever written by the driver.
    node_dir: str = "/tmp/evolve-nodes"
    checkouts: Checkouts = Checkouts.auto
    # What happens to the islands of a node that leaves the cluster mid-run.
    on_node_loss: OnNodeLoss = OnNodeLoss.restart


@dataclass
class ReportConfig:
    # Rebuild <run.dir>/report/index.html in a background process after every `every` recorded
    # experiments, and once more when the run ends (0 = never: `python -m evolve.report` by hand).
    # Watch it with `python -m evolve.report RUN --serve` (docs/report.md).
    every: int = 10


@dataclass
class Config:
    # Number of islands. Unset (???) means one per GPU, or 2 on a machine without GPUs.
    islands: int = MISSING
    seed: int = 0
    run: RunConfig = field(default_factory=RunConfig)
    task: TaskConfig = field(default_factory=TaskConfig)
    selection: SelectionConfig = field(default_factory=SelectionConfig)
    early_stop: EarlyStopConfig = field(default_factory=EarlyStopConfig)
    promote: PromoteConfig = field(default_factory=PromoteConfig)
    migration: MigrationConfig = field(default_factory=MigrationConfig)
    reset: ResetConfig = field(default_factory=ResetConfig)
    exchange: ExchangeConfig = field(default_factory=ExchangeConfig)
    llm: LLMConfig = field(default_factory=LLMConfig)
    operators: OperatorsConfig = field(default_factory=OperatorsConfig)
    ray: RayConfig = field(default_factory=RayConfig)
    report: ReportConfig = field(default_factory=ReportConfig)


# What llm.islands.<k> may set.
ISLAND_KNOBS = ("model", "temperature", "api_base", "max_tokens", "focus")
# What selection.first_seed may be (Scheduler._first_seed).
FIRST_SEEDS = ("fresh", "island")


class ConfigError(ValueError):
    """A config value is out of range; the message names the key and what is allowed."""


def _require(ok: bool, key: str, value: Any, allowed: str) -> None:
    if not ok:
        raise ConfigError(f"{key}={value!r} is not allowed; expected {allowed}")


def validate(cfg: Any, islands: int) -> None:
    """Checks ranges and cross-field rules of a resolved config (islands already decided)."""
    _require(islands >= 1, "islands", islands, "an integer >= 1")
    _require(cfg.run.max_experiments >= 1, "run.max_experiments", cfg.run.max_experiments, "an integer >= 1")
    _require(cfg.run.hours >= 0, "run.hours", cfg.run.hours, "hours >= 0 (0 = no limit)")
    _require(cfg.run.min_free_mb >= 0, "run.min_free_mb", cfg.run.min_free_mb, "megabytes >= 0")
    _require(cfg.task.budget_s > 0, "task.budget_s", cfg.task.budget_s, "seconds > 0")
    _require(cfg.task.max_memory_mb is None or cfg.task.max_memory_mb >= 64, "task.max_memory_mb",
             cfg.task.max_memory_mb, "null (no limit) or megabytes >= 64")
    _require(cfg.task.grace_s >= 0, "task.grace_s", cfg.task.grace_s, "seconds >= 0")
    try:
        task_env(cfg.task.env)
    except ValueError as e:
        raise ConfigError(str(e)) from None
    _require(re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", cfg.task.seed_env or "") is not None,
             "task.seed_env", cfg.task.seed_env, "an environment variable name, e.g. EVOLVE_SEED")
    _require(cfg.task.budget_tolerance >= 0, "task.budget_tolerance", cfg.task.budget_tolerance,
             "a fraction >= 0 of task.budget_s")
    _require(cfg.task.budget_tolerance_s >= 0, "task.budget_tolerance_s", cfg.task.budget_tolerance_s, "seconds >= 0")
    _require(cfg.task.uncounted_margin >= 0, "task.uncounted_margin", cfg.task.uncounted_margin,
             "a fraction >= 0 of the baseline's uncounted time")
    _require(cfg.task.uncounted_margin_s >= 0, "task.uncounted_margin_s", cfg.task.uncounted_margin_s, "seconds >= 0")
    if cfg.task.brief is not None:
        path = brief_path(cfg.task.brief, cfg.task.dir)
        _require(path.is_file(), "task.brief", cfg.task.brief,
                 f"a readable file (absolute, or relative to task.dir); {path} is not one")
    for path in cfg.task.sandbox_read_only:
        _require(os.path.isabs(os.path.expanduser(str(path))), "task.sandbox_read_only",
                 list(cfg.task.sandbox_read_only), "a list of absolute paths (or ~/...)")
    _require(cfg.selection.population_size >= 1, "selection.population_size",
             cfg.selection.population_size, "an integer >= 1")
    _require(cfg.selection.tournament_size >= 1, "selection.tournament_size",
             cfg.selection.tournament_size, "an integer >= 1")
    _require(cfg.selection.noise_k >= 0, "selection.noise_k", cfg.selection.noise_k, "a number >= 0")
    _require(cfg.selection.min_baselines >= 1, "selection.min_baselines", cfg.selection.min_baselines,
             "an integer >= 1")
    _require(cfg.selection.baseline_runs >= 0, "selection.baseline_runs",
             cfg.selection.baseline_runs, "an integer >= 0 (0 = one per island)")
    _require(cfg.selection.confirm_sigmas >= 0, "selection.confirm_sigmas", cfg.selection.confirm_sigmas,
             "a number >= 0 (0 = never confirm)")
    _require(cfg.selection.implausible_sigmas == 0 or cfg.selection.implausible_sigmas > cfg.selection.noise_k,
             "selection.implausible_sigmas", cfg.selection.implausible_sigmas,
             f"0 (never re-run) or a number > selection.noise_k={cfg.selection.noise_k}")
    _require(cfg.selection.first_seed in FIRST_SEEDS, "selection.first_seed", cfg.selection.first_seed,
             " or ".join(FIRST_SEEDS))
    _require(cfg.selection.champion_runs >= 0, "selection.champion_runs", cfg.selection.champion_runs,
             "an integer >= 0 (0 or 1 = never re-measure the champion)")
    _require(cfg.selection.paired_sigmas >= 0, "selection.paired_sigmas", cfg.selection.paired_sigmas,
             "a number >= 0 (0 = any gain on the shared seed)")
    _require(cfg.selection.continue_sigmas >= 0 and (cfg.selection.paired_sigmas == 0
                                                     or cfg.selection.continue_sigmas < cfg.selection.paired_sigmas),
             "selection.continue_sigmas", cfg.selection.continue_sigmas,
             f"a number >= 0 and below selection.paired_sigmas={cfg.selection.paired_sigmas:g} (0 = any positive paired gain runs on)")
    _require(cfg.selection.confirm_runs >= 1, "selection.confirm_runs", cfg.selection.confirm_runs,
             "an integer >= 1 (turn confirmation off with confirm_sigmas=0 implausible_sigmas=0)")
    _require(cfg.early_stop.k > 0, "early_stop.k", cfg.early_stop.k, "a number of noise sd > 0")
    _require(0 < cfg.early_stop.min_fraction < 1, "early_stop.min_fraction", cfg.early_stop.min_fraction,
             "a fraction of the budget in (0, 1)")
    try:
        compile_pattern(cfg.task.curve_pattern)
    except CurvePatternError as e:
        raise ConfigError(str(e)) from None
    _require(cfg.promote.every >= 0, "promote.every", cfg.promote.every, "an integer >= 0 (0 = never promote)")
    _require(cfg.promote.factor > 1, "promote.factor", cfg.promote.factor, "a multiple of task.budget_s > 1")
    _require(cfg.selection.t_max == 0 or cfg.selection.t_max > 1, "selection.t_max", cfg.selection.t_max,
             "0 (no temperature ladder) or a temperature > 1 in units of sigma")
    _require(cfg.selection.descend_window >= 0, "selection.descend_window", cfg.selection.descend_window,
             "an integer >= 0 (experiments per island; 0 = the ladder from the start)")
    _require(cfg.selection.descend_sigmas > 0, "selection.descend_sigmas", cfg.selection.descend_sigmas,
             "a gain in units of sigma > 0")
    _require(cfg.selection.bet_max_credit >= 0, "selection.bet_max_credit", cfg.selection.bet_max_credit,
             "an integer >= 0 (0 = no bets)")
    _require(cfg.exchange.interval >= 0, "exchange.interval", cfg.exchange.interval,
             "an integer >= 0 (0 = no replica exchange)")
    _require(cfg.operators.perturb.hot_scale > 0, "operators.perturb.hot_scale", cfg.operators.perturb.hot_scale,
             "a number > 0 (1 = the same step on every island)")
    _require(cfg.migration.interval >= 0, "migration.interval", cfg.migration.interval,
             "an integer >= 0 (0 = no migration)")
    _require(cfg.migration.size >= 1, "migration.size", cfg.migration.size, "an integer >= 1")
    _require(cfg.reset.interval >= 0, "reset.interval", cfg.reset.interval, "an integer >= 0 (0 = no resets)")
    _require(0.0 <= cfg.reset.fraction < 1.0, "reset.fraction", cfg.reset.fraction,
             "a fraction in [0, 1) (some islands must survive)")
    for name, weight in cfg.operators.weights.items():
        _require(name in allowed_names(), f"operators.weights.{name}", weight,
                 f"an operator name in {allowed_names()}")
        _require(weight >= 0, f"operators.weights.{name}", weight, "a weight >= 0")
    _require(sum(cfg.operators.weights.values()) > 0, "operators.weights", dict(cfg.operators.weights),
             "at least one operator with weight > 0")
    _require(cfg.operators.perturb.max_changes >= 1, "operators.perturb.max_changes",
             cfg.operators.perturb.max_changes, "an integer >= 1")
    _require(cfg.operators.perturb.scale > 0, "operators.perturb.scale", cfg.operators.perturb.scale, "a number > 0")
    _require(all(isinstance(p, str) and p for p in cfg.operators.perturb.exclude), "operators.perturb.exclude",
             list(cfg.operators.perturb.exclude), "a list of fnmatch patterns of constant names, e.g. ['*SEED*', '*FLOPS*']")
    _require(cfg.llm.temperature >= 0, "llm.temperature", cfg.llm.temperature, "a number >= 0")
    _require(cfg.llm.timeout_s > 0, "llm.timeout_s", cfg.llm.timeout_s, "seconds > 0")
    _require(cfg.llm.num_retries >= 0, "llm.num_retries", cfg.llm.num_retries, "an integer >= 0")
    _require(cfg.llm.context_tokens is None or cfg.llm.context_tokens >= 0, "llm.context_tokens",
             cfg.llm.context_tokens, "null (ask the server), 0 (unknown) or a number of tokens")
    _require(cfg.llm.max_wait_s >= 0, "llm.max_wait_s", cfg.llm.max_wait_s, "seconds >= 0")
    _require(cfg.llm.lessons_every >= 0, "llm.lessons_every", cfg.llm.lessons_every,
             "an integer >= 0 (0 = no lessons.md)")
    _require(cfg.llm.max_cost_usd >= 0, "llm.max_cost_usd", cfg.llm.max_cost_usd, "dollars >= 0 (0 = no cap)")
    _require(cfg.llm.provider != Provider.local or bool(cfg.llm.api_base), "llm.api_base", cfg.llm.api_base,
             "the URL of an OpenAI-compatible server when llm=local, e.g. http://127.0.0.1:8000/v1")
    for key, override in cfg.llm.islands.items():
        _require(0 <= key < islands, f"llm.islands.{key}", dict(override),
                 f"an island index in 0..{islands - 1}")
        for knob in override:
            _require(knob in ISLAND_KNOBS, f"llm.islands.{key}.{knob}", override[knob], f"one of {', '.join(ISLAND_KNOBS)}")
        _require(isinstance(override.get("focus", ""), str), f"llm.islands.{key}.focus", override.get("focus"),
                 "free text, e.g. 'the optimizer'")
    _require(all(isinstance(f, str) and f.strip() for f in cfg.llm.focuses), "llm.focuses", list(cfg.llm.focuses),
             "a list of non-empty texts, e.g. ['the optimizer', 'the schedule']")
    _require(cfg.report.every >= 0, "report.every", cfg.report.every,
             "an integer >= 0 (0 = no live report)")
    _require(cfg.ray.gpus_per_island > 0, "ray.gpus_per_island", cfg.ray.gpus_per_island, "a number > 0")


def sandbox_notice(cfg: Any) -> str | None:
    """task.sandbox on this machine: ConfigError when bwrap is required and cannot run here; for auto
    without a working bwrap, the notice to print once at start (what is not isolated, how to fix it)."""
    from island.sandbox import SandboxUnavailable, notice

    try:
        return notice(cfg.task.sandbox)
    except SandboxUnavailable as e:
        raise ConfigError(str(e)) from None


def register() -> None:
    ConfigStore.instance().store(name="schema", node=Config)
