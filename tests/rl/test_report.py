from rewardkit.rl.report import build_blocks, moving_average


def test_moving_average_trailing_window():
    assert moving_average([1.0, 2.0, 3.0, 4.0], 2) == [1.0, 1.5, 2.5, 3.5]
    assert moving_average([], 3) == []


def test_summary_table_reports_before_after_and_change():
    history = [{"step": s, "reward/proxy": 0.1 * s, "reward/gold": 0.05 * s, "kl/ref": 0.2 * s,
                "response/length": 10.0, "policy/entropy": 2.0} for s in range(1, 5)]
    evals = [{"step": 0, "eval/proxy": -0.5, "eval/proxy_sem": 0.1, "eval/gold": -0.4, "eval/kl": 0.0,
              "eval/length": 10.0},
             {"step": 4, "eval/proxy": 0.75, "eval/proxy_sem": 0.1, "eval/gold": 0.1, "eval/kl": 1.5,
              "eval/length": 12.0}]
    summary = {"eval_prompts": 2, "eval_samples_per_prompt": 1, "steps": 4, "algorithm": "ppo", "wall_minutes": 1.0,
               "seconds_per_step": 15.0, "samples_per_step": 4, "settings": {"algorithm": "ppo"}}
    sample = {"prompt": "p", "response": "r", "proxy": 0.0, "gold": 0.0, "truncated": False}
    blocks = build_blocks(summary, history, evals, [sample], [sample], [], window=2)
    table = next(b for b in blocks if getattr(b, "header", None) == ["metric", "before", "after", "change"])
    rows = {row[0]: row for row in table.rows}
    assert rows["proxy reward"][1:] == ["-0.500 ± 0.100", "0.750 ± 0.100", "+1.250"]
    assert rows["gold reward"][3] == "+0.500" and rows["KL to reference"][2] == "1.500"
