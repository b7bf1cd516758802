"""The `rewardkit` command: parses flags (or `--config FILE.yaml`) into a command's config dataclass and dispatches.

Each command lives next to the code it drives and exposes a config dataclass plus a function taking it; importing
them lazily keeps `rewardkit --help` fast. Every command runs offline (`rewardkit.runs.offline_environment`).
"""

from __future__ import annotations

import argparse
import importlib
import sys

from rewardkit.config import add_config_arguments, config_from_args
from rewardkit.errors import RewardkitError
from rewardkit.runs import offline_environment

# command -> (its config class, the function running it, a one-line description); classes and functions are named
# "module:attribute". The config modules import no torch, so building one command's parser stays fast.
COMMANDS: dict[str, tuple[str, str, str]] = {
    "train-rm": ("rewardkit.models.config:TrainRMConfig", "rewardkit.models.command:train_reward_model",
                 "Train a reward model on pairwise, rating, ranking or binary feedback."),
    "eval-rm": ("rewardkit.eval.command:EvalConfig", "rewardkit.eval.command:run_eval",
                "Evaluate one or two reward models: accuracy with intervals, length bias, calibration, reports."),
    "score": ("rewardkit.rewards.command:ScoreConfig", "rewardkit.rewards.command:run_score",
              "Score responses with a reward model or a reward spec (sparse or dense)."),
    "rl": ("rewardkit.rl.config:RLConfig", "rewardkit.rl.command:run_rl",
           "Optimize a policy against a reward spec (REINFORCE, actor-critic, PPO, GRPO, RLOO)."),
    "best-of-n": ("rewardkit.rl.best_of_n:BestOfNConfig", "rewardkit.rl.best_of_n:run_best_of_n",
                  "Sample N responses per prompt and keep the one a reward prefers; chart best-of-N against a gold "
                  "reward."),
    "serve": ("rewardkit.serve.config:ServeConfig", "rewardkit.serve.command:run_serve",
              "Serve a reward model over HTTP."),
    "label": ("rewardkit.label.config:LabelConfig", "rewardkit.label.command:run_label",
              "Collect human feedback in the browser (pairwise, ranking, rating, thumbs): `rewardkit label serve "
              "DB` (or `rewardkit label DB`)."),
    "label serve": ("rewardkit.label.config:LabelConfig", "rewardkit.label.command:run_label",
                    "Serve the labelling web app on a database filled by `label import`; print each annotator's link."),
    "label import": ("rewardkit.label.config:LabelImportConfig", "rewardkit.label.importing:run_import",
                     "Add items to label from feedback files, rl samples or a policy, optionally actively ordered."),
    "label export": ("rewardkit.label.config:LabelExportConfig", "rewardkit.label.command:run_export",
                     "Write the judgments as train-rm data (majority votes or every judgment, ties apart)."),
}
# A two-word name ("label import") is a subcommand of its first word's command.


def resolve(name: str):
    """The object a "module:attribute" name of COMMANDS names, importing its module."""
    module, _, attribute = name.partition(":")
    return getattr(importlib.import_module(module), attribute)


def command_of(argv: list[str]) -> str | None:
    """The COMMANDS name `argv` asks for: its first two words when they name a subcommand, else its first word."""
    words = [arg for arg in argv if not arg.startswith("-")][:2]
    return next((name for name in (" ".join(words), words[0] if words else None) if name in COMMANDS), None)


def build_parser(command: str | None) -> tuple[argparse.ArgumentParser, type | None]:
    """The top-level parser; only `command`'s config module is imported and its flags added (the others stay lazy)."""
    parser = argparse.ArgumentParser(prog="rewardkit", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    config_class = None
    parent, _, child = (command or "").partition(" ")
    for name, (config_name, _, description) in COMMANDS.items():
        if " " in name:
            continue
        children = [(n, d) for n, (_, _, d) in COMMANDS.items() if n.startswith(name + " ")]
        epilog = " ".join(f"`rewardkit {n}`: {d}" for n, d in children) or None
        command_parser = sub.add_parser(name, help=description, description=description, epilog=epilog)
        if name == parent and child:
            nested = command_parser.add_subparsers(dest="subcommand", metavar="SUBCOMMAND", required=True)
            child_description = COMMANDS[command][2]
            config_class = resolve(COMMANDS[command][0])
            add_config_arguments(nested.add_parser(child, help=child_description, description=child_description),
                                 config_class)
        elif name == command:
            config_class = resolve(config_name)
            add_config_arguments(command_parser, config_class)
    return parser, config_class


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser, config_class = build_parser(command_of(argv))
    args = parser.parse_args(argv)
    name = f"{args.command} {args.subcommand}" if getattr(args, "subcommand", None) else args.command
    offline_environment()  # before any command imports transformers, which reads it once
    try:
        cfg = config_from_args(config_class, args)
        result = resolve(COMMANDS[name][1])(cfg)
    except RewardkitError as exc:
        print(f"rewardkit {name}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"rewardkit {name}: interrupted", file=sys.stderr)
        return 130
    return int(result) if isinstance(result, int) else 0

if __name__ == "__main__":
    sys.exit(main())
