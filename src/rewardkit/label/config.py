"""The configs of `rewardkit label`, `rewardkit label import` and `rewardkit label export`, each option with its help
text (no torch or web framework here: `--help` stays fast)."""

from __future__ import annotations

from dataclasses import dataclass

from rewardkit.config import option
from rewardkit.device import DeviceOptions
from rewardkit.label.export import MODES
from rewardkit.label.tasks import TASKS


@dataclass
class LabelConfig:
    """Serve the labelling web app: annotators open their link, judge items with the keyboard; the admin link shows
    progress and agreement."""

    db: str = option(help="labelling database (SQLite), filled by `rewardkit label import`", positional=True,
                     metavar="DB")
    host: str = option("127.0.0.1", "address to bind; loopback by default. Binding another address lets anyone who "
                                    "can reach the port try tokens: put it behind HTTPS")
    port: int = option(8080, "TCP port to listen on")
    annotators: list[str] = option([], "annotator names to create; each new one gets a token, printed once with "
                                       "their link (only its hash is stored)", metavar="NAME")
    reissue_tokens: bool = option(False, "give the annotators named by --annotators new tokens (their old links stop "
                                         "working)")
    admin_token: str | None = option(None, "token of the admin link (progress, agreement); also read from "
                                           "$REWARDKIT_LABEL_ADMIN_TOKEN; by default a new random one each start")
    tokens_file: str | None = option(None, "also write the links (with tokens) to this file as JSON, readable by "
                                           "its owner only, for scripts")
    lease_minutes: float = option(30.0, "how long an item shown to an annotator stays reserved for them before "
                                        "another annotator may get its slot")
    max_body_bytes: int = option(64 * 1024, "largest request body accepted; larger ones get 413")
    strength_wait: float = option(2.0, "pairs: after A or B is chosen without a strength, seconds the page waits "
                                       "(with a countdown) for 1-3, how much better, before it submits; Enter "
                                       "submits at once, Esc cancels. A strength chosen first submits at once. 0: "
                                       "no wait (the strength must come first)")
    log_level: str = option("warning", "server log level", choices=("critical", "error", "warning", "info", "debug"))


@dataclass
class LabelImportConfig(DeviceOptions):
    """Add items to a labelling database: from feedback files, from `rl` samples, or by sampling a policy; optionally
    ordered by what current reward models are least sure of."""

    db: str = option(help="labelling database (SQLite); created when missing", positional=True, metavar="DB")
    inputs: list[str] = option([], "feedback files or folders (the formats train-rm reads: their labels are "
                                   "dropped, their responses kept), or `rl` sample files (samples/step-N.jsonl: "
                                   "prompt, response), JSONL/JSON/CSV", positional=True, metavar="INPUT")
    task: str | None = option(None, "what annotators do, named as the kind of feedback it gives: pairs (A/B/tie), "
                                    "rankings, ratings (1..--scale) or binary (thumbs up/down); default: what the "
                                    "input holds (samples: pairs)",
                              choices=TASKS)
    judgments_per_item: int = option(1, "judgments wanted per item, each from a different annotator")
    scale: int = option(5, "top of the rating scale (ratings go 1..scale, at most 9: one key per value)")
    max_pairs_per_prompt: int = option(0, "pairwise from several responses to one prompt: at most this many pairs "
                                          "per prompt, drawn at random (0: every pair)")
    columns: list[str] = option([], "column renames FIELD=COLUMN, as for train-rm", metavar="FIELD=COLUMN")
    policy: str | None = option(None, "generate the responses: a causal LM (preset smollm2-135m, folder or hub id) "
                                      "sampled --samples-per-prompt times for each prompt of --prompts")
    prompts: str | None = option(None, "prompts for --policy: .txt (one a line) or JSONL/JSON/CSV with a prompt field")
    samples_per_prompt: int = option(2, "responses sampled per prompt with --policy")
    max_new_tokens: int = option(64, "longest response sampled with --policy, in tokens")
    max_prompt_tokens: int = option(256, "with --policy, prompts longer than this keep their last tokens (as in rl "
                                         "and best-of-n)")
    temperature: float = option(1.0, "sampling temperature with --policy")
    top_p: float = option(1.0, "nucleus sampling mass with --policy (1 disables)")
    chat_template: bool = option(True, "wrap plain-text prompts in the policy's chat template as a user turn")
    order: str = option("file", "queue order: file (as read), random, margin (smallest reward margin of "
                                "--reward-model first), disagreement (largest spread across an ensemble of "
                                "--reward-model first), bald (most information about which ensemble member is right "
                                "first), or package.module:function (see rewardkit.label.selection)")
    reward_model: list[str] = option([], "reward model(s) scoring the items for an active --order (several, or one "
                                         "train-rm --ensemble folder, make an ensemble)", metavar="MODEL")
    random_fraction: float = option(0.0, "with an active --order, this fraction of the items is a uniformly random "
                                         "sample spread through the queue (marked `random`: an unbiased sample for "
                                         "evaluation)")
    seed: int = option(0, "seed for response order within items, pair sampling, random order and generation")
    on_bad_record: str = option("fail", "a malformed input record: fail (nothing is imported) or skip and report it",
                                choices=("fail", "skip"))


@dataclass
class LabelExportConfig:
    """Write the judgments as train-rm data, with annotator ids; ties go to a file of their own."""

    db: str = option(help="labelling database (SQLite)", positional=True, metavar="DB")
    output: str = option(help="JSONL file to write (train-rm --data reads it); ties go to OUTPUT's name with "
                              ".ties.jsonl", positional=True, metavar="OUTPUT")
    mode: str = option("majority", "majority: one record per item, by majority vote (Borda count for rankings, mean "
                                   "for ratings); all: one record per judgment, with its annotator", choices=MODES)
    min_judgments: int = option(1, "export only items with at least this many judgments")
    selected_by: str | None = option(None, "export only the items queued this way: random (the uniform sample that "
                                           "--random-fraction mixed in: held-out data for eval-rm), active, or file",
                                     choices=("file", "random", "active"))
