"""`rewardkit label`, `label import` and `label export` in the command dispatcher."""

from __future__ import annotations

import pytest

from rewardkit.cli import build_parser, command_of, main


def test_two_word_commands_are_found_before_one_word_ones():
    assert command_of(["label", "import", "labels.sqlite", "pairs.jsonl"]) == "label import"
    assert command_of(["label", "labels.sqlite", "--port", "9000"]) == "label"
    assert command_of(["label", "serve", "labels.sqlite", "--port", "9000"]) == "label serve"
    assert command_of(["train-rm", "--data", "x"]) == "train-rm"
    assert command_of(["nonsense"]) is None


def test_subcommand_parsers_and_errors(tmp_path, capsys):
    parser, config_class = build_parser("label export")
    assert config_class.__name__ == "LabelExportConfig"
    args = parser.parse_args(["label", "export", "db.sqlite", "out.jsonl", "--mode", "all"])
    assert (args.command, args.subcommand, args.mode) == ("label", "export", "all")
    assert main(["label", str(tmp_path / "absent.sqlite")]) == 2
    assert "rewardkit label: error:" in capsys.readouterr().err
    assert main(["label", "export", str(tmp_path / "absent.sqlite"), str(tmp_path / "o.jsonl")]) == 2
    assert "rewardkit label export: error:" in capsys.readouterr().err and not (tmp_path / "o.jsonl").exists()
    with pytest.raises(SystemExit):
        main(["label", "import", "--help"])
    assert "--order" in capsys.readouterr().out


@pytest.mark.parametrize("argv", [["label", "serve"], ["label"]])
def test_label_serve_and_the_bare_form_parse_the_same_options(argv, tmp_path, capsys):
    """`rewardkit label serve DB` is the server; `rewardkit label DB` still works."""
    from rewardkit.config import config_from_args

    parser, config_class = build_parser(command_of(argv + ["db.sqlite"]))
    args = parser.parse_args(argv + ["db.sqlite", "--port", "9000", "--annotators", "alice", "bob"])
    cfg = config_from_args(config_class, args)
    assert (config_class.__name__, cfg.db, cfg.port, cfg.annotators) == ("LabelConfig", "db.sqlite", 9000,
                                                                         ["alice", "bob"])
    name = " ".join(argv)
    assert main(argv + [str(tmp_path / "absent.sqlite")]) == 2
    err = capsys.readouterr().err
    assert f"rewardkit {name}: error:" in err and "absent.sqlite" in err and "Traceback" not in err


def test_label_help_names_the_serve_subcommand(capsys):
    with pytest.raises(SystemExit):
        main(["label", "--help"])
    assert "`rewardkit label serve`" in " ".join(capsys.readouterr().out.split())
    with pytest.raises(SystemExit):
        main(["label", "serve", "--help"])
    out = capsys.readouterr().out
    assert "--annotators" in out and "usage: rewardkit label serve" in out


def test_train_rm_data_help_names_every_format_it_reads_label_databases_included(capsys):
    from rewardkit.data.readers import DATABASE_READERS, FORMATS

    with pytest.raises(SystemExit):
        main(["train-rm", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    start = out.index("--data PATH [PATH ...] feedback")
    data_help = out[start:out.index("--feedback {", start)]
    for suffix, form in FORMATS.items():
        assert suffix in data_help or (form.upper() in data_help and form not in DATABASE_READERS), suffix
    assert "`rewardkit label` database (.sqlite)" in data_help and "hf:NAME" in data_help and ".gz" in data_help


@pytest.mark.parametrize("wait", ["-1", "31", "nan"])
def test_a_strength_wait_out_of_range_is_one_line_naming_the_option(wait, tmp_path, capsys):
    from tests.label.conftest import pairwise_store

    db = tmp_path / "labels.sqlite"
    pairwise_store(db)
    assert main(["label", "serve", str(db), "--strength-wait", wait]) == 2
    err = capsys.readouterr().err
    assert err.startswith("rewardkit label serve: error: --strength-wait must be from 0 to 30 seconds, got ")
    assert err.count("\n") == 1
